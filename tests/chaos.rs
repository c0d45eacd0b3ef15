//! Exactly-once under failure, on the real services: SIGKILLs of the ingester at random moments,
//! a PostgreSQL restart, a Kafka broker restart, and two ingesters with rebalances, each mid-run.
//! Every test ends with the generator's totals reproduced exactly (see `assert_exact`).

use integration::*;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

const MIXED: &[&str] =
    &["--duplicates-ppm", "5000", "--conflicts-ppm", "1000", "--overlaps-ppm", "1000", "--poison-ppm", "2000"];

fn accounted_now(db: &str, topic: &str) -> i64 {
    match postgres::Client::connect(db, postgres::NoTls) {
        Ok(mut c) => accounted(&mut c, topic).unwrap_or(0),
        Err(_) => 0,
    }
}

fn wait_for_progress(db: &str, topic: &str, at_least: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while accounted_now(db, topic) < at_least {
        assert!(Instant::now() < deadline, "no progress to {at_least} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn seed() -> u64 {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    eprintln!("chaos seed: {seed} (rerun with CHAOS_SEED={seed})");
    seed
}

#[test]
fn twenty_sigkills_during_two_hundred_thousand_events() {
    let _serial = serial();
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let db = fresh_db("sigkill").unwrap();
    let topic = unique("t.kill");
    let group = unique("g");
    let mut args = vec!["--seed", "21", "--gpus", "48", "--minutes", "5000"];
    args.extend_from_slice(MIXED);
    let totals = produce(&db, &topic, &args).unwrap();
    let messages = totals["messages"].as_i64().unwrap();
    assert!(totals["good"].as_i64().unwrap() >= 200_000, "{totals}");

    // Twenty random moments spread over the run: each ingester is killed once the ledger has
    // reached its random target (plus a random few milliseconds), so every kill lands mid-run.
    // Small batches keep the ingester slow enough (tens of thousands of events a second) that a
    // kill up to 40 ms after a target up to 80 % of the way still finds work left.
    let mut targets: Vec<i64> = (0..20).map(|_| rng.gen_range(messages / 50..messages * 4 / 5)).collect();
    targets.sort_unstable();
    let mut kills_mid_run = 0;
    for (i, target) in targets.iter().enumerate() {
        let before = accounted_now(&db, &topic);
        let mut child =
            spawn_ingest(&db, &topic, &group, &["--instance-id", "chaos-ingester", "--batch-max", "1000"]).unwrap();
        wait_for_progress(&db, &topic, *target, Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
        sigkill(&mut child).unwrap();
        let after = accounted_now(&db, &topic);
        eprintln!("kill {i}: target {target}, accounted {before} -> {after} of {messages}");
        if after < messages {
            kills_mid_run += 1;
        }
    }
    assert!(kills_mid_run >= 20, "all 20 kills landed before the end of the run ({kills_mid_run})");
    let child = spawn_ingest(&db, &topic, &group, &["--instance-id", "chaos-ingester"]).unwrap();
    wait_accounted(&db, &topic, messages, Duration::from_secs(300)).unwrap();
    stop(child).unwrap();
    assert_exact(&db, &topic, &totals).unwrap();
    // The auditors' replay of every projection, through the command line: equal to live.
    let out = gpuledger(&db, &["audit", "replay"]).unwrap();
    assert!(out.contains("replay: equal to the live projections"), "{out}");
}

/// A service restarted while the ingester runs: the ingester keeps running across the outage, and
/// more usage produced after the restart is ingested by the same process, exactly once with what
/// came before. (The second part makes sure the run goes on after the restart, however fast the
/// first part went.)
fn restart_mid_run(name: &str, seeds: [&str; 2], restart: &[&str]) {
    let db = fresh_db(name).unwrap();
    let topic = unique(&format!("t.{name}"));
    let part = |seed: &str, start: &str| {
        let mut args = vec!["--seed", seed, "--gpus", "32", "--minutes", "3000", "--start", start];
        args.extend_from_slice(MIXED);
        produce(&db, &topic, &args).unwrap()
    };
    let first = part(seeds[0], "2026-10-01T00:00:00Z");
    let child = spawn_ingest(&db, &topic, &unique("g"), &["--batch-max", "1000"]).unwrap();
    wait_for_progress(&db, &topic, first["messages"].as_i64().unwrap() / 4, Duration::from_secs(120));
    services(restart).unwrap();
    let second = part(seeds[1], "2026-10-05T00:00:00Z");
    let totals = merge_totals(&first, &second);
    wait_accounted(&db, &topic, totals["messages"].as_i64().unwrap(), Duration::from_secs(300)).unwrap();
    stop(child).unwrap();
    assert_exact(&db, &topic, &totals).unwrap();
}

#[test]
fn postgres_restart_mid_run() {
    let _serial = serial();
    restart_mid_run("pg_restart", ["22", "32"], &["restart-pg"]);
}

#[test]
fn kafka_broker_restart_mid_run() {
    let _serial = serial();
    restart_mid_run("kafka_restart", ["23", "33"], &["restart-kafka"]);
}

/// The broker dies without a clean shutdown (SIGKILL) and recovers its logs on start.
#[test]
fn kafka_broker_killed_mid_run() {
    let _serial = serial();
    restart_mid_run("kafka_kill", ["25", "35"], &["restart-kafka", "kill"]);
}

#[test]
fn two_ingesters_share_the_partitions_through_rebalances() {
    let _serial = serial();
    let db = fresh_db("rebalance").unwrap();
    let topic = unique("t.reb");
    let group = unique("g");
    let mut args = vec!["--seed", "24", "--gpus", "32", "--minutes", "3000"];
    args.extend_from_slice(MIXED);
    let totals = produce(&db, &topic, &args).unwrap();
    let messages = totals["messages"].as_i64().unwrap();
    let a = spawn_ingest(&db, &topic, &group, &["--batch-max", "2000"]).unwrap();
    wait_for_progress(&db, &topic, messages / 5, Duration::from_secs(120));
    let b = spawn_ingest(&db, &topic, &group, &["--batch-max", "2000"]).unwrap(); // rebalance 1
    wait_for_progress(&db, &topic, messages / 2, Duration::from_secs(120));
    assert!(accounted_now(&db, &topic) < messages, "both ran mid-run");
    stop(a).unwrap(); // rebalance 2: b takes every partition
    wait_accounted(&db, &topic, messages, Duration::from_secs(300)).unwrap();
    stop(b).unwrap();
    assert_exact(&db, &topic, &totals).unwrap();
    let mut c = connect(&db);
    let owners: i64 =
        c.query_one("SELECT count(DISTINCT owner) FROM ledger_streams WHERE topic = $1", &[&topic]).unwrap().get(0);
    let max_epoch: i64 =
        c.query_one("SELECT max(epoch) FROM ledger_streams WHERE topic = $1", &[&topic]).unwrap().get(0);
    assert!(max_epoch >= 2, "partitions changed hands (max epoch {max_epoch}, {owners} final owners)");
}
