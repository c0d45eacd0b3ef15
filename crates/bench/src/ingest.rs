//! Baselines for the ingest benchmark (docs/benchmarks.md): PostgreSQL's own ceiling — a binary
//! COPY of the same ledger rows into the same table, committed per batch like the ingester — and a
//! naive writer that INSERTs and commits one event at a time.

use chrono::{DateTime, Utc};
use domain::chain::{link, ChainRow, UsagePlace, GENESIS};
use domain::usage::UsageRecorded;
use postgres::Client;
use std::time::{Duration, Instant};
use store::append::{ensure_months_for, UsageCopy, UsageRow, USAGE_COLUMNS, USAGE_TYPES};

/// A ledger row as the ingester would write it: the event, its place and its chained hash.
pub struct LedgerRow {
    pub event: UsageRecorded,
    pub recorded_at: DateTime<Utc>,
    pub stream_id: i32,
    pub stream_pos: i64,
    pub src_offset: i64,
    pub hash: [u8; 32],
}

/// The benchmark's streams: no Kafka partition behind these rows.
const BENCH_STREAM: i32 = 0;

impl LedgerRow {
    fn usage_row(&self) -> UsageRow<'_> {
        UsageRow {
            event: &self.event,
            recorded_at: self.recorded_at,
            stream_id: self.stream_id,
            stream_pos: self.stream_pos,
            src_offset: self.src_offset,
            hash: &self.hash,
        }
    }
}

/// Builds chained rows for these events as the ingester would, dealt round-robin over
/// `streams` streams (one per COPY session), each chained on its own.
pub fn rows_for(events: Vec<UsageRecorded>, streams: usize) -> Vec<Vec<LedgerRow>> {
    let streams = streams.max(1);
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now");
    let mut out: Vec<Vec<LedgerRow>> = (0..streams).map(|_| Vec::new()).collect();
    let mut heads = vec![GENESIS; streams];
    for (i, e) in events.into_iter().enumerate() {
        let k = i % streams;
        let stream_id = BENCH_STREAM + k as i32;
        let pos = out[k].len() as i64 + 1;
        let payload = e.payload_bytes();
        let place =
            UsagePlace { stream_id, stream_pos: pos, recorded_at, src_partition: k as i32, src_offset: pos - 1 };
        heads[k] = link(&heads[k], &ChainRow::usage(&e, &payload, place));
        out[k].push(LedgerRow {
            event: e,
            recorded_at,
            stream_id,
            stream_pos: pos,
            src_offset: pos - 1,
            hash: heads[k],
        });
    }
    out
}

/// Binary COPY of `rows` into `ledger_events` (the ingester's own COPY), one transaction per
/// `batch` rows; the months must exist already. Returns the time spent in COPY and COMMIT.
fn copy_rows(client: &mut Client, rows: &[LedgerRow], batch: usize) -> anyhow::Result<Duration> {
    let start = Instant::now();
    for chunk in rows.chunks(batch.max(1)) {
        let mut tx = client.transaction()?;
        let mut w = UsageCopy::start(&mut tx)?;
        for r in chunk {
            w.write(&r.usage_row())?;
        }
        w.finish()?;
        tx.commit()?;
    }
    Ok(start.elapsed())
}

/// [`copy_rows`] on one connection per stream, all at once (as the ingester's writers work).
/// Returns the time from the start to the last commit.
pub fn copy_rows_parallel(database_url: &str, streams: &[Vec<LedgerRow>], batch: usize) -> anyhow::Result<Duration> {
    let mut clients = Vec::with_capacity(streams.len());
    for rows in streams {
        let mut c = store::connect(database_url)?;
        ensure_months_for(&mut c, rows.iter().map(|r| r.event.interval_start))?;
        clients.push(c);
    }
    let start = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            clients.iter_mut().zip(streams).map(|(c, rows)| scope.spawn(move || copy_rows(c, rows, batch))).collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a COPY session panicked"))??;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(start.elapsed())
}

/// One INSERT and one COMMIT per row. Returns the time spent.
pub fn insert_one_by_one(client: &mut Client, rows: &[LedgerRow]) -> anyhow::Result<Duration> {
    ensure_months_for(client, rows.iter().map(|r| r.event.interval_start))?;
    let params: Vec<String> = (1..=USAGE_TYPES.len()).map(|i| format!("${i}")).collect();
    let stmt = client.prepare_typed(
        &format!("INSERT INTO ledger_events ({USAGE_COLUMNS}) VALUES ({})", params.join(", ")),
        &USAGE_TYPES,
    )?;
    let start = Instant::now();
    for r in rows {
        let mut tx = client.transaction()?;
        r.usage_row().with_values(|v| tx.execute(&stmt, v))?;
        tx.commit()?;
    }
    Ok(start.elapsed())
}
