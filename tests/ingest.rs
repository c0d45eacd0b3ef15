//! The ingester end to end on the real Kafka and PostgreSQL: good traffic with every kind of bad
//! input, duplicate, conflict and overlap mixed in; each refused message quarantined once with the
//! right reason, every good event ledgered once, no partition stalled, every offset accounted for.

use integration::{
    assert_exact, connect, fresh_db, produce, serial, spawn_ingest, stop, topic_messages, unique, wait_accounted,
};
use std::time::Duration;

#[test]
fn bad_input_is_quarantined_and_everything_else_goes_on() {
    let _serial = serial();
    let db = fresh_db("bad_input").unwrap();
    let topic = unique("t.bad");
    let totals = produce(
        &db,
        &topic,
        &[
            "--seed",
            "11",
            "--gpus",
            "40",
            "--tenants",
            "6",
            "--minutes",
            "600",
            "--duplicates-ppm",
            "10000",
            "--conflicts-ppm",
            "5000",
            "--overlaps-ppm",
            "5000",
            "--poison-ppm",
            "20000",
        ],
    )
    .unwrap();
    let quarantined = totals["quarantined"].as_object().unwrap();
    assert_eq!(
        quarantined.len(),
        24,
        "all 22 poison kinds, conflicts and overlaps are in the traffic: {quarantined:?}"
    );
    let messages = totals["messages"].as_i64().unwrap();
    let dlq = format!("{topic}.dlq");
    let child = spawn_ingest(&db, &topic, &unique("g"), &["--dead-letter-topic", &dlq]).unwrap();
    wait_accounted(&db, &topic, messages, Duration::from_secs(180)).unwrap();
    stop(child).unwrap();
    assert_exact(&db, &topic, &totals).unwrap();
    assert_eq!(topic_messages(&topic).unwrap(), messages, "the topic holds what was produced");

    // The optional dead-letter topic got every quarantined message too.
    let refused: i64 = quarantined.values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(topic_messages(&dlq).unwrap(), refused, "dead-letter topic");

    // Every quarantined message keeps its raw bytes, key and coordinates.
    let mut c = connect(&db);
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE octet_length(raw) > 0), count(*) FILTER (WHERE message <> ''), count(*) FROM quarantine",
            &[],
        )
        .unwrap();
    let (with_raw, with_message, all): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((with_raw, with_message), (all, all));
}

#[test]
fn a_restarted_ingester_resumes_from_the_ledger_offsets() {
    let _serial = serial();
    let db = fresh_db("resume").unwrap();
    let topic = unique("t.resume");
    let group = unique("g");
    let first = produce(&db, &topic, &["--seed", "5", "--gpus", "16", "--minutes", "300"]).unwrap();
    let n1 = first["messages"].as_i64().unwrap();
    let child = spawn_ingest(&db, &topic, &group, &[]).unwrap();
    wait_accounted(&db, &topic, n1, Duration::from_secs(120)).unwrap();
    stop(child).unwrap();
    // More traffic for the next 300 minutes, then a new ingester in a NEW group: Kafka has no
    // committed offsets for it, so only the ledger's offsets keep it from re-reading.
    let second =
        produce(&db, &topic, &["--seed", "6", "--gpus", "16", "--minutes", "300", "--start", "2026-10-02T00:00:00Z"])
            .unwrap();
    let n2 = second["messages"].as_i64().unwrap();
    let child = spawn_ingest(&db, &topic, &unique("other-group"), &[]).unwrap();
    wait_accounted(&db, &topic, n1 + n2, Duration::from_secs(120)).unwrap();
    stop(child).unwrap();
    let mut c = connect(&db);
    let dups: i64 = c.query_one("SELECT sum(duplicates)::bigint FROM ledger_streams", &[]).unwrap().get(0);
    assert_eq!(dups, 0, "nothing was read twice");
    let rows: i64 = c.query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    assert_eq!(rows, n1 + n2);
}

#[test]
fn the_ingester_refuses_a_database_without_durable_commits() {
    let _serial = serial();
    let db = fresh_db("not_durable").unwrap();
    let name = db.rsplit('/').next().unwrap().to_string();
    connect(&db).batch_execute(&format!("ALTER DATABASE \"{name}\" SET synchronous_commit = off")).unwrap();
    let out = std::process::Command::new(integration::bin())
        .args(["ingest", "--topic", &unique("t.nd"), "--group", "g"])
        .env("GPULEDGER_DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("synchronous_commit"), "{err}");
}
