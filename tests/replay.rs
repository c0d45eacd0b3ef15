//! `gpuledger audit replay` on the real services: usage through Kafka with duplicates and poison
//! messages, reference data, a close, late usage and a correction (`usage.adjusted`), a second
//! close with late lines and a credit note, budget events. The replay of every projection must
//! equal the live ones and hash the same three times; as of a sequence number (and a recorded
//! instant) between the closes it must show the first close's documents and exactly the usage
//! the ledger knew then; a tampered projection row (usage or invoice) must be reported by key.

use domain::billing::invoice::TYPE_CREDIT_NOTE;
use integration::{bin, brokers, connect, fresh_db, produce_and_ingest, repo_root, serial, superuser_url, unique};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::str::FromStr;

/// Runs `gpuledger` and returns (exit success, stdout, stderr).
fn run(db: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(repo_root())
        .env("GPULEDGER_DATABASE_URL", db)
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn ok(db: &str, args: &[&str]) -> String {
    let (success, out, err) = run(db, args);
    assert!(success, "gpuledger {args:?} failed:\n{out}\n{err}");
    out
}

fn replay_json(db: &str, extra: &[&str]) -> Value {
    let out = ok(db, &[&["audit", "replay", "--json"], extra].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn files(dir: &str, names: &[&str]) -> Vec<String> {
    names.iter().map(|f| repo_root().join(format!("fixtures/{dir}/{f}.json")).display().to_string()).collect()
}

fn load(db: &str, what: &str, paths: &[String]) {
    let mut args = vec![what, "load"];
    args.extend(paths.iter().map(String::as_str));
    ok(db, &args);
}

fn write_json(v: &Value) -> String {
    let p = std::env::temp_dir().join(format!("{}.json", unique("replay")));
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.display().to_string()
}

/// Produces a slice of fleet usage, ingests it completely and returns the generator's totals.
fn usage(db: &str, topic: &str, args: &[&str]) -> Value {
    produce_and_ingest(db, topic, args).unwrap()
}

/// `replayed_totals` of a replay's JSON as (tenant, SKU) -> GPU-seconds.
fn replayed_totals(v: &Value) -> BTreeMap<(String, String), Decimal> {
    v["replayed_totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let key = (t["tenant_id"].as_str().unwrap().to_string(), t["gpu_sku"].as_str().unwrap().to_string());
            (key, Decimal::from_str(t["gpu_seconds"].as_str().unwrap()).unwrap())
        })
        .collect()
}

fn sha(v: &Value, output: &str) -> String {
    v["outputs"][output]["sha256"].as_str().unwrap().to_string()
}

#[test]
fn replay_equals_live_as_of_any_cut_and_names_tampered_rows() {
    let _serial = serial();
    let db = fresh_db("replay").unwrap();
    let topic = unique("t.replay");
    // Ten hours of September for 6 GPUs, with duplicate and poison messages.
    let september = usage(
        &db,
        &topic,
        &[
            "--seed",
            "31",
            "--gpus",
            "6",
            "--tenants",
            "5",
            "--start",
            "2026-09-01T00:00:00Z",
            "--minutes",
            "600",
            "--duplicates-ppm",
            "20000",
            "--poison-ppm",
            "5000",
        ],
    );
    assert!(september["duplicates"].as_i64().unwrap() > 0, "{september}");
    load(&db, "reference", &files("billing", &["seller", "prices", "profiles", "contracts"]));
    load(&db, "budget", &files("budget", &["master", "allocations"]));
    ok(&db, &["invoices", "close", "--period", "2026-09"]);
    let mut c = connect(&db);
    let first_seq: i64 = c.query_one("SELECT max(seq) FROM ledger_events", &[]).unwrap().get(0);
    // An instant after the close and before anything later (the close's own rows carry its time
    // in whole seconds, earlier than the reference and budget rows written just before it).
    let first_at: chrono::DateTime<chrono::Utc> = c.query_one("SELECT clock_timestamp()", &[]).unwrap().get(0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let first_docs: Vec<String> =
        c.query("SELECT number FROM invoices ORDER BY number", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(first_docs.len(), 5, "one document per tenant");

    // Late September usage after the close, October usage, a correction taking GPU time from a
    // tenant without late usage, budget bookings; then October's close.
    let late = usage(
        &db,
        &topic,
        &["--seed", "32", "--gpus", "2", "--tenants", "5", "--start", "2026-09-20T00:00:00Z", "--minutes", "90"],
    );
    usage(
        &db,
        &topic,
        &["--seed", "33", "--gpus", "6", "--tenants", "5", "--start", "2026-10-03T00:00:00Z", "--minutes", "300"],
    );
    let late_tenants: Vec<String> = late["gpu_seconds"].as_object().unwrap().keys().cloned().collect();
    let row = c
        .query_one(
            "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds FROM usage_hourly
              WHERE hour < '2026-10-01' AND tenant_id <> ALL($1) AND tenant_id <> 'allgaeu-versicherung'
              ORDER BY gpu_seconds DESC, tenant_id LIMIT 1",
            &[&late_tenants],
        )
        .unwrap();
    let (tenant, hour, secs): (String, chrono::DateTime<chrono::Utc>, Decimal) = (row.get(0), row.get(3), row.get(4));
    let take = (secs / Decimal::from(3)).round_dp(3);
    let adj = json!([{ "kind": "usage.adjusted", "data": {
        "tenant_id": tenant, "gpu_sku": row.get::<_, String>(1), "project": row.get::<_, String>(2),
        "hour": hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "gpu_seconds_delta": format!("-{take}"), "reason": "maintenance window (OPS-77)" } }]);
    load(&db, "reference", &[write_json(&adj)]);
    load(&db, "budget", &files("budget", &["bookings"]));
    ok(&db, &["invoices", "close", "--period", "2026-10"]);
    let credit: i64 = c
        .query_one("SELECT count(*) FROM invoices WHERE type_code = $1", &[&(TYPE_CREDIT_NOTE as i16)])
        .unwrap()
        .get(0);
    assert_eq!(credit, 1, "the correction gave a credit note");

    // (1) The whole log: equal to live, and the same hashes three times.
    let runs: Vec<Value> = (0..3).map(|_| replay_json(&db, &[])).collect();
    let all = &runs[0];
    assert_eq!(all["differences_total"], 0, "{all:#}");
    assert_eq!(all["closes"], 2);
    let issued: i64 = c.query_one("SELECT count(*) FROM invoices", &[]).unwrap().get(0);
    assert_eq!(all["outputs"]["invoices"]["rows"].as_i64(), Some(issued));
    let live_rows: i64 = c.query_one("SELECT count(*) FROM usage_hourly", &[]).unwrap().get(0);
    assert_eq!(all["outputs"]["usage_hourly"]["rows"].as_i64(), Some(live_rows));
    for r in &runs[1..] {
        assert_eq!(r["output_sha256"], all["output_sha256"], "replays of the same log hash the same");
        assert_eq!(r["outputs"], all["outputs"]);
    }
    let (success, text, progress) = run(&db, &["audit", "replay", "--progress", "--schema", "audit_kept", "--keep"]);
    assert!(success && text.contains("replay: equal to the live projections"), "{text}");
    assert!(progress.contains("replay: folded ledger_events_y2026m09"), "progress on stderr: {progress}");
    let kept: i64 = c.query_one("SELECT count(*) FROM audit_kept.usage_hourly", &[]).unwrap().get(0);
    assert_eq!(kept, live_rows, "--keep leaves the scratch schema");
    let (success, _, err) = run(&db, &["audit", "replay", "--schema", "audit_kept"]);
    assert!(!success && err.contains("exists already"), "{err}");
    c.batch_execute("DROP SCHEMA audit_kept CASCADE").unwrap();
    let dropped: i64 =
        c.query_one("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'replay\\_%'", &[]).unwrap().get(0);
    assert_eq!(dropped, 0, "without --keep the scratch schema is gone");
    assert!(text.contains(all["output_sha256"].as_str().unwrap()), "{text}");

    // (2) As of the first close (by sequence number, then by recorded time): its documents only,
    // and exactly the usage of the first slice (the generator's totals, duplicates and poison
    // left out).
    let then = replay_json(&db, &["--until-seq", &first_seq.to_string()]);
    assert_eq!(then["differences_total"], 0, "{then:#}");
    assert_eq!(then["closes"], 1);
    assert_eq!(then["outputs"]["invoices"]["rows"].as_i64(), Some(first_docs.len() as i64));
    assert_eq!(then["outputs"]["usage_hourly"]["compared"], false);
    let want: BTreeMap<(String, String), Decimal> = domain::simulate::Totals::gpu_seconds_from_json(&september)
        .unwrap()
        .into_iter()
        .flat_map(|(t, skus)| skus.into_iter().map(move |(s, g)| ((t.clone(), s), g.normalize())))
        .collect();
    assert_eq!(replayed_totals(&then), want, "usage known at the first close");
    let text = ok(&db, &["audit", "replay", "--until-seq", &first_seq.to_string()]);
    for number in &first_docs {
        assert!(!text.contains("DIFFERENCE"), "{text}");
        assert!(!number.is_empty());
    }
    assert!(text.contains("not compared"), "{text}");
    let at = first_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let known = replay_json(&db, &["--as-of", &at]);
    assert_eq!(known["differences_total"], 0, "{known:#}");
    for output in ["usage_hourly", "invoices", "budget_report"] {
        assert_eq!(sha(&known, output), sha(&then, output), "{output}: as of the instant = as of the seq");
    }
    assert_ne!(sha(&then, "usage_hourly"), sha(all, "usage_hourly"), "the later usage changes the projection");
    let before = replay_json(&db, &["--as-of", "2000-01-01T00:00:00Z"]);
    assert_eq!(before["outputs"]["usage_hourly"]["rows"], 0);
    assert_eq!(before["outputs"]["invoices"]["rows"], 0);

    // (3) Tampered projection rows are reported by key, with a non-zero exit.
    let key = c
        .query_one("SELECT tenant_id, gpu_sku, project, hour FROM usage_hourly ORDER BY 1, 2, 3, 4 LIMIT 1", &[])
        .unwrap();
    let (t, s, p, h): (String, String, String, chrono::DateTime<chrono::Utc>) =
        (key.get(0), key.get(1), key.get(2), key.get(3));
    let bump = "UPDATE usage_hourly SET gpu_seconds = gpu_seconds + $5
                 WHERE tenant_id = $1 AND gpu_sku = $2 AND project = $3 AND hour = $4";
    c.execute(bump, &[&t, &s, &p, &h, &Decimal::new(1, 6)]).unwrap();
    let (success, out, err) = run(&db, &["audit", "replay"]);
    assert!(!success, "a changed usage row must fail the replay:\n{out}");
    let hour = h.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert!(out.contains(&format!("DIFFERENCE usage_hourly {t} {s} {p} {hour}")), "{out}");
    assert!(err.contains("1 difference(s)"), "{err}");
    c.execute(bump, &[&t, &s, &p, &h, &Decimal::new(-1, 6)]).unwrap();
    assert_eq!(replay_json(&db, &[])["output_sha256"], all["output_sha256"], "restored");

    let number = &first_docs[0];
    connect(&superuser_url(&db))
        .batch_execute(&format!(
            "SET session_replication_role = replica;
         UPDATE invoices SET net_total = net_total + 1 WHERE number = '{number}';
         SET session_replication_role = origin;"
        ))
        .unwrap();
    let (success, out, _) = run(&db, &["audit", "replay"]);
    assert!(!success, "a changed invoice row must fail the replay:\n{out}");
    assert!(out.contains(&format!("DIFFERENCE invoices invoice {number}")), "{out}");
    // The same tampering is visible as of the first close too: that invoice was issued then.
    let (success, out, _) = run(&db, &["audit", "replay", "--until-seq", &first_seq.to_string()]);
    assert!(!success && out.contains(&format!("DIFFERENCE invoices invoice {number}")), "{out}");
}
