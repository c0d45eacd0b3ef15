//! The audit-replay benchmark (docs/benchmarks.md): a ledger of millions of real usage rows built
//! quickly — generated, chained and binary-COPYed straight into `ledger_events` on one Kafka-like
//! stream whose head and offset counters agree with the rows (so `audit verify` passes), with the
//! live hourly projection folded in Rust by `domain::projection` beside it — not through Kafka
//! and the ingester (10 million events would take hours here). The event-id and occupancy guard
//! tables are not filled: the replay never reads them. Then the floors a replay is measured
//! against: a bare count and a bare read of the usage rows' payloads.

use chrono::{DateTime, Duration, Utc};
use domain::chain::{link, ChainRow, UsagePlace, GENESIS};
use domain::gpu_seconds::GpuSeconds;
use domain::projection::HourlyUsage;
use domain::usage::{UsageRecorded, LEDGER_KIND};
use postgres::Client;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::time::Instant;
use store::append::{ensure_months_for, UsageCopy, UsageRow};

pub const BENCH_TOPIC: &str = "bench.replay";

#[derive(Debug, Clone)]
pub struct ReplayBenchSpec {
    pub events: u64,
    pub gpus: u32,
    pub tenants: u32,
    pub start: DateTime<Utc>,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct SeedReport {
    pub events: u64,
    pub hourly_rows: u64,
    pub took: std::time::Duration,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Event `i` of the fleet: GPU `i mod gpus` in minute `i / gpus`; GPU g belongs to tenant
/// g mod T, SKU (g / T) mod 6, project g mod 3, and reports one-minute intervals starting
/// 0, 15, 30 or 45 seconds past the minute (so three GPUs in four split an interval across the
/// hour once an hour), at 50.0–100.0 % utilisation (GPU-seconds with up to three decimals).
fn event(spec: &ReplayBenchSpec, i: u64) -> anyhow::Result<UsageRecorded> {
    let gpus = u64::from(spec.gpus.max(1));
    let (g, minute) = (i % gpus, i / gpus);
    let tenants = u64::from(spec.tenants.max(1));
    let skus = domain::sku::SKUS;
    let sku = skus[usize::try_from((g / tenants) % skus.len() as u64).unwrap_or(0)];
    let minute = i64::try_from(minute).map_err(|_| anyhow::anyhow!("too many events"))?;
    let offset = i64::try_from((g % 4) * 15).unwrap_or(0);
    let start = spec.start + Duration::minutes(minute) + Duration::seconds(offset);
    let r = splitmix(spec.seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let per_mille = 500 + i64::try_from(r % 501).unwrap_or(0);
    let seconds =
        GpuSeconds::new(Decimal::new(60 * per_mille, 3)).map_err(|e| anyhow::anyhow!("bench GPU-seconds: {e:?}"))?;
    let gpu_bits = splitmix(spec.seed ^ 0xC0FF_EE00 ^ g);
    Ok(UsageRecorded {
        event_id: uuid::Builder::from_random_bytes(
            [r.to_be_bytes(), splitmix(r).to_be_bytes()].concat().try_into().unwrap_or([0; 16]),
        )
        .into_uuid(),
        source: format!("//bench/n{:04}", g / 8),
        tenant_id: format!("tenant-{:03}", g % tenants),
        gpu_sku: sku.to_string(),
        gpu_id: uuid::Builder::from_random_bytes(
            [gpu_bits.to_be_bytes(), splitmix(gpu_bits).to_be_bytes()].concat().try_into().unwrap_or([0; 16]),
        )
        .into_uuid(),
        node: format!("bench-n{:04}", g / 8),
        project: format!("proj-{}", g % 3),
        job: None,
        labels: BTreeMap::new(),
        interval_start: start,
        interval_end: start + Duration::minutes(1),
        gpu_seconds: seconds,
        mig: None,
        energy_wh: None,
    })
}

struct Row {
    event: UsageRecorded,
    recorded_at: DateTime<Utc>,
    pos: i64,
    hash: [u8; 32],
}

const BATCH: u64 = 50_000;

/// Writes `spec.events` usage events into an empty, migrated database (see the module docs) and
/// the live hourly projection of them.
pub fn seed_ledger(client: &mut Client, spec: &ReplayBenchSpec) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let gpus = u64::from(spec.gpus.max(1));
    let last = spec.start + Duration::minutes(i64::try_from(spec.events / gpus + 1).unwrap_or(0) + 1);
    let mut month = spec.start;
    let mut months = vec![spec.start, last];
    while month < last {
        month += Duration::days(28);
        months.push(month);
    }
    ensure_months_for(client, months.into_iter())?;
    let sid: i32 = client
        .query_one(
            "INSERT INTO ledger_streams (topic, kafka_partition, next_offset, owner, epoch, claimed_at)
             VALUES ($1, 0, 0, 'bench', 1, now()) RETURNING stream_id",
            &[&BENCH_TOPIC],
        )?
        .get(0);
    let (send, recv) = std::sync::mpsc::sync_channel::<anyhow::Result<Vec<Row>>>(4);
    let gen_spec = spec.clone();
    // Generating (payload, hash, fold) on one thread, COPY on this one: two cores, two stages.
    let generator = std::thread::spawn(move || -> HourlyUsage {
        let spec = gen_spec;
        let mut hourly = HourlyUsage::default();
        let mut head = GENESIS;
        let recorded_base = DateTime::<Utc>::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default();
        let mut i = 0u64;
        while i < spec.events {
            let n = BATCH.min(spec.events - i);
            let recorded_at = recorded_base + Duration::milliseconds(i64::try_from(i / BATCH).unwrap_or(0));
            let mut rows = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
            for k in i..i + n {
                let e = match event(&spec, k) {
                    Ok(e) => e,
                    Err(err) => {
                        let _ = send.send(Err(err));
                        return hourly;
                    }
                };
                let payload = e.payload_bytes();
                let pos = i64::try_from(k).unwrap_or(i64::MAX) + 1;
                let place =
                    UsagePlace { stream_id: sid, stream_pos: pos, recorded_at, src_partition: 0, src_offset: pos - 1 };
                head = link(&head, &ChainRow::usage(&e, &payload, place));
                hourly.apply(&e);
                rows.push(Row { event: e, recorded_at, pos, hash: head });
            }
            if send.send(Ok(rows)).is_err() {
                return hourly;
            }
            i += n;
        }
        hourly
    });
    let mut written = 0i64;
    let mut head: Vec<u8> = GENESIS.to_vec();
    for batch in recv {
        let batch = batch?;
        let mut tx = client.transaction()?;
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        let mut w = UsageCopy::start(&mut tx)?;
        for r in &batch {
            w.write(&UsageRow {
                event: &r.event,
                recorded_at: r.recorded_at,
                stream_id: sid,
                stream_pos: r.pos,
                src_offset: r.pos - 1,
                hash: &r.hash,
            })?;
        }
        w.finish()?;
        written += i64::try_from(batch.len()).unwrap_or(0);
        if let Some(r) = batch.last() {
            head = r.hash.to_vec();
        }
        tx.execute(
            "UPDATE ledger_streams SET head_pos = $2, head_hash = $3, ledgered = $2, next_offset = $2 WHERE stream_id = $1",
            &[&sid, &written, &head],
        )?;
        tx.commit()?;
    }
    let hourly = generator.join().map_err(|_| anyhow::anyhow!("the bench generator panicked"))?;
    let hourly_rows = write_hourly(client, &hourly)?;
    client.batch_execute("ANALYZE ledger_events; ANALYZE usage_hourly")?;
    Ok(SeedReport { events: u64::try_from(written).unwrap_or(0), hourly_rows, took: started.elapsed() })
}

/// The live projection.
fn write_hourly(client: &mut Client, hourly: &HourlyUsage) -> anyhow::Result<u64> {
    let rows = hourly.rows.iter().map(|(k, v)| (&k.tenant_id, &k.gpu_sku, &k.project, k.hour, v.gpu_seconds, v.events));
    crate::write_hourly(client, rows)
}

/// What a replay is measured against, on the same rows: a bare `count(*)` of the usage rows, and
/// a bare read of the fields the replay's fold reads (SKU, project, interval end, GPU-seconds:
/// summed, no grouping) — both single statements PostgreSQL may run in parallel.
#[derive(Debug, Clone)]
pub struct Floors {
    pub rows: i64,
    pub count: std::time::Duration,
    pub read_fields: std::time::Duration,
}

pub fn floors(client: &mut Client) -> anyhow::Result<Floors> {
    let t = Instant::now();
    let rows: i64 = client.query_one("SELECT count(*) FROM ledger_events WHERE kind = $1", &[&LEDGER_KIND])?.get(0);
    let count = t.elapsed();
    let t = Instant::now();
    client.query_one(
        "SELECT sum(octet_length(gpu_sku) + octet_length(project))::bigint, sum(gpu_seconds), max(interval_end)
           FROM ledger_events WHERE kind = $1",
        &[&LEDGER_KIND],
    )?;
    Ok(Floors { rows, count, read_fields: t.elapsed() })
}
