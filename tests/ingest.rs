//! The ingester end to end on the real Kafka and PostgreSQL: good traffic with every kind of bad
//! input, duplicate, conflict and overlap mixed in; each refused message quarantined once with the
//! right reason, every good event ledgered once, no partition stalled, every offset accounted for.

use integration::{
    assert_exact, connect, fresh_db, ingest_until, produce, serial, spawn_ingest, stop, topic_messages, unique,
    wait_accounted,
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
        25,
        "all 23 poison kinds (a repeated member name among them), conflicts and overlaps are in the traffic: {quarantined:?}"
    );
    let messages = totals["messages"].as_i64().unwrap();
    let dlq = format!("{topic}.dlq");
    ingest_until(&db, &topic, &unique("g"), &["--dead-letter-topic", &dlq], messages).unwrap();
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
    ingest_until(&db, &topic, &group, &[], n1).unwrap();
    // More traffic for the next 300 minutes, then a new ingester in a NEW group: Kafka has no
    // committed offsets for it, so only the ledger's offsets keep it from re-reading.
    let second =
        produce(&db, &topic, &["--seed", "6", "--gpus", "16", "--minutes", "300", "--start", "2026-10-02T00:00:00Z"])
            .unwrap();
    let n2 = second["messages"].as_i64().unwrap();
    ingest_until(&db, &topic, &unique("other-group"), &[], n1 + n2).unwrap();
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

/// Waiting cures a database that is down, not one that is missing, unmigrated or half migrated:
/// the ingester says so and exits instead of retrying forever.
#[test]
fn the_ingester_refuses_a_database_it_cannot_write_the_ledger_to() {
    let _serial = serial();
    let run = |url: &str| -> String {
        let waiting = format!("the ingester kept waiting on {url}");
        integration::ingest_expecting_failure(
            url,
            &unique("t.nm"),
            &["--idle-exit-secs", "120"],
            Duration::from_secs(60),
            &waiting,
        )
    };
    let base = integration::owner_url().rsplit_once('/').unwrap().0.to_string();

    // A database nobody created.
    let err = run(&format!("{base}/{}", unique("t_missing")));
    assert!(err.contains("does not exist") && err.contains("gpuledger migrate"), "{err}");

    // An empty database.
    let empty = unique("t_empty");
    connect(&integration::admin_url()).batch_execute(&format!("CREATE DATABASE \"{empty}\"")).unwrap();
    let err = run(&format!("{base}/{empty}"));
    assert!(err.contains("gpuledger migrate"), "{err}");

    // A database one migration behind this binary: the missing one is named.
    let db = fresh_db("behind").unwrap();
    let last = store::migrate::MIGRATIONS.last().unwrap().0;
    connect(&db).execute("DELETE FROM schema_migrations WHERE name = $1", &[&last]).unwrap();
    let err = run(&db);
    assert!(err.contains(&format!("lacks migration {last}")), "{err}");
}

/// A valid event the database refuses (here a rule the validator does not know: no usage of one
/// node for five minutes) is set aside alone, in quarantine with the database's reason; the rest
/// of its batch and partition is ledgered and the ingester goes on.
#[test]
fn an_event_the_database_refuses_is_quarantined_alone_and_the_rest_goes_on() {
    let _serial = serial();
    let db = fresh_db("refused").unwrap();
    connect(&db)
        .batch_execute(
            "ALTER TABLE ledger_events ADD CONSTRAINT test_refuses_a_node CHECK (gpu_id IS NULL
               OR NOT (node = 'fra1-r00-n003' AND occurred_at >= '2026-10-01T01:00:00Z'
                                              AND occurred_at <  '2026-10-01T01:05:00Z'))",
        )
        .unwrap();
    let topic = unique("t.refused");
    let args =
        ["--seed", "21", "--gpus", "16", "--tenants", "3", "--minutes", "180", "--start", "2026-10-01T00:00:00Z"];
    let totals = produce(&db, &topic, &args).unwrap();
    let (messages, good) = (totals["messages"].as_i64().unwrap(), totals["good"].as_i64().unwrap());
    assert_eq!(messages, good, "{totals}");
    let dlq = format!("{topic}.dlq");
    ingest_until(&db, &topic, &unique("g"), &["--dead-letter-topic", &dlq], messages).unwrap();

    let mut c = connect(&db);
    let refused = c
        .query("SELECT raw, message, event_id, tenant_id FROM quarantine WHERE reason = 'refused_by_database'", &[])
        .unwrap();
    assert_eq!(refused.len(), 4 * 5, "four GPUs of the node, five minutes");
    for r in &refused {
        let event: serde_json::Value = serde_json::from_slice(r.get::<_, &[u8]>(0)).unwrap();
        assert_eq!(event["data"]["node"], "fra1-r00-n003");
        let start = event["data"]["interval_start"].as_str().unwrap();
        assert!(("2026-10-01T01:00:00Z".."2026-10-01T01:05:00Z").contains(&start), "{start}");
        let message: String = r.get(1);
        assert!(message.contains("test_refuses_a_node"), "{message}");
        assert_eq!(r.get::<_, Option<uuid::Uuid>>(2).unwrap().to_string(), event["id"].as_str().unwrap());
        assert_eq!(r.get::<_, Option<String>>(3).as_deref(), event["data"]["tenant_id"].as_str());
    }
    let quarantined: i64 = c.query_one("SELECT count(*) FROM quarantine", &[]).unwrap().get(0);
    assert_eq!(quarantined, 20, "nothing else is quarantined");
    let ledgered: i64 = c.query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    assert_eq!(ledgered, good - 20, "every other event is ledgered");
    let streams = store::read::stream_stats(&mut c, &topic).unwrap();
    for s in &streams {
        assert_eq!(s.next_offset.unwrap_or(0), s.ledgered + s.duplicates + s.quarantined, "partition {}", s.partition);
    }
    assert_eq!(topic_messages(&dlq).unwrap(), 20, "dead-letter topic");
    // The chains still verify (the refused events left no gap in any stream's positions).
    integration::gpuledger(&db, &["verify"]).unwrap();
}

/// Claiming partitions fails in a way retrying cannot cure (here the writer role lost its right to
/// update `ledger_streams`): the ingester stops with the database's reason instead of retrying
/// forever inside the rebalance.
#[test]
fn the_ingester_stops_when_it_can_never_claim_its_partitions() {
    let _serial = serial();
    let db = fresh_db("noclaim").unwrap();
    connect(&db).batch_execute("REVOKE INSERT, UPDATE ON ledger_streams FROM gpuledger_writer").unwrap();
    let topic = unique("t.noclaim");
    produce(&db, &topic, &["--seed", "3", "--gpus", "4", "--tenants", "2", "--minutes", "10"]).unwrap();
    let err = integration::ingest_expecting_failure(
        &db,
        &topic,
        &[],
        Duration::from_secs(90),
        "the ingester kept retrying a claim that can never succeed",
    );
    assert!(err.contains("claiming partitions") && err.contains("permission denied"), "{err}");
}

/// A database that refuses every event (here a rule no usage row can meet) is the database's
/// fault, not the events': the ingester stops after a few, with the reason, instead of
/// quarantining the whole stream.
#[test]
fn the_ingester_stops_when_the_database_refuses_event_after_event() {
    let _serial = serial();
    let db = fresh_db("refuses_all").unwrap();
    connect(&db)
        .batch_execute("ALTER TABLE ledger_events ADD CONSTRAINT test_refuses_all_usage CHECK (gpu_id IS NULL)")
        .unwrap();
    let topic = unique("t.refall");
    let totals = produce(&db, &topic, &["--seed", "4", "--gpus", "8", "--tenants", "2", "--minutes", "30"]).unwrap();
    let messages = totals["messages"].as_i64().unwrap();
    let err = integration::ingest_expecting_failure(
        &db,
        &topic,
        &["--writers", "1"],
        Duration::from_secs(90),
        "the ingester went on while the database refused everything",
    );
    assert!(err.contains("events in a row") && err.contains("test_refuses_all_usage"), "{err}");
    let mut c = connect(&db);
    let quarantined: i64 = c.query_one("SELECT count(*) FROM quarantine", &[]).unwrap().get(0);
    assert!(quarantined < 16, "at most a few set aside before stopping: {quarantined} of {messages}");
    let accounted = integration::accounted(&mut c, &topic).unwrap();
    assert_eq!(accounted, quarantined, "nothing else moved on");
}

/// A month detached from the ledger while the ingester runs (an operator archiving it) is created
/// again when late usage for it arrives: the refusal is the database's state, not the events'.
#[test]
fn a_month_detached_while_ingesting_is_created_again_for_late_usage() {
    let _serial = serial();
    let db = fresh_db("detached").unwrap();
    let topic = unique("t.detached");
    let first = produce(
        &db,
        &topic,
        &["--seed", "8", "--gpus", "4", "--tenants", "2", "--minutes", "60", "--start", "2026-10-01T00:00:00Z"],
    )
    .unwrap();
    let n1 = first["messages"].as_i64().unwrap();
    let child = spawn_ingest(&db, &topic, &unique("g"), &[]).unwrap();
    wait_accounted(&db, &topic, n1, Duration::from_secs(120)).unwrap();
    connect(&db)
        .batch_execute(
            "ALTER TABLE ledger_events DETACH PARTITION ledger_events_y2026m10;
             ALTER TABLE ledger_events_y2026m10 RENAME TO archived_2026_10",
        )
        .unwrap();
    let second = produce(
        &db,
        &topic,
        &["--seed", "9", "--gpus", "4", "--tenants", "2", "--minutes", "60", "--start", "2026-10-02T00:00:00Z"],
    )
    .unwrap();
    let n2 = second["messages"].as_i64().unwrap();
    wait_accounted(&db, &topic, n1 + n2, Duration::from_secs(120)).unwrap();
    stop(child).unwrap();
    let mut c = connect(&db);
    let quarantined: i64 = c.query_one("SELECT count(*) FROM quarantine", &[]).unwrap().get(0);
    assert_eq!(quarantined, 0, "the late usage is ledgered, not set aside");
    let rows: i64 = c.query_one("SELECT count(*) FROM ledger_events_y2026m10", &[]).unwrap().get(0);
    assert_eq!(rows, n2, "in a new partition for the month");
}

/// In production the ingester logs in as a role that is only a member of `gpuledger_writer`
/// (docs/operations.md), not as the owner: it starts, checks the migrations and ingests.
#[test]
fn the_ingester_runs_as_a_login_role_that_is_only_a_writer() {
    let _serial = serial();
    let db = fresh_db("login_role").unwrap();
    let login = unique("t_ingester");
    connect(&integration::admin_url())
        .batch_execute(&format!("CREATE ROLE \"{login}\" LOGIN NOSUPERUSER NOINHERIT IN ROLE gpuledger_writer"))
        .unwrap();
    let (base, name) = db.rsplit_once('/').unwrap();
    let (scheme_user, host) = base.split_once('@').unwrap();
    let scheme = scheme_user.rsplit_once("//").unwrap().0;
    let url = format!("{scheme}//{login}@{host}/{name}");
    let topic = unique("t.login");
    let totals = produce(&db, &topic, &["--seed", "12", "--gpus", "4", "--tenants", "2", "--minutes", "60"]).unwrap();
    let child = integration::spawn_ingest_as(&db, &url, &topic, &unique("g"), &[]).unwrap();
    let waited = wait_accounted(&db, &topic, totals["messages"].as_i64().unwrap(), Duration::from_secs(120));
    stop(child).unwrap();
    waited.unwrap();
    assert_exact(&db, &topic, &totals).unwrap();
    let superuser: bool =
        connect(&url).query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[]).unwrap().get(0);
    assert!(!superuser);
}
