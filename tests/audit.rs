//! The auditors' replay on the real PostgreSQL and Kafka: usage ingested from Kafka, then the
//! log tampered with as a superuser can (triggers off) in a copy of that database each: a changed
//! payload, a deleted row, a forged row, a cut tail with a rewritten head (caught by a sealed
//! checkpoint, and by a receipt kept outside when the checkpoints go too), an edited checkpoint.
//! `gpuledger audit verify` must exit non-zero and name the stream and sequence number, and
//! exit 0 on the untouched log. Then the export: checksums, rows and hashes against the database,
//! the chain recomputed from the export alone, and index.xml naming every column in order.

use chrono::{DateTime, Utc};
use domain::chain::{link, ChainRow};
use integration::{
    admin_url, bin, brokers, connect, fresh_db, gdpdu_index_columns as index_columns, on_db, owner_url, owner_user,
    produce_and_ingest, repo_root, superuser_url, unique,
};
use postgres::{Client, NoTls};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// A database with usage ingested from Kafka (2 partitions), used as a template for each case.
static TEMPLATE: OnceLock<(String, String)> = OnceLock::new();
static COPIES: Mutex<()> = Mutex::new(());

fn template() -> &'static (String, String) {
    TEMPLATE.get_or_init(|| {
        let url = fresh_db("audit_tpl").unwrap();
        let topic = unique("t.audit");
        let args = ["--seed", "3", "--gpus", "8", "--tenants", "3", "--minutes", "15", "--partitions", "2"];
        produce_and_ingest(&url, &topic, &args).unwrap();
        (url, topic)
    })
}

/// A fresh copy of the template database; returns its URL and the usage topic.
fn copy(name: &str) -> (String, String) {
    let (tpl, topic) = template();
    let _one_at_a_time = COPIES.lock().unwrap_or_else(|e| e.into_inner());
    let tpl_name = tpl.rsplit_once('/').unwrap().1;
    let db = unique(&format!("t_audit_{name}"));
    let mut admin = Client::connect(&admin_url(), NoTls).unwrap();
    // The ingester's and the helpers' sessions may take a moment to go away.
    for attempt in 0.. {
        match admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\" TEMPLATE \"{tpl_name}\" OWNER \"{}\"", owner_user()))
        {
            Ok(()) => break,
            Err(e) if attempt < 50 => {
                eprintln!("copying the template: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("copying the template: {e}"),
        }
    }
    (on_db(&owner_url(), &db), topic.clone())
}

/// Runs `gpuledger` and returns (exit success, stdout + stderr).
fn run(db: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(repo_root())
        .env("GPULEDGER_DATABASE_URL", db)
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn verify(db: &str, extra: &[&str]) -> (bool, String) {
    run(db, &[&["audit", "verify"], extra].concat())
}

/// `audit verify` fails and its first break names this stream and sequence number.
fn assert_caught(db: &str, extra: &[&str], stream_id: i32, stream: &str, seq: i64, reason: &str) {
    let (ok, out) = verify(db, extra);
    assert!(!ok, "tampering not detected:\n{out}");
    let first = out.lines().find(|l| l.starts_with("FIRST BREAK")).unwrap_or_else(|| panic!("no first break:\n{out}"));
    let want = format!("FIRST BREAK: seq {seq} in stream {stream_id} ({stream})");
    assert!(first.starts_with(&want), "expected {want:?}, got:\n{out}");
    assert!(first.contains(reason), "expected {reason:?} in the first break:\n{out}");
}

/// The Kafka stream with the most rows: (stream_id, "topic/partition").
fn kafka_stream(db: &mut Client, topic: &str) -> (i32, String) {
    let r = db
        .query_one(
            "SELECT stream_id, topic || '/' || kafka_partition FROM ledger_streams WHERE topic = $1 ORDER BY head_pos DESC LIMIT 1",
            &[&topic],
        )
        .unwrap();
    (r.get(0), r.get(1))
}

/// (seq, stream_pos, hash) of every row of a stream, in position order.
fn rows(db: &mut Client, stream_id: i32) -> Vec<(i64, i64, Vec<u8>)> {
    db.query("SELECT seq, stream_pos, hash FROM ledger_events WHERE stream_id = $1 ORDER BY stream_pos", &[&stream_id])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Runs SQL with the append-only triggers off, as a superuser can.
fn tamper(db: &mut Client, sql: &str) {
    db.batch_execute(&format!("SET session_replication_role = replica; {sql}; SET session_replication_role = origin;"))
        .unwrap();
}

fn receipt_of(checkpoint_output: &str) -> String {
    checkpoint_output
        .lines()
        .find_map(|l| l.strip_prefix("receipt:"))
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|| panic!("no receipt in:\n{checkpoint_output}"))
}

#[test]
fn an_untouched_log_verifies_and_checkpoints_are_once_a_day() {
    let (db, topic) = copy("clean");
    let (ok, out) = verify(&db, &[]);
    assert!(ok && out.contains("audit: intact"), "{out}");
    assert!(out.contains("/0: ") && out.contains("/1: "), "both Kafka partitions are walked:\n{out}");

    let (ok, first) = run(&db, &["audit", "checkpoint"]);
    assert!(ok && first.contains("checkpoint #1 sealed"), "{first}");
    let (ok, again) = run(&db, &["audit", "checkpoint"]);
    assert!(ok && again.contains("checkpoint #1 already sealed today"), "{again}");
    assert_eq!(receipt_of(&first), receipt_of(&again), "the same checkpoint");
    let (ok, forced) = run(&db, &["audit", "checkpoint", "--force"]);
    assert!(ok && forced.contains("checkpoint #2 sealed"), "{forced}");

    let mut c = connect(&superuser_url(&db));
    let heads: Vec<serde_json::Value> = c
        .query("SELECT payload->'data' FROM ledger_events WHERE kind = 'audit.checkpoint.sealed' ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(heads.len(), 2);
    assert_eq!(heads[1]["prev"], heads[0]["fingerprint"], "checkpoints are chained");
    let streams: i64 = c.query_one("SELECT count(*) FROM ledger_streams", &[]).unwrap().get(0);
    assert_eq!(heads[0]["heads"].as_array().unwrap().len() as i64, streams, "every stream's head");
    let kafka = kafka_stream(&mut c, &topic);
    let last = rows(&mut c, kafka.0).pop().unwrap();
    let recorded = heads[0]["heads"].as_array().unwrap().iter().find(|h| h["stream_id"] == kafka.0).unwrap().clone();
    assert_eq!(recorded["head_seq"], last.0);
    assert_eq!(recorded["head_hash"], hex_of(&last.2));

    let (ok, out) = verify(&db, &["--receipt", &receipt_of(&first), "--receipt", &receipt_of(&forced)]);
    assert!(ok && out.contains("checkpoint #2 (seq") && out.contains("audit: intact"), "{out}");
    // The old command still passes, and a receipt that was never issued is reported missing.
    let (ok, out) = run(&db, &["verify"]);
    assert!(ok, "{out}");
    let (ok, out) = verify(&db, &["--receipt", "0000-0000-0000-0000-0000-0000-0000-0000"]);
    assert!(!ok && out.contains("NOT in the log"), "{out}");
    let (ok, out) = verify(&db, &["--receipt", "not hex"]);
    assert!(!ok && out.contains("receipt"), "{out}");
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_changed_payload_is_named_by_stream_and_seq() {
    let (db, topic) = copy("payload");
    let mut c = connect(&superuser_url(&db));
    let (sid, name) = kafka_stream(&mut c, &topic);
    let r = rows(&mut c, sid);
    let (seq, pos, _) = r[r.len() / 2].clone();
    tamper(&mut c, &format!("UPDATE ledger_events SET gpu_seconds = 1 WHERE seq = {seq}"));
    assert_caught(&db, &[], sid, &name, seq, "hash does not match the row");
    let (_, out) = verify(&db, &[]);
    assert!(out.contains(&format!("position {pos}")), "{out}");
}

#[test]
fn a_deleted_row_is_named_by_the_row_after_it() {
    let (db, topic) = copy("delete");
    let mut c = connect(&superuser_url(&db));
    let (sid, name) = kafka_stream(&mut c, &topic);
    let r = rows(&mut c, sid);
    let k = r.len() / 2;
    tamper(&mut c, &format!("DELETE FROM ledger_events WHERE seq = {}", r[k].0));
    let (next_seq, _, _) = r[k + 1];
    assert_caught(&db, &[], sid, &name, next_seq, &format!("expected position {}, found {}", k + 1, k + 2));
}

#[test]
fn a_forged_row_with_a_plausible_hash_is_named() {
    let (db, topic) = copy("forge");
    let mut c = connect(&superuser_url(&db));
    let (sid, name) = kafka_stream(&mut c, &topic);
    let partition: i32 =
        c.query_one("SELECT kafka_partition FROM ledger_streams WHERE stream_id = $1", &[&sid]).unwrap().get(0);
    let r = rows(&mut c, sid);
    let k = r.len() / 2; // the forged row claims position k + 1, linked to row k's hash
    let orig = c
        .query_one(
            &format!(
                "SELECT occurred_at, recorded_at, tenant_id, src_offset, event_id, {} FROM ledger_events WHERE seq = $1",
                store::ledger_row::content_columns("")
            ),
            &[&r[k].0],
        )
        .unwrap();
    let (occurred, recorded, tenant, offset): (DateTime<Utc>, DateTime<Utc>, String, i64) =
        (orig.get(0), orig.get(1), orig.get(2), orig.get(3));
    let id = store::ledger_row::Identity { event_id: orig.get(4), tenant_id: &tenant, occurred_at: occurred };
    // Forged in the other form a usage row may take (a jsonb payload, as before migration 0005).
    let mut payload = store::ledger_row::content(&orig, 5, id).unwrap().payload_json();
    payload["data"]["gpu_seconds"] = serde_json::json!("0.5");
    let bytes = serde_json::to_vec(&payload).unwrap();
    let event_id = uuid::Uuid::from_u128(0xf0_0d);
    let row = ChainRow {
        stream_id: sid,
        stream_pos: k as i64 + 1,
        event_id,
        tenant_id: &tenant,
        kind: "usage.recorded",
        version: 1,
        occurred_at: occurred,
        recorded_at: recorded,
        src_partition: Some(partition),
        src_offset: Some(offset),
        payload: &bytes,
    };
    let prev: [u8; 32] = r[k - 1].2.as_slice().try_into().unwrap();
    let hash = link(&prev, &row);
    c.batch_execute("SET session_replication_role = replica").unwrap();
    let seq: i64 = c
        .query_one(
            "INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id, event_id, hash, payload)
             VALUES ($1, $2, $3, $4, $5, 1, 'usage.recorded', $6, $7, $8, $9) RETURNING seq",
            &[&occurred, &recorded, &sid, &(k as i64 + 1), &offset, &tenant, &event_id, &hash.as_slice(), &payload],
        )
        .unwrap()
        .get(0);
    c.batch_execute("SET session_replication_role = origin").unwrap();
    // Its hash links correctly to its predecessor; the position it claims is taken.
    assert_caught(&db, &[], sid, &name, seq, &format!("expected position {}, found {}", k + 2, k + 1));
}

#[test]
fn a_cut_tail_with_a_rewritten_head_is_caught_by_the_checkpoint() {
    let (db, topic) = copy("tail");
    let mut c = connect(&superuser_url(&db));
    let (sid, name) = kafka_stream(&mut c, &topic);
    let cut = |c: &mut Client| {
        let r = rows(c, sid);
        let keep = &r[r.len() - 4];
        // Everything a careful superuser would fix: rows, head, and the offset counters.
        tamper(
            c,
            &format!(
                "DELETE FROM ledger_events WHERE stream_id = {sid} AND stream_pos > {pos};
                 UPDATE ledger_streams SET head_pos = {pos}, head_hash = '\\x{hash}', ledgered = ledgered - 3,
                        next_offset = next_offset - 3 WHERE stream_id = {sid}",
                pos = keep.1,
                hash = hex_of(&keep.2)
            ),
        );
        r.last().unwrap().0
    };

    // Without a checkpoint the cut is invisible: the rest is a valid chain (docs/audit.md says so).
    let (plain, _) = copy("tail_plain");
    let mut p = connect(&superuser_url(&plain));
    let _ = cut(&mut p);
    let (ok, out) = verify(&plain, &[]);
    assert!(ok, "a consistent cut without a checkpoint cannot be seen:\n{out}");

    let (ok, out) = run(&db, &["audit", "checkpoint"]);
    assert!(ok, "{out}");
    let head_seq = cut(&mut c);
    assert_caught(&db, &[], sid, &name, head_seq, "that row is missing");
}

#[test]
fn a_receipt_catches_the_removal_of_the_checkpoints_too() {
    let (db, topic) = copy("receipt");
    let mut c = connect(&superuser_url(&db));
    let (sid, _) = kafka_stream(&mut c, &topic);
    let (ok, out) = run(&db, &["audit", "checkpoint"]);
    assert!(ok, "{out}");
    let receipt = receipt_of(&out);
    let (audit_id, audit_name): (i32, String) = {
        let r = c
            .query_one(
                "SELECT stream_id, topic || '/' || kafka_partition FROM ledger_streams WHERE topic = 'gpuledger.audit'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let r = rows(&mut c, sid);
    let keep = &r[r.len() - 3];
    tamper(
        &mut c,
        &format!(
            "DELETE FROM ledger_events WHERE stream_id = {sid} AND stream_pos > {pos};
             UPDATE ledger_streams SET head_pos = {pos}, head_hash = '\\x{hash}', ledgered = ledgered - 2,
                    next_offset = next_offset - 2 WHERE stream_id = {sid};
             DELETE FROM ledger_events WHERE stream_id = {audit_id};
             DELETE FROM ledger_event_ids WHERE tenant_id = '-';
             UPDATE ledger_streams SET head_pos = 0, head_hash = '\\x{zeros}', ledgered = 0 WHERE stream_id = {audit_id}",
            pos = keep.1,
            hash = hex_of(&keep.2),
            zeros = "00".repeat(32)
        ),
    );
    let (ok, out) = verify(&db, &[]);
    assert!(ok, "without the receipt, the whole-tail rewrite is consistent:\n{out}");
    let (ok, out) = verify(&db, &["--receipt", &receipt]);
    assert!(!ok, "{out}");
    let first = out.lines().find(|l| l.starts_with("FIRST BREAK")).unwrap_or_default();
    assert!(
        first.contains(&format!("in stream {audit_id} ({audit_name})")) && first.contains("names no checkpoint"),
        "{out}"
    );
}

#[test]
fn an_edited_checkpoint_is_named() {
    let (db, _) = copy("edit_cp");
    let (ok, out) = run(&db, &["audit", "checkpoint"]);
    assert!(ok, "{out}");
    let mut c = connect(&superuser_url(&db));
    let r = c
        .query_one(
            "SELECT e.seq, s.stream_id, s.topic || '/' || s.kafka_partition FROM ledger_events e
               JOIN ledger_streams s USING (stream_id) WHERE e.kind = 'audit.checkpoint.sealed'",
            &[],
        )
        .unwrap();
    let (seq, audit_id, name): (i64, i32, String) = (r.get(0), r.get(1), r.get(2));
    tamper(
        &mut c,
        &format!(
            "UPDATE ledger_events SET payload = jsonb_set(payload, '{{data,heads,0,head_pos}}', '0') WHERE seq = {seq}"
        ),
    );
    assert_caught(&db, &[], audit_id, &name, seq, "hash does not match the row");
    let (_, out) = verify(&db, &[]);
    assert!(out.contains("its fingerprint is not the hash of its heads"), "{out}");
}

#[test]
fn the_export_is_complete_checksummed_self_verifying_and_described() {
    let (db, _) = copy("export");
    let (ok, out) = run(&db, &["audit", "checkpoint"]);
    assert!(ok, "{out}");
    let dir = std::env::temp_dir().join(unique("audit_export"));
    let (ok, out) = run(&db, &["audit", "export", "--out", dir.to_str().unwrap()]);
    assert!(ok, "{out}");

    let sums = Command::new("sha256sum").arg("-c").arg("SHA256SUMS").current_dir(&dir).output().unwrap();
    assert!(sums.status.success(), "sha256sum -c: {}", String::from_utf8_lossy(&sums.stdout));
    let listed = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    for f in ["ledger_events.csv", "ledger_events.jsonl", "ledger_streams.csv", "index.xml", "gdpdu-01-09-2004.dtd"] {
        assert!(listed.contains(&format!("  {f}\n")), "{f} in SHA256SUMS");
    }

    let mut c = connect(&superuser_url(&db));
    let in_db: Vec<(i64, i32, i64, Vec<u8>)> = c
        .query("SELECT seq, stream_id, stream_pos, hash FROM ledger_events ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let csv_text = std::fs::read(dir.join("ledger_events.csv")).unwrap();
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(csv_text.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), in_db.len(), "one CSV record per ledger row");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut heads: std::collections::HashMap<i32, [u8; 32]> = Default::default();
    let partitions: std::collections::HashMap<i32, i32> = c
        .query("SELECT stream_id, kafka_partition FROM ledger_streams", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (rec, (seq, sid, pos, hash)) in records.iter().zip(&in_db) {
        assert_eq!(rec[col("seq")].parse::<i64>().unwrap(), *seq);
        assert_eq!(rec[col("hash")], hex_of(hash), "hash of seq {seq}");
        // The chain, recomputed from the export alone.
        let prev = heads.get(sid).copied().unwrap_or(domain::chain::GENESIS);
        assert_eq!(rec[col("prev_hash")], hex_of(&prev), "prev_hash of seq {seq}");
        let offset = &rec[col("src_offset")];
        let row = ChainRow {
            stream_id: *sid,
            stream_pos: *pos,
            event_id: rec[col("event_id")].parse().unwrap(),
            tenant_id: &rec[col("tenant_id")],
            kind: &rec[col("kind")],
            version: rec[col("version")].parse().unwrap(),
            occurred_at: rec[col("occurred_at")].parse().unwrap(),
            recorded_at: rec[col("recorded_at")].parse().unwrap(),
            src_partition: Some(partitions[sid]),
            src_offset: (!offset.is_empty()).then(|| offset.parse().unwrap()),
            payload: rec[col("payload")].as_bytes(),
        };
        let computed = link(&prev, &row);
        assert_eq!(hex_of(&computed), hex_of(hash), "seq {seq} recomputed from the export");
        heads.insert(*sid, computed);
    }
    let jsonl = std::fs::read_to_string(dir.join("ledger_events.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), in_db.len());
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], in_db[0].0);
    assert_eq!(first["hash"], hex_of(&in_db[0].3));
    let streams = std::fs::read_to_string(dir.join("ledger_streams.csv")).unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM ledger_streams", &[]).unwrap().get(0);
    assert_eq!(streams.lines().count() as i64, n + 1, "header and one line per stream");

    // index.xml: valid against the shipped gdpdu-01-09-2004.dtd, every column of each CSV in order,
    // the header skipped by its size.
    let tables = index_columns(&dir.join("index.xml")).unwrap();
    let header_line = csv_text.split(|b| *b == b'\n').next().unwrap().len() + 1;
    assert_eq!(tables[0], (format!("ledger_events.csv:{header_line}"), header.clone()));
    let streams_header: Vec<String> = streams.lines().next().unwrap().split(';').map(str::to_string).collect();
    assert_eq!(tables[1].1, streams_header);
    assert!(csv_text.ends_with(b"\r\n") && streams.contains("\r\n"), "CRLF record delimiter");

    // A sub-range: the first row's prev_hash is its predecessor's hash in the database.
    let (from, to) = (in_db[in_db.len() / 3].0, in_db[2 * in_db.len() / 3].0);
    let part = std::env::temp_dir().join(unique("audit_export_part"));
    let (ok, out) = run(
        &db,
        &[
            "audit",
            "export",
            "--out",
            part.to_str().unwrap(),
            "--from-seq",
            &from.to_string(),
            "--to-seq",
            &to.to_string(),
        ],
    );
    assert!(ok, "{out}");
    let text = std::fs::read(part.join("ledger_events.csv")).unwrap();
    let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(text.as_slice());
    let recs: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let want: Vec<&(i64, i32, i64, Vec<u8>)> = in_db.iter().filter(|r| (from..=to).contains(&r.0)).collect();
    assert_eq!(recs.len(), want.len());
    let (_, sid, pos, _) = want[0];
    let before = in_db.iter().find(|r| r.1 == *sid && r.2 == pos - 1).map(|r| hex_of(&r.3)).unwrap_or("00".repeat(32));
    assert_eq!(recs[0][col("prev_hash")], before);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&part);
}
