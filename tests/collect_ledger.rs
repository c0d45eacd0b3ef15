//! `gpuledger collect dcgm` end to end through the ledger: playback servers serve scrapes in
//! dcgm-exporter's format over real HTTP, the collector produces to a real Kafka topic, the real
//! `gpuledger ingest` writes the events into PostgreSQL, and the ledger's GPU-seconds and Wh
//! (usage rows and the hourly projection) must equal an expectation computed here from the
//! scrapes alone, exactly. Also: reference data the collector reads from the ledger (the SKU
//! catalogue's model names, without a restart) and the closed-period rule of `namespace.map`.

use integration::dcgm::*;
use integration::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const INGEST_WAIT: Duration = Duration::from_secs(180);

fn topic_and_db(name: &str) -> (String, String) {
    let topic = unique(&format!("collect_ledger_{name}"));
    ingest::ensure_topic(&brokers(), &topic, 2).unwrap();
    (fresh_db(name).unwrap(), topic)
}

fn ingester(db: &str, topic: &str) -> Child {
    spawn_ingest(db, topic, &unique("g"), &[]).unwrap()
}

/// Waits until the ingester accounted for every message of the topic (the collectors have
/// stopped, so the topic no longer grows).
fn drain(db: &str, topic: &str) -> i64 {
    let messages = topic_messages(topic).unwrap();
    wait_accounted(db, topic, messages, INGEST_WAIT).unwrap();
    messages
}

/// (ledgered, duplicates, quarantined) of the topic's partitions.
fn counts(db: &str, topic: &str) -> (i64, i64, i64) {
    let stats = store::read::stream_stats(&mut connect(db), topic).unwrap();
    stats.iter().fold((0, 0, 0), |a, s| (a.0 + s.ledgered, a.1 + s.duplicates, a.2 + s.quarantined))
}

/// Per tenant: GPU-seconds and Wh.
type ByTenant = BTreeMap<String, (Decimal, Decimal)>;

/// The ledger's usage rows per tenant (GPU-seconds, Wh); checks that the hourly projection holds
/// the same GPU-seconds per tenant, and returns its GPU-seconds per (tenant, MIG profile).
fn ledger(db: &str) -> (ByTenant, BTreeMap<(String, Option<String>), Decimal>) {
    let mut c = connect(db);
    let mut rows = ByTenant::new();
    for r in c
        .query(
            "SELECT tenant_id, sum(gpu_seconds), coalesce(sum(energy_wh), 0) FROM ledger_events
              WHERE kind = 'usage.recorded' GROUP BY tenant_id",
            &[],
        )
        .unwrap()
    {
        rows.insert(r.get(0), (r.get(1), r.get(2)));
    }
    let mut hourly = BTreeMap::new();
    for r in c.query("SELECT tenant_id, mig_profile, sum(gpu_seconds) FROM usage_hourly GROUP BY 1, 2", &[]).unwrap() {
        hourly.insert((r.get::<_, String>(0), r.get::<_, Option<String>>(1)), r.get::<_, Decimal>(2));
    }
    let mut per_tenant: BTreeMap<String, Decimal> = BTreeMap::new();
    for ((tenant, _), secs) in &hourly {
        *per_tenant.entry(tenant.clone()).or_default() += secs;
    }
    let from_rows: BTreeMap<String, Decimal> = rows.iter().map(|(t, v)| (t.clone(), v.0)).collect();
    assert_eq!(per_tenant, from_rows, "the hourly projection holds the usage rows' GPU-seconds");
    assert_eq!(store::read::rebuild_hourly(&mut c).unwrap(), store::read::live_hourly(&mut c).unwrap());
    (rows, hourly)
}

fn quarantined_reasons(db: &str) -> Vec<(String, i64)> {
    let rows = connect(db).query("SELECT reason, count(*) FROM quarantine GROUP BY reason", &[]).unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Runs a collector to its end (`--max-rounds`) and checks it succeeded.
fn run_collector(db: &str, topic: &str, port: u16, source: &str, rounds: usize, extra: &[&str]) -> Child {
    spawn_collector_with(db, topic, port, source, Some(rounds), extra).0
}

fn finish(child: Child) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "collector failed: {out:?}");
}

// ---------------------------------------------------------------------------------------------
// A scenario through the ledger: tenants changing mid-minute, idle and unmapped time, a counter
// reset, MIG instances of one GPU held by two tenants; then a doubled collector and a replay.

const GPU_A: &str = "GPU-aaaaaaaa-1111-4000-8000-000000000001";
const GPU_M: &str = "GPU-bbbbbbbb-1111-4000-8000-000000000002";
const SCENARIO_STEPS: i64 = 16; // four minutes of 15-second scrapes, ending on a whole minute

/// GPU A's holder at step k: (namespace, pod); "" is idle, "ghost" maps to nobody.
fn holder(k: i64) -> (&'static str, &'static str) {
    match k {
        0..=1 => ("risk", "train-1"),
        2 => ("", ""),
        3..=6 => ("web", "serve-1"),
        7..=8 => ("ghost", "stray-1"),
        _ => ("risk", "train-2"),
    }
}

fn energy(k: i64) -> i64 {
    // A driver restart resets the counter at step 6.
    if k < 6 {
        2_000_000_000 + k * 10_500_001
    } else {
        4_000_777 + (k - 6) * 9_999_999
    }
}

const MIG: [(&str, &str, &str); 2] = [("1", "3g.40gb", "risk"), ("2", "4g.40gb", "web")];

fn scenario_scrape(k: i64) -> String {
    let (ns, pod) = holder(k);
    let mut devs = vec![Dev {
        uuid: GPU_A,
        model: "NVIDIA H200",
        mig: None,
        ns,
        pod,
        container: "main",
        energy_mj: Some(energy(k)),
    }];
    for (id, profile, ns) in MIG {
        devs.push(Dev {
            uuid: GPU_M,
            model: "NVIDIA H100 80GB HBM3",
            mig: Some((id, profile)),
            ns,
            pod: "mig-job",
            container: "c",
            energy_mj: Some(5_000_000 + k),
        });
    }
    exposition(&devs, T0_MS + k * STEP_MS)
}

fn tenant(ns: &str) -> Option<&'static str> {
    match ns {
        "risk" => Some("rheinbank"),
        "web" => Some("isarbank"),
        _ => None,
    }
}

/// From the scrapes alone: each scrape's holder holds its device for the 15 s to the next;
/// a whole GPU's energy is the difference of its rounded readings, none across the reset, none
/// for MIG instances (the exporter repeats the parent's counter on each).
fn scenario_expectation() -> (ByTenant, BTreeMap<(String, Option<String>), Decimal>) {
    let step = Decimal::from(STEP_MS) / Decimal::from(1000);
    let (mut by_tenant, mut by_profile) = (ByTenant::new(), BTreeMap::new());
    for k in 0..SCENARIO_STEPS {
        if let Some(t) = tenant(holder(k).0) {
            let slot = by_tenant.entry(t.to_string()).or_default();
            slot.0 += step;
            if energy(k + 1) >= energy(k) {
                slot.1 += wh(energy(k + 1)) - wh(energy(k));
            }
            *by_profile.entry((t.to_string(), None)).or_default() += step;
        }
        for (_, profile, ns) in MIG {
            let t = tenant(ns).unwrap().to_string();
            by_tenant.entry(t.clone()).or_default().0 += step;
            *by_profile.entry((t, Some(profile.to_string()))).or_default() += step;
        }
    }
    (by_tenant, by_profile)
}

#[test]
fn the_collector_bills_the_ledger_exactly_and_a_doubled_or_replayed_collector_bills_nothing_twice() {
    let _serial = serial();
    let (db, topic) = topic_and_db("cl_scenario");
    load_namespaces(&db, &[("risk", Some("rheinbank")), ("web", Some("isarbank"))]);
    let replies = || (0..=SCENARIO_STEPS).map(|k| Reply::Body(scenario_scrape(k))).collect::<Vec<_>>();
    let rounds = SCENARIO_STEPS as usize + 4;
    let ingest = ingester(&db, &topic);

    // Two collectors with the same --source, each scraping its own copy of the same playback,
    // at the same time: the same runs, the same event ids.
    let source = "//test/collect-ledger";
    let (first, second) = (playback(replies()), playback(replies()));
    let a = run_collector(&db, &topic, first.port, source, rounds, &[]);
    let b = run_collector(&db, &topic, second.port, source, rounds, &[]);
    finish(a);
    finish(b);
    let messages = drain(&db, &topic);
    let (ledgered, duplicates, quarantined) = counts(&db, &topic);
    assert_eq!(
        quarantined,
        0,
        "no overlap between the two MIG instances, nothing refused: {:?}",
        quarantined_reasons(&db)
    );
    assert_eq!(ledgered + duplicates, messages);
    let (rows, hourly) = ledger(&db);
    let (want_rows, want_hourly) = scenario_expectation();
    assert_eq!(rows, want_rows, "GPU-seconds and Wh per tenant");
    assert_eq!(hourly, want_hourly, "GPU-seconds per tenant and MIG profile (both instances of one GPU billed)");
    let mig_rows: i64 = connect(&db)
        .query_one(
            "SELECT count(DISTINCT tenant_id) FROM ledger_events WHERE gpu_id = $1::text::uuid",
            &[&GPU_M[4..].to_string()],
        )
        .unwrap()
        .get(0);
    assert_eq!(mig_rows, 2, "the MIG GPU's time is ledgered for both tenants");

    // The cursor lost (a collector started from scratch on the same source): every event is
    // produced again, and the ledger counts each as a duplicate.
    connect(&db).execute("DELETE FROM collector_cursors WHERE source = $1", &[&source]).unwrap();
    let third = playback(replies());
    finish(run_collector(&db, &topic, third.port, source, rounds, &[]));
    let messages = drain(&db, &topic);
    stop(ingest).unwrap();
    let (ledgered_after, duplicates_after, quarantined_after) = counts(&db, &topic);
    assert_eq!((ledgered_after, quarantined_after), (ledgered, 0), "nothing new ledgered");
    assert_eq!(duplicates_after - duplicates, ledgered, "every replayed event is a counted duplicate");
    assert_eq!(ledgered_after + duplicates_after, messages);
    assert_eq!(ledger(&db), (want_rows, want_hourly), "nothing billed twice");
    eprintln!("scenario: {ledgered} events ledgered, {duplicates_after} duplicates counted");
}

// ---------------------------------------------------------------------------------------------
// SIGKILLs of the collector while the ingester runs.

#[test]
fn sigkills_of_the_collector_while_ingest_runs_leave_the_ledger_exact() {
    use rand::{Rng, SeedableRng};
    let _serial = serial();
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (db, topic) = topic_and_db("cl_kill");
    load_namespaces(&db, &[("risk", Some("rheinbank")), ("web", Some("isarbank"))]);
    let whole = [
        ("GPU-dddddddd-0000-4000-8000-000000000001", "risk"),
        ("GPU-dddddddd-0000-4000-8000-000000000002", "web"),
        ("GPU-dddddddd-0000-4000-8000-000000000003", "risk"),
    ];
    let steps: i64 = 160; // forty minutes of 15-second scrapes, ending on a whole minute
    let counter = |d: usize, k: i64| 3_000_000_000 + k * (6_000_001 + d as i64 * 2_345_678);
    let replies: Vec<Reply> = (0..=steps)
        .map(|k| {
            let mut devs: Vec<Dev> = whole
                .iter()
                .enumerate()
                .map(|(d, (uuid, ns))| Dev {
                    uuid,
                    model: "NVIDIA B200",
                    mig: None,
                    ns,
                    pod: "p",
                    container: "c",
                    energy_mj: Some(counter(d, k)),
                })
                .collect();
            for (id, profile, ns) in MIG {
                let (uuid, model) = (GPU_M, "NVIDIA H100 80GB HBM3");
                devs.push(Dev { uuid, model, mig: Some((id, profile)), ns, pod: "m", container: "c", energy_mj: None });
            }
            Reply::Body(exposition(&devs, T0_MS + k * STEP_MS))
        })
        .collect();
    let server = playback(replies);
    let ingest = ingester(&db, &topic);
    let source = "//test/collect-ledger-kill";
    // Lost scrapes (a collector killed between its scrape and its commit) are bridged: the
    // holders never change, so the expectation does not depend on which were lost.
    let bridge = ["--bridge-ms", "3600000"];
    let mut kills = 0;
    while kills < 10 {
        let (mut child, _) = spawn_collector_with(&db, &topic, server.port, source, None, &bridge);
        if kills == 0 {
            // The first scrape (step 0) must reach the cursor: the expectation starts there.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut c = connect(&db);
            while c.query_opt("SELECT 1 FROM collector_cursors WHERE source = $1", &[&source]).unwrap().is_none() {
                assert!(Instant::now() < deadline, "the first round never committed");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..500)));
        sigkill(&mut child).unwrap();
        kills += 1;
    }
    let (child, _) = spawn_collector_with(&db, &topic, server.port, source, None, &bridge);
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.served.load(Ordering::SeqCst) < steps as usize + 5 {
        assert!(Instant::now() < deadline, "the sequence was not served in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop(child).unwrap();
    let served_at_kills = server.served.load(Ordering::SeqCst);
    assert!(served_at_kills > steps as usize, "kills fell inside the run");
    let messages = drain(&db, &topic);
    stop(ingest).unwrap();

    let secs = Decimal::from(steps * STEP_MS) / Decimal::from(1000);
    let mut want = ByTenant::new();
    for (d, (_, ns)) in whole.iter().enumerate() {
        let slot = want.entry(tenant(ns).unwrap().to_string()).or_default();
        slot.0 += secs;
        slot.1 += wh(counter(d, steps)) - wh(counter(d, 0));
    }
    for (_, _, ns) in MIG {
        want.entry(tenant(ns).unwrap().to_string()).or_default().0 += secs;
    }
    let (ledgered, duplicates, quarantined) = counts(&db, &topic);
    assert_eq!(quarantined, 0, "{:?}", quarantined_reasons(&db));
    assert_eq!(ledgered + duplicates, messages);
    assert_eq!(ledger(&db).0, want, "GPU-seconds and Wh per tenant after 10 SIGKILLs");
    eprintln!("kills: {messages} messages, {ledgered} ledgered, {duplicates} duplicates");
}

// ---------------------------------------------------------------------------------------------
// 10,000 GPUs over HTTP into the ledger.

#[test]
fn ten_thousand_gpus_over_http_are_billed_exactly() {
    use domain::meter::fleet::{fleet_exposition, FLEET_NAMESPACES};
    let _serial = serial();
    let started = Instant::now();
    let gpus: u32 = 10_000;
    let (db, topic) = topic_and_db("cl_fleet");
    let maps: Vec<Value> = (0..FLEET_NAMESPACES)
        .map(|n| {
            json!({"kind": "namespace.map", "data": {"namespace": format!("team-{n}"),
                "tenant_id": format!("tenant-{n}"), "effective_from": "2026-01-01T00:00:00Z"}})
        })
        .collect();
    let file = std::env::temp_dir().join(format!("{}.json", unique("fleet-maps")));
    std::fs::write(&file, serde_json::to_vec(&maps).unwrap()).unwrap();
    gpuledger(&db, &["reference", "load", &file.display().to_string()]).unwrap();

    // Three scrapes a minute apart (a 700 W GPU uses 42,000,000 mJ a minute).
    let counters = [1_000_000_000i64, 1_042_000_000, 1_084_000_123];
    let replies: Vec<Reply> = counters
        .iter()
        .enumerate()
        .map(|(k, e)| Reply::Body(fleet_exposition(gpus, T0_MS + k as i64 * 60_000, *e)))
        .collect();
    let bytes = match &replies[0] {
        Reply::Body(b) => b.len(),
        _ => unreachable!(),
    };
    let server = playback(replies);
    let ingest = ingester(&db, &topic);
    let collecting = Instant::now();
    let extra = ["--timeout-ms", "60000"];
    finish(run_collector(&db, &topic, server.port, "//test/collect-fleet", 4, &extra));
    let collected = collecting.elapsed();
    let messages = drain(&db, &topic);
    stop(ingest).unwrap();

    // GPU g: namespace team-(g mod 50), its counter at scrape k reads counters[k] + g; held
    // for the two minutes between the first and the last scrape.
    let mut want = ByTenant::new();
    for g in 0..gpus {
        let slot = want.entry(format!("tenant-{}", g % FLEET_NAMESPACES)).or_default();
        slot.0 += Decimal::from(120);
        slot.1 += wh(counters[2] + i64::from(g)) - wh(counters[0] + i64::from(g));
    }
    let (ledgered, duplicates, quarantined) = counts(&db, &topic);
    assert_eq!((ledgered, quarantined), (2 * i64::from(gpus), 0), "one event per GPU and minute");
    assert_eq!(ledgered + duplicates, messages);
    let (rows, _) = ledger(&db);
    assert_eq!(rows, want, "GPU-seconds and Wh per tenant");
    let total: Decimal = rows.values().map(|v| v.0).sum();
    assert_eq!(total, Decimal::from(1_200_000));
    eprintln!(
        "fleet: {gpus} GPUs, {bytes} bytes a scrape, collector {:.1} s, whole test {:.1} s", // float-ok: a duration printed for people
        collected.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// The SKU catalogue from the ledger.

#[test]
fn a_model_added_to_the_sku_catalogue_is_billed_without_restarting_the_collector() {
    let _serial = serial();
    let (db, topic) = topic_and_db("cl_catalogue");
    load_namespaces(&db, &[("risk", Some("rheinbank"))]);
    let uuid = "GPU-eeeeeeee-0000-4000-8000-000000000001";
    let scrape = |k: i64| {
        let dev = Dev {
            uuid,
            model: "NVIDIA H200 NVL",
            mig: None,
            ns: "risk",
            pod: "p",
            container: "c",
            energy_mj: Some(7_000_000_000 + k * 8_100_007),
        };
        Reply::Body(exposition(&[dev], T0_MS + k * STEP_MS))
    };
    // Steps 0..=4 (one minute), a long run of refused scrapes while the catalogue changes, then
    // steps 5..=12 (two more minutes); the scrapes' own timestamps leave no gap.
    const WINDOW: usize = 800;
    let mut replies: Vec<Reply> = (0..=4).map(scrape).collect();
    replies.extend((0..WINDOW).map(|_| Reply::Refused));
    replies.extend((5..=12).map(scrape));
    let total = replies.len();
    let server = playback(replies);
    let ingest = ingester(&db, &topic);
    let (collector, log) = spawn_collector_with(&db, &topic, server.port, "//test/collect-catalogue", None, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.served.load(Ordering::SeqCst) < 7 {
        assert!(Instant::now() < deadline, "the first minute was not served in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    let unbillable: Decimal = connect(&db)
        .query_one("SELECT coalesce(sum(gpu_seconds), 0) FROM collector_coverage WHERE class = 'unbillable'", &[])
        .unwrap()
        .get(0);
    assert_eq!(unbillable, Decimal::from(60), "a model the catalogue does not know is not billed");

    let hour = chrono::DateTime::from_timestamp(T0_MS / 1000 / 3600 * 3600, 0).unwrap();
    let sku_set = json!([{"kind": "sku.set", "data": {"sku": "nvidia-h200-nvl", "effective_from": hour,
        "display_name": "NVIDIA H200 NVL", "model_names": ["NVIDIA H200 NVL"]}}]);
    let file = std::env::temp_dir().join(format!("{}.json", unique("sku")));
    std::fs::write(&file, serde_json::to_vec(&sku_set).unwrap()).unwrap();
    gpuledger(&db, &["reference", "load", &file.display().to_string()]).unwrap();
    assert!(
        server.served.load(Ordering::SeqCst) < 5 + WINDOW,
        "the catalogue changed after the collector had moved on (a slow machine): rerun"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.served.load(Ordering::SeqCst) < total + 3 {
        assert!(Instant::now() < deadline, "the sequence was not served in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(collector).unwrap();
    let messages = drain(&db, &topic);
    stop(ingest).unwrap();
    let (ledgered, _, quarantined) = counts(&db, &topic);
    assert_eq!((ledgered, quarantined, messages), (2, 0, 2), "two minutes billed after the load");
    let row = connect(&db)
        .query_one(
            "SELECT gpu_sku, sum(gpu_seconds), sum(energy_wh) FROM ledger_events WHERE kind = 'usage.recorded' GROUP BY 1",
            &[],
        )
        .unwrap();
    let e = |k: i64| 7_000_000_000 + k * 8_100_007;
    let want = ("nvidia-h200-nvl".to_string(), Decimal::from(120), wh(e(12)) - wh(e(4)));
    assert_eq!((row.get::<_, String>(0), row.get::<_, Decimal>(1), row.get::<_, Decimal>(2)), want);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// namespace.map and closed periods (fixtures/billing/namespace-maps*.json).

fn fixture(name: &str) -> String {
    repo_root().join(format!("fixtures/billing/{name}.json")).display().to_string()
}

fn reference_head(db: &str) -> Option<i64> {
    store::append::reference_head(&mut connect(db)).unwrap()
}

#[test]
fn namespace_maps_taking_effect_in_a_closed_period_are_refused_like_prices() {
    let _serial = serial();
    let db = fresh_db("cl_nsmap").unwrap();
    let mut args = vec!["reference", "load"];
    let files: Vec<String> = ["seller", "prices", "profiles", "contracts"].iter().map(|f| fixture(f)).collect();
    args.extend(files.iter().map(String::as_str));
    gpuledger(&db, &args).unwrap();
    let out = gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap();
    assert!(out.contains("closed 2026-08"), "{out}");

    // Item 2 takes effect at 23:59 in Berlin on 31 August, inside the closed month: the whole
    // load is refused and nothing is written.
    let before = reference_head(&db);
    let e = gpuledger(&db, &["reference", "load", &fixture("namespace-maps-closed-period")]).unwrap_err().to_string();
    assert!(e.contains("item 2 (namespace.map)") && e.contains("which is closed"), "{e}");
    assert_eq!(reference_head(&db), before, "nothing was written");
    // A price list effective in the closed month is refused the same way.
    let price = json!([{"kind": "price_list.set", "data": {"sku": "nvidia-h200", "effective_from": "2026-08-31T21:00:00Z",
        "currency": "EUR", "tiers": [{"from_gpu_hours": "0", "eur_per_gpu_hour": "1.00"}]}}]);
    let file = std::env::temp_dir().join(format!("{}.json", unique("late-price")));
    std::fs::write(&file, serde_json::to_vec(&price).unwrap()).unwrap();
    let e = gpuledger(&db, &["reference", "load", &file.display().to_string()]).unwrap_err().to_string();
    assert!(e.contains("which is closed"), "{e}");

    // From the first instant after the closed month on (00:00 in Berlin on 1 September), accepted.
    let out = gpuledger(&db, &["reference", "load", &fixture("namespace-maps")]).unwrap();
    assert!(out.contains("4 new reference events"), "{out}");
    let state = store::billing::reference_state(&mut connect(&db)).unwrap();
    let at = |s: &str| s.parse().unwrap();
    assert_eq!(state.namespaces.tenant_of(None, "risk", at("2026-09-01T00:00:00Z")).as_deref(), Some("rheinbank"));
    assert_eq!(
        state.namespaces.tenant_of(Some("fra2"), "risk", at("2026-09-02T00:00:00Z")).as_deref(),
        Some("isarbank")
    );
    assert_eq!(state.namespaces.tenant_of(None, "web", at("2026-10-02T00:00:00Z")), None);

    // Each invalid item is refused on its own rules, naming its field.
    let invalid: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture("namespace-maps-invalid")).unwrap()).unwrap();
    for item in invalid {
        let field = item["field"].as_str().unwrap().to_string();
        let file = std::env::temp_dir().join(format!("{}.json", unique("bad-map")));
        let load = json!([{"kind": item["kind"], "data": item["data"]}]);
        std::fs::write(&file, serde_json::to_vec(&load).unwrap()).unwrap();
        let e = gpuledger(&db, &["reference", "load", &file.display().to_string()]).unwrap_err().to_string();
        assert!(e.contains("item 1 (namespace.map)") && e.contains(&format!("{field}:")), "{field}: {e}");
    }
}
