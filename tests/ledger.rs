//! The ledger on the real PostgreSQL, without Kafka: migrations, append-only enforcement by
//! trigger and by privilege, fencing, duplicates / conflicts / overlaps, the hash chain and the
//! hourly projection's rebuild.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::usage::{parse_usage_message, RejectionCode, UsageRecorded};
use integration::{connect, fresh_db, superuser_url};
use postgres::Client;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;
use store::append::{
    claim_partitions, AppendOutcome, Claim, CommitCheck, CommitLog, InMessage, LedgerWriter, PartitionBatch,
};
use uuid::Uuid;

const TOPIC: &str = "gpu.usage.v1";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 31, 23, 0, 0).unwrap()
}

fn event(n: u128, tenant: &str, gpu: u128, minute: i64, seconds: &str) -> UsageRecorded {
    UsageRecorded {
        event_id: Uuid::from_u128(n),
        source: "//test".into(),
        tenant_id: tenant.into(),
        gpu_sku: "nvidia-h100-sxm".into(),
        gpu_id: Uuid::from_u128(gpu),
        node: "fra1-r00-n000".into(),
        project: "p1".into(),
        job: None,
        labels: Default::default(),
        interval_start: t0() + Duration::minutes(minute),
        interval_end: t0() + Duration::minutes(minute + 1),
        gpu_seconds: domain::GpuSeconds::parse(seconds).unwrap(),
        mig: None,
        energy_wh: None,
    }
}

fn msg(offset: i64, e: &UsageRecorded) -> InMessage {
    let payload = serde_json::to_vec(&e.to_cloudevent()).unwrap();
    let key = Some(e.tenant_id.as_bytes().to_vec());
    let verdict = parse_usage_message(key.as_deref(), &payload, Utc::now());
    InMessage::new(offset, key, payload, verdict)
}

fn raw(offset: i64, bytes: &[u8]) -> InMessage {
    let key = Some(b"rheinbank".to_vec());
    let verdict = parse_usage_message(key.as_deref(), bytes, Utc::now());
    InMessage::new(offset, key, bytes.to_vec(), verdict)
}

/// A writer's two connections, as the ingester opens them.
fn writer(url: &str) -> LedgerWriter {
    LedgerWriter::new(connect(url), connect(url))
}

fn claim(db: &mut Client, owner: &str, p: i32) -> Claim {
    claim_partitions(db, TOPIC, &[p], owner).unwrap()[0]
}

/// Waits until `writers` connections wait for an advisory lock (the commit lock held by the test).
fn wait_for_the_commit_lock(url: &str, writers: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = connect(url)
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", &[])
            .unwrap()
            .get(0);
        if waiting == writers {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{writers} writer(s) should be waiting for the commit lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn committed(o: AppendOutcome) -> store::BatchCounts {
    match o {
        AppendOutcome::Committed(c) => c,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn migrations_apply_once_and_are_recorded() {
    let url = fresh_db("migrate").unwrap();
    let mut db = connect(&url);
    assert!(store::migrate(&mut db).unwrap().is_empty(), "second run applies nothing");
    let n: i64 = db.query_one("SELECT count(*) FROM schema_migrations", &[]).unwrap().get(0);
    assert_eq!(n as usize, store::migrate::MIGRATIONS.len());
}

#[test]
fn durability_settings_are_checked() {
    let url = fresh_db("durability").unwrap();
    let mut db = connect(&url);
    store::check_durability(&mut db).unwrap();
    db.batch_execute("SET synchronous_commit = off").unwrap();
    let err = store::check_durability(&mut db).unwrap_err();
    assert!(matches!(err, store::StoreError::NotDurable { ref name, .. } if name == "synchronous_commit"), "{err}");
}

#[test]
fn ledger_rows_cannot_be_updated_deleted_or_truncated() {
    let url = fresh_db("append_only").unwrap();
    let mut db = connect(&url);
    let c = claim(&mut db, "me", 0);
    let mut w = writer(&url);
    let batch = vec![PartitionBatch {
        claim: c,
        messages: vec![msg(0, &event(1, "rheinbank", 1, 0, "60")), raw(1, b"not json")],
    }];
    committed(w.append("me", &batch, Utc::now()).unwrap());

    // gpu_occupancy only holds intervals from before migration 0005: give it one to refuse.
    db.batch_execute(
        "INSERT INTO gpu_occupancy VALUES ('00000000-0000-4000-8000-000000000001', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z')",
    )
    .unwrap();
    let tables = ["ledger_events", "ledger_events_y2026m10", "ledger_event_ids", "gpu_occupancy", "quarantine"];
    let statements = |t: &str| {
        vec![format!("UPDATE {t} SET tenant_id = tenant_id"), format!("DELETE FROM {t}"), format!("TRUNCATE {t}")]
    };
    // As the table owner: the triggers refuse.
    for t in tables {
        for sql in statements(t) {
            let sql = sql.replace("SET tenant_id = tenant_id", "SET recorded_at = recorded_at");
            let sql = if t == "gpu_occupancy" {
                sql.replace("recorded_at = recorded_at", "starts_at = starts_at")
            } else {
                sql
            };
            let sql = if t == "ledger_event_ids" {
                sql.replace("recorded_at = recorded_at", "fingerprint = fingerprint")
            } else {
                sql
            };
            let err = db.batch_execute(&sql).expect_err(&sql);
            let text = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
            assert!(text.contains("append-only"), "{sql}: {text}");
        }
    }
    // As the writer role the ingester runs as: no privilege in the first place.
    let mut db = connect(&integration::login_url(&url, "gpuledger_ingest"));
    db.batch_execute("SET ROLE gpuledger_writer").unwrap();
    for t in tables {
        for sql in statements(t) {
            let sql = sql.replace("SET tenant_id = tenant_id", "SET recorded_at = now()");
            let sql =
                if t == "gpu_occupancy" { sql.replace("recorded_at = now()", "starts_at = starts_at") } else { sql };
            let sql = if t == "ledger_event_ids" {
                sql.replace("recorded_at = now()", "fingerprint = fingerprint")
            } else {
                sql
            };
            let err = db.batch_execute(&sql).expect_err(&sql);
            let text = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
            assert!(text.contains("permission denied") || text.contains("append-only"), "{sql}: {text}");
        }
    }
    db.batch_execute("RESET ROLE").unwrap();
    let n: i64 = db.query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    assert_eq!(n, 1, "the row is still there");
}

#[test]
fn duplicates_conflicts_and_overlaps_are_decided_by_the_ledger() {
    let url = fresh_db("dedupe").unwrap();
    let mut db = connect(&url);
    let mut w = writer(&url);
    let c0 = claim(&mut db, "me", 0);
    let c1 = claim(&mut db, "me", 1);
    let a = event(1, "rheinbank", 1, 0, "60");
    let mut a_conflict = a.clone();
    a_conflict.gpu_seconds = domain::GpuSeconds::parse("30").unwrap();
    let b = event(2, "rheinbank", 1, 1, "60");
    let mut b_overlap = event(3, "rheinbank", 1, 1, "30");
    b_overlap.interval_start += Duration::seconds(30);
    b_overlap.interval_end += Duration::seconds(30);
    // Same event id under another tenant is another event.
    let other_tenant = event(1, "falke-drones", 2, 0, "60");

    let batch = vec![
        PartitionBatch {
            claim: c0,
            messages: vec![msg(0, &a), msg(1, &a), msg(2, &a_conflict), msg(3, &b), msg(4, &b_overlap)],
        },
        PartitionBatch { claim: c1, messages: vec![msg(0, &other_tenant)] },
    ];
    let counts = committed(w.append("me", &batch, Utc::now()).unwrap());
    assert_eq!((counts.ledgered, counts.duplicates, counts.quarantined), (3, 1, 2));
    assert_eq!(counts.by_reason, vec![(RejectionCode::Conflict, 1), (RejectionCode::Overlap, 1)]);

    // Across batches: the ledger remembers.
    let c0 = Claim { next_offset: Some(5), ..c0 };
    let overlap_later = event(4, "seekr-ai-us", 1, 0, "10"); // same GPU, same minute, other tenant
    let batch =
        vec![PartitionBatch { claim: c0, messages: vec![msg(5, &a), msg(6, &a_conflict), msg(7, &overlap_later)] }];
    let counts = committed(w.append("me", &batch, Utc::now()).unwrap());
    assert_eq!((counts.ledgered, counts.duplicates, counts.quarantined), (0, 1, 2));
    let reasons: Vec<String> = db
        .query("SELECT reason FROM quarantine ORDER BY stream_id, src_offset", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons, ["conflict", "overlap", "conflict", "overlap"]);
}

/// Two writers (two connections, two partitions) append batches that claim the same GPU time at
/// the same moment, each having checked its own streams and found it free: the commit lock lets
/// one commit first, and the other, holding the lock next, finds the overlap, rolls back and is
/// decided again serially: one event ledgered, the other quarantined as an overlap, never both.
/// Adjacent GPU time on the same GPU is no overlap: both commit.
///
/// Twice: as two processes (each writer its own commit log: the later one probes the ledger's
/// GPU-time index for the other's commit), and as two writers of one process sharing their commit
/// log, whose second connections are cut before they start: the overlap is found in memory, and
/// nothing needs the index.
#[test]
fn writers_side_by_side_never_bill_one_gpu_second_twice() {
    side_by_side(false);
    side_by_side(true);
}

fn side_by_side(shared: bool) {
    let url = fresh_db(if shared { "side_by_side_shared" } else { "side_by_side" }).unwrap();
    let mut setup = connect(&url);
    let (c0, c1) = (claim(&mut setup, "me", 0), claim(&mut setup, "me", 1));
    let log = Arc::new(CommitLog::default());
    let new_writer = || {
        if !shared {
            return writer(&url);
        }
        let mut check = connect(&url);
        let pid: i32 = check.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        connect(&url).execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
        LedgerWriter::new(connect(&url), check).with_commit_log(log.clone())
    };
    for (round, (shift_s, overlapping)) in [(30i64, true), (60, false), (0, true)].into_iter().enumerate() {
        let gpu = 100 + round as u128;
        let a = event(1000 + 2 * round as u128, "rheinbank", gpu, 0, "60");
        let mut b = event(1001 + 2 * round as u128, "seekr-ai-us", gpu, 0, "60");
        b.interval_start += Duration::seconds(shift_s);
        b.interval_end += Duration::seconds(shift_s);
        // Hold the commit lock so that both batches are decided and written before either commits.
        let mut holder = connect(&url);
        let mut hold = holder.transaction().unwrap();
        hold.execute("SELECT pg_advisory_xact_lock($1)", &[&store::append::COMMIT_LOCK]).unwrap();
        let offset = round as i64;
        let claims = [
            Claim { next_offset: (round > 0).then_some(offset), ..c0 },
            Claim { next_offset: (round > 0).then_some(offset), ..c1 },
        ];
        let results: Vec<store::BatchCounts> = std::thread::scope(|scope| {
            let handles: Vec<_> = [(claims[0], a.clone()), (claims[1], b.clone())]
                .into_iter()
                .map(|(claim, e)| {
                    let mut w = new_writer();
                    scope.spawn(move || {
                        let batch = vec![PartitionBatch { claim, messages: vec![msg(offset, &e)] }];
                        committed(w.append("me", &batch, Utc::now()).unwrap())
                    })
                })
                .collect();
            // Both are waiting for the lock (their rows written), then let them go.
            wait_for_the_commit_lock(&url, 2);
            hold.commit().unwrap();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ledgered: u64 = results.iter().map(|c| c.ledgered).sum();
        let overlaps: u64 = results.iter().map(|c| c.quarantined).sum();
        let mut checks: Vec<CommitCheck> = results.iter().map(|c| c.commit_check).collect();
        checks.sort_by_key(|c| format!("{c:?}"));
        if overlapping {
            assert_eq!((ledgered, overlaps), (1, 1), "round {round}: one wins, one is an overlap");
            let loser = results.iter().find(|c| c.quarantined == 1).unwrap();
            assert_eq!(loser.by_reason, vec![(RejectionCode::Overlap, 1)]);
            // The winner had nothing to check (no commit since it looked), the loser was redone
            // serially after its check found the winner's commit.
            assert_eq!(checks, [CommitCheck::InMemory, CommitCheck::Serial], "round {round}");
        } else {
            assert_eq!((ledgered, overlaps), (2, 0), "round {round}: adjacent GPU time is no overlap");
            // The second to commit checked the first's commit: in memory only when it knew it.
            let second = if shared { CommitCheck::InMemory } else { CommitCheck::Probed };
            let mut expected = [CommitCheck::InMemory, second];
            expected.sort_by_key(|c| format!("{c:?}"));
            assert_eq!(checks, expected, "round {round}");
        }
    }
    let mut db = connect(&url);
    assert!(store::read::verify_chains(&mut db).unwrap().iter().all(|r| r.result.is_ok()));
    assert_eq!(store::read::rebuild_hourly(&mut db).unwrap(), store::read::live_hourly(&mut db).unwrap());
}

#[test]
fn a_consumer_that_lost_its_partition_cannot_commit() {
    let url = fresh_db("fence").unwrap();
    let mut db = connect(&url);
    let mut w = writer(&url);
    let old = claim(&mut db, "old-owner", 0);
    let new = claim(&mut db, "new-owner", 0);
    assert!(new.epoch > old.epoch);
    let e = event(1, "rheinbank", 1, 0, "60");
    let stale = vec![PartitionBatch { claim: old, messages: vec![msg(0, &e)] }];
    match w.append("old-owner", &stale, Utc::now()).unwrap() {
        AppendOutcome::Fenced(f) => assert!(!f[0].still_owned),
        other => panic!("stale batch was not fenced: {other:?}"),
    }
    let fresh = vec![PartitionBatch { claim: new, messages: vec![msg(0, &e)] }];
    committed(w.append("new-owner", &fresh, Utc::now()).unwrap());
    // The same owner replaying from a stale position is fenced too, and told where to resume.
    let replay = vec![PartitionBatch { claim: new, messages: vec![msg(0, &e)] }];
    match w.append("new-owner", &replay, Utc::now()).unwrap() {
        AppendOutcome::Fenced(f) => {
            assert_eq!((f[0].still_owned, f[0].next_offset), (true, Some(1)))
        }
        other => panic!("replay was not fenced: {other:?}"),
    }
    let n: i64 = db.query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    assert_eq!(n, 1);
}

/// Usage rows keep their event in typed columns (migration 0005): what is read back is the event
/// that was validated, to the byte — labels with quotes, backslashes and non-ASCII text, no job,
/// fractional GPU-seconds and instants with 3 and 6 fractional digits — so the chain verifies,
/// the export carries the canonical payload, and a redelivery is still a duplicate.
#[test]
fn typed_rows_give_back_every_byte_of_the_event() {
    let url = fresh_db("typed").unwrap();
    let mut db = connect(&url);
    let mut w = writer(&url);
    let c = claim(&mut db, "me", 0);
    let mut a = event(1, "rheinbank", 1, 0, "59.999999");
    a.labels = [("team", "Quant \"Ä\" \\ Risk"), ("cost-centre", "TEL-PREM/42 ✓")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    a.interval_start += Duration::microseconds(123_456);
    a.interval_end += Duration::milliseconds(250);
    a.gpu_seconds = domain::GpuSeconds::parse("0.25").unwrap();
    let mut b = event(2, "rheinbank", 1, 5, "60");
    b.job = Some("train-7".into());
    b.source = "//fra1/dcgm-exporter/fra1-r00-n000?x=é".into();
    let batch = vec![PartitionBatch { claim: c, messages: vec![msg(0, &a), msg(1, &b)] }];
    assert_eq!(committed(w.append("me", &batch, Utc::now()).unwrap()).ledgered, 2);

    let rows = db
        .query(
            &format!(
                "SELECT event_id, tenant_id, occurred_at, payload IS NULL, {} FROM ledger_events ORDER BY stream_pos",
                store::ledger_row::content_columns("")
            ),
            &[],
        )
        .unwrap();
    for (row, sent) in rows.iter().zip([&a, &b]) {
        assert!(row.get::<_, bool>(3), "a usage row keeps no jsonb payload");
        let tenant: String = row.get(1);
        let id = store::ledger_row::Identity { event_id: row.get(0), tenant_id: &tenant, occurred_at: row.get(2) };
        let content = store::ledger_row::content(row, 4, id).unwrap();
        assert_eq!(content.payload_bytes().unwrap(), sent.payload_bytes());
        assert_eq!(content.into_usage(sent.event_id).unwrap(), *sent);
    }
    assert!(store::read::verify_chains(&mut db).unwrap().iter().all(|r| r.result.is_ok()));
    assert_eq!(store::read::rebuild_hourly(&mut db).unwrap(), store::read::live_hourly(&mut db).unwrap());
    let mut exported = Vec::new();
    store::audit::export_rows(&mut db, &store::audit::ExportRange::default(), |r| {
        exported.push(r.payload.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(exported, vec![a.payload_bytes(), b.payload_bytes()]);
    // A redelivery of both, with a conflicting copy of the first: the ledger tells them apart by
    // content read back from the typed columns.
    let mut a_other = a.clone();
    a_other.labels.insert("team".into(), "another".into());
    let c = Claim { next_offset: Some(2), ..c };
    let batch = vec![PartitionBatch { claim: c, messages: vec![msg(2, &a), msg(3, &b), msg(4, &a_other)] }];
    let counts = committed(w.append("me", &batch, Utc::now()).unwrap());
    assert_eq!((counts.ledgered, counts.duplicates, counts.quarantined), (0, 2, 1));
    assert_eq!(counts.by_reason, vec![(RejectionCode::Conflict, 1)]);
}

#[test]
fn projection_rebuilds_from_the_log_and_the_chain_detects_tampering() {
    let url = fresh_db("chain").unwrap();
    let mut db = connect(&url);
    let mut w = writer(&url);
    let mut c = claim(&mut db, "me", 0);
    let mut offset = 0;
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    // Three batches of events across an hour and a month boundary (Oct 31 23:00 → Nov 1 01:00).
    for round in 0..3i64 {
        let mut messages = Vec::new();
        for i in 0..40i64 {
            let minute = round * 40 + i;
            let tenant = if i % 2 == 0 { "rheinbank" } else { "falke-drones" };
            let e = event((minute + 1) as u128, tenant, (i % 4 + 1) as u128, minute, "59.5");
            let mut e = e;
            e.interval_start += Duration::seconds(i % 4 * 15); // stagger so intervals cross hours
            e.interval_end += Duration::seconds(i % 4 * 15);
            *expected.entry(tenant.to_string()).or_default() += Decimal::new(595, 1);
            messages.push(msg(offset, &e));
            offset += 1;
        }
        let out = w.append("me", &[PartitionBatch { claim: c, messages }], Utc::now()).unwrap();
        let counts = committed(out);
        assert_eq!(counts.quarantined, 0, "{counts:?}");
        c.next_offset = Some(offset);
    }
    let live = store::read::live_hourly(&mut db).unwrap();
    let rebuilt = store::read::rebuild_hourly(&mut db).unwrap();
    assert_eq!(live, rebuilt);
    assert!(live.rows.len() > 4, "several hours and tenants");
    let by_tenant: BTreeMap<String, Decimal> = store::read::totals_by_tenant_sku(&mut db)
        .unwrap()
        .into_iter()
        .map(|(t, m)| (t, m.values().copied().sum::<Decimal>()))
        .collect();
    assert_eq!(by_tenant, expected.into_iter().map(|(t, d)| (t, d.normalize())).collect());
    let months: i64 = db
        .query_one("SELECT count(*) FROM pg_inherits WHERE inhparent = 'ledger_events'::regclass", &[])
        .unwrap()
        .get(0);
    assert_eq!(months, 2, "October and November partitions");

    assert!(store::read::verify_chains(&mut db).unwrap().iter().all(|r| r.result.is_ok()));
    // A superuser can switch triggers off; the chain still tells.
    connect(&superuser_url(&url))
        .batch_execute(
            "SET session_replication_role = replica;
         UPDATE ledger_events SET gpu_seconds = 1 WHERE stream_pos = 17;
         SET session_replication_role = origin;",
        )
        .unwrap();
    let reports = store::read::verify_chains(&mut db).unwrap();
    let broken = reports.iter().find_map(|r| r.result.clone().err()).expect("tampering detected");
    assert_eq!(broken.stream_pos, 17);
}

/// What the ledger made of each offset of partition 0: ledgered offsets, quarantined offsets with
/// their reasons, and the duplicate count.
fn fates(db: &mut Client) -> (Vec<i64>, Vec<(i64, String)>, i64) {
    let ledgered =
        db.query("SELECT src_offset FROM ledger_events ORDER BY 1", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let quarantined = db
        .query("SELECT src_offset, reason FROM quarantine ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let dups = db.query_one("SELECT coalesce(sum(duplicates), 0)::bigint FROM ledger_streams", &[]).unwrap().get(0);
    (ledgered, quarantined, dups)
}

/// Where batches are cut never changes an outcome: a random stream full of repeated ids, other
/// content under the same id and overlapping GPU time, appended as one batch and again in random
/// cuts, gives the same fate to every offset (and the chain and projection still check out).
#[test]
fn batch_cuts_never_change_an_outcome() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("CUT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20261125);
    eprintln!("batch-cut seed: {seed} (rerun with CUT_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for case in 0..6 {
        let tenants = ["rheinbank", "falke-drones", "seekr-ai-us"];
        let messages: Vec<UsageRecorded> = (0..60)
            .map(|_| {
                let mut e = event(
                    rng.gen_range(1..10u128),
                    tenants[rng.gen_range(0..3)],
                    rng.gen_range(1..4u128),
                    rng.gen_range(0..8i64),
                    ["60", "30", "59.5"][rng.gen_range(0..3)],
                );
                let shift = Duration::seconds(rng.gen_range(0..3) * 20);
                e.interval_start += shift;
                e.interval_end += shift;
                e
            })
            .collect();
        let mut outcomes = Vec::new();
        for cut_randomly in [false, true] {
            let url = fresh_db(&format!("cuts{case}")).unwrap();
            let mut db = connect(&url);
            let mut w = writer(&url);
            let mut c = claim(&mut db, "me", 0);
            let mut offset = 0usize;
            while offset < messages.len() {
                let len = if cut_randomly { rng.gen_range(1..=7) } else { messages.len() };
                let end = (offset + len).min(messages.len());
                let batch: Vec<InMessage> = (offset..end).map(|i| msg(i as i64, &messages[i])).collect();
                committed(w.append("me", &[PartitionBatch { claim: c, messages: batch }], Utc::now()).unwrap());
                offset = end;
                c.next_offset = Some(offset as i64);
            }
            assert!(store::read::verify_chains(&mut db).unwrap().iter().all(|r| r.result.is_ok()));
            assert_eq!(store::read::rebuild_hourly(&mut db).unwrap(), store::read::live_hourly(&mut db).unwrap());
            outcomes.push(fates(&mut db));
        }
        let (ledgered, quarantined, dups) = &outcomes[0];
        assert_eq!(ledgered.len() + quarantined.len() + *dups as usize, messages.len(), "case {case}");
        assert!(!quarantined.is_empty() && !ledgered.is_empty(), "case {case} exercises both");
        assert_eq!(outcomes[0], outcomes[1], "case {case}: one batch vs random cuts");
    }
}

/// The benchmarks that write go straight into `ledger_events` and `usage_hourly`, past the
/// claims, the commit clock and Kafka: they refuse a database that holds a ledger already, and
/// write nothing to it; on an empty one they run.
#[test]
fn writing_benchmarks_refuse_a_ledger_that_is_not_empty() {
    let url = fresh_db("bench_refuses").unwrap();
    let fleet = ["--seed", "1", "--gpus", "4", "--tenants", "2", "--start", "2026-06-01T00:00:00Z", "--limit", "20"];
    let mut db = connect(&url);
    let mut w = writer(&url);
    let c = claim(&mut db, "me", 0);
    committed(
        w.append(
            "me",
            &[PartitionBatch { claim: c, messages: vec![msg(0, &event(1, "rheinbank", 1, 0, "60"))] }],
            Utc::now(),
        )
        .unwrap(),
    );
    let rows = |db: &mut Client| -> i64 { db.query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0) };
    for bench in [
        vec!["copy"],
        vec!["naive"],
        vec!["replay", "--events", "10"],
        vec!["close", "--tenants", "1", "--gpus", "1", "--projects", "1"],
    ] {
        let mut args = bench.clone();
        if matches!(bench[0], "copy" | "naive") {
            args.extend(fleet);
        }
        let err = integration::gpuledger_bench(&url, &args).expect_err("a ledger with rows is refused").to_string();
        assert!(err.contains("needs an empty, migrated database"), "{bench:?}: {err}");
        assert_eq!(rows(&mut db), 1, "{bench:?} wrote nothing");
    }
    let empty = fresh_db("bench_runs").unwrap();
    let out = integration::gpuledger_bench(&empty, &[&["copy"][..], &fleet[..]].concat()).unwrap();
    assert!(out.contains("copy: 20 rows"), "{out}");
}

/// A commit that moves a Kafka stream's head without numbering itself on the commit clock (an
/// ingester built before migration 0007, still running during an upgrade) is numbered by the
/// database at its commit; a writer that has not seen it therefore finds a number its process does
/// not know, probes the GPU-time index, and finds the other's GPU time: its event is an overlap,
/// not billed a second time.
#[test]
fn a_commit_that_did_not_number_itself_is_still_checked_against() {
    let url = fresh_db("unnumbered").unwrap();
    let mut setup = connect(&url);
    let (c0, c1) = (claim(&mut setup, "me", 0), claim(&mut setup, "old", 1));
    setup.execute("SELECT ledger_ensure_month('2026-10-01')", &[]).unwrap();
    let clock =
        |db: &mut Client| -> i64 { db.query_one("SELECT commits FROM ledger_commit_clock", &[]).unwrap().get(0) };
    let mut w = writer(&url).with_commit_log(Arc::new(CommitLog::default()));
    let first = event(1, "rheinbank", 7, 0, "60");
    let done =
        committed(w.append("me", &[PartitionBatch { claim: c0, messages: vec![msg(0, &first)] }], Utc::now()).unwrap());
    assert_eq!((done.ledgered, clock(&mut setup)), (1, 1));

    // The old ingester holds the commit lock while ours decides and writes its next minute.
    let mut old = connect(&url);
    let mut otx = old.transaction().unwrap();
    otx.execute("SELECT pg_advisory_xact_lock($1)", &[&store::append::COMMIT_LOCK]).unwrap();
    let second = event(2, "rheinbank", 7, 1, "60");
    let c0 = Claim { next_offset: Some(1), ..c0 };
    let outcome = std::thread::scope(|scope| {
        let ours = scope.spawn(|| {
            committed(
                w.append("me", &[PartitionBatch { claim: c0, messages: vec![msg(1, &second)] }], Utc::now()).unwrap(),
            )
        });
        wait_for_the_commit_lock(&url, 1);
        // It commits the same GPU's same minute for another tenant, without numbering its commit.
        otx.execute(
            "INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind,
                                        tenant_id, event_id, hash, gpu_id, interval_end, gpu_seconds, gpu_sku,
                                        node, project, source)
             VALUES ($1, now(), $2, 1, 0, 1, 'usage.recorded', 'seekr-ai-us', $3, decode(repeat('00', 32), 'hex'),
                     $4, $5, 60, 'nvidia-h100-sxm', 'fra1-r00-n000', 'p1', '//old')",
            &[&second.interval_start, &c1.stream_id, &Uuid::from_u128(99), &second.gpu_id, &second.interval_end],
        )
        .unwrap();
        otx.execute("UPDATE ledger_streams SET head_pos = 1, next_offset = 1 WHERE stream_id = $1", &[&c1.stream_id])
            .unwrap();
        otx.commit().unwrap();
        ours.join().unwrap()
    });
    assert_eq!((outcome.ledgered, outcome.quarantined), (0, 1), "the minute is the old ingester's");
    assert_eq!(outcome.by_reason, vec![(RejectionCode::Overlap, 1)]);
    // Ours, the old one's (numbered by the trigger), ours again (redone serially after the probe).
    assert_eq!(clock(&mut setup), 3);

    // A transaction that numbered itself is not numbered twice; a local stream's head (no Kafka
    // offsets) is not a usage commit.
    let mut tx = setup.transaction().unwrap();
    tx.execute("UPDATE ledger_commit_clock SET commits = commits + 1", &[]).unwrap();
    tx.execute("UPDATE ledger_streams SET head_pos = 2, next_offset = 2 WHERE stream_id = $1", &[&c1.stream_id])
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(clock(&mut setup), 4);
    setup.execute("INSERT INTO ledger_streams (topic, kafka_partition) VALUES ('gpuledger.local', 0)", &[]).unwrap();
    setup.execute("UPDATE ledger_streams SET head_pos = 1 WHERE topic = 'gpuledger.local'", &[]).unwrap();
    assert_eq!(clock(&mut setup), 4);
}

/// Two writers create the same month's partition at once: the second looked before the first
/// committed, then waited for its lock. It must find the partition made, not fail with "relation
/// ... already exists" (as 0001's function did, its check reading a stale catalog cache).
#[test]
fn two_writers_creating_one_month_partition_both_succeed() {
    let url = fresh_db("months").unwrap();
    for month in 1..=3u32 {
        let m = chrono::NaiveDate::from_ymd_opt(2031, month, 1).unwrap();
        let mut first = connect(&url);
        let mut tx = first.transaction().unwrap();
        tx.execute("SELECT ledger_ensure_month($1)", &[&m]).unwrap();
        let second = std::thread::spawn({
            let url = url.clone();
            move || connect(&url).execute("SELECT ledger_ensure_month($1)", &[&m]).map_err(|e| store::db_message(&e))
        });
        wait_for_the_commit_lock(&url, 1);
        tx.commit().unwrap();
        assert_eq!(second.join().unwrap(), Ok(1), "month {m}");
    }
    // Many at once through the writers' own path (which retries, and would hide a race but for
    // the check above), every month made once.
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let creators: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut db = connect(&url);
                barrier.wait();
                let months =
                    (0..24).map(|i| Utc.with_ymd_and_hms(2032 + i / 12, 1 + i as u32 % 12, 1, 0, 0, 0).unwrap());
                store::append::ensure_months_for(&mut db, months).map_err(|e| e.to_string())
            })
        })
        .collect();
    for c in creators {
        c.join().unwrap().unwrap();
    }
    let months: i64 = connect(&url)
        .query_one("SELECT count(*) FROM pg_inherits WHERE inhparent = 'ledger_events'::regclass", &[])
        .unwrap()
        .get(0);
    assert_eq!(months, 3 + 24);
}

/// A database error carries the server's own message and code, not only "db error".
#[test]
fn database_errors_carry_the_servers_message() {
    let url = fresh_db("db_message").unwrap();
    let e = connect(&url).execute("SELECT * FROM no_such_table", &[]).unwrap_err();
    assert_eq!(e.to_string(), "db error");
    let m = store::db_message(&e);
    assert!(m.contains("42P01") && m.contains("relation \"no_such_table\" does not exist"), "{m}");
    let e = store::StoreError::from(e).to_string();
    assert!(e.contains("relation \"no_such_table\" does not exist"), "{e}");
}

/// `gpuledger verify` names where the live projection differs from the log: the first differing
/// keys (tenant, SKU, project, hour) with both sides' figures, a changed row and a missing one.
#[test]
fn verify_names_the_first_keys_where_the_projection_differs() {
    let url = fresh_db("verify_keys").unwrap();
    let mut db = connect(&url);
    let mut w = writer(&url);
    let c = claim(&mut db, "me", 0);
    let messages = (0..6i64)
        .map(|i| {
            msg(i, &event(i as u128 + 1, ["rheinbank", "falke-drones"][i as usize % 2], i as u128 + 1, i * 30, "60"))
        })
        .collect();
    committed(w.append("me", &[PartitionBatch { claim: c, messages }], Utc::now()).unwrap());
    let ok = integration::gpuledger(&url, &["verify"]).unwrap();
    assert!(ok.contains("equal to the live one"), "{ok}");
    // One event an hour for each tenant from Oct 31 23:00: rheinbank at 23:00, 00:00, 01:00,
    // falke-drones at 23:30, 00:30, 01:30.
    db.batch_execute(
        "UPDATE usage_hourly SET gpu_seconds = gpu_seconds + 0.5
          WHERE tenant_id = 'rheinbank' AND hour = '2026-11-01T00:00:00Z';
         DELETE FROM usage_hourly WHERE tenant_id = 'falke-drones' AND hour = '2026-11-01T01:00:00Z';",
    )
    .unwrap();
    let e = integration::gpuledger(&url, &["verify"]).unwrap_err().to_string();
    assert!(
        e.contains(
            "differs from the log at 2 keys, the first at tenant falke-drones sku nvidia-h100-sxm project p1 \
             hour 2026-11-01T01:00:00Z: rebuilt from the log 60 GPU-seconds in 1 event, live no row"
        ),
        "{e}"
    );
    let out = std::process::Command::new(integration::bin())
        .args(["verify"])
        .env("GPULEDGER_DATABASE_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "tenant rheinbank sku nvidia-h100-sxm project p1 hour 2026-11-01T00:00:00Z: \
             rebuilt from the log 60 GPU-seconds in 1 event, live 60.5 GPU-seconds in 1 event"
        ),
        "{stdout}"
    );
}

/// Messages that name a member twice (fixtures/usage/rules/duplicate_member--*) are quarantined
/// with the reason `duplicate_member` and a message naming the member and where it is, their raw
/// bytes kept; nothing of them is ledgered, whichever value a reader would have taken.
#[test]
fn a_message_naming_a_member_twice_is_quarantined_with_its_reason() {
    let url = fresh_db("duplicate_member").unwrap();
    let mut db = connect(&url);
    let mut w = writer(&url);
    let c = claim(&mut db, "me", 0);
    let dir = integration::repo_root().join("fixtures/usage/rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("duplicate_member--"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let bytes: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let messages = bytes.iter().enumerate().map(|(i, b)| raw(i as i64, b)).collect();
    let counts = committed(w.append("me", &[PartitionBatch { claim: c, messages }], Utc::now()).unwrap());
    assert_eq!((counts.ledgered, counts.quarantined), (0, 4), "{counts:?}");
    let rows = db.query("SELECT reason, message, raw FROM quarantine ORDER BY src_offset", &[]).unwrap();
    let expected = [
        "\"id\" appears more than once in the top-level object",
        "\"gpu_seconds\" appears more than once in data ",
        "\"team\" appears more than once in data.labels ",
        "\"tenant_id\" appears more than once in data ",
    ];
    for ((r, want), b) in rows.iter().zip(expected).zip(&bytes) {
        let (reason, message, stored): (String, String, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(reason, "duplicate_member");
        assert!(message.contains(want) && message.contains("RFC 7493"), "{message}");
        assert_eq!(&stored, b);
    }
}
