//! `gpuledger collect dcgm` over real HTTP: a playback server serves recorded scrape sequences
//! in dcgm-exporter's format (HELP/TYPE lines, the renderer's label order, MIG labels, the
//! Kubernetes pod mapping), the collector produces to a real Kafka topic with its cursor in a
//! real PostgreSQL database, and the events read back from Kafka must equal an expectation
//! computed here, independently of the meter, exactly.
//!
//! The scrapes carry sample timestamps (valid exposition; dcgm-exporter writes none, and the
//! collector then uses its clock): the playback's virtual time, so a run of minutes takes
//! milliseconds and the expectation is exact.

use integration::dcgm::*;
use integration::*;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Every message of the topic: (event id, event).
fn read_topic(topic: &str) -> Vec<(String, Value)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("collect-read"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let expected = topic_messages(topic).unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (out.len() as i64) < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.push((v["id"].as_str().unwrap().to_string(), v));
        }
    }
    assert_eq!(out.len() as i64, expected, "read the whole topic");
    out
}

/// Distinct events by id; a repeated id must carry the same event.
fn distinct(messages: Vec<(String, Value)>) -> BTreeMap<String, Value> {
    let mut events = BTreeMap::new();
    for (id, v) in messages {
        if let Some(old) = events.insert(id.clone(), v.clone()) {
            assert_eq!(old, v, "event {id} produced twice with different content");
        }
    }
    events
}

const GPU_A: &str = "GPU-aaaaaaaa-0000-4000-8000-000000000001";
const GPU_B: &str = "GPU-bbbbbbbb-0000-4000-8000-000000000002";

/// GPU A's holder at step k: (namespace, pod, container); "" is idle.
fn holder_a(k: i64) -> (&'static str, &'static str, &'static str) {
    match k {
        0..=1 => ("risk", "train-1", "tr\"ainer"),
        2 => ("", "", ""),
        3..=5 => ("web", "serve-1", "srv"),
        6..=11 => ("ghost", "stray-1", "x"),
        12 => ("", "", ""),
        _ => ("risk", "train-2", "tr\"ainer"),
    }
}

fn energy_a(k: i64) -> i64 {
    // Counter reset (driver restart) at step 4.
    if k < 4 {
        1_000_000_000 + k * 10_500_001
    } else {
        5_000_123 + (k - 4) * 9_999_999
    }
}

fn scrape_at(k: i64) -> (i64, Vec<Dev>) {
    let (ns, pod, container) = holder_a(k);
    let a = Dev { uuid: GPU_A, model: "NVIDIA H200", mig: None, ns, pod, container, energy_mj: Some(energy_a(k)) };
    let b1 = Dev {
        uuid: GPU_B,
        model: "NVIDIA H200",
        mig: Some(("1", "3g.71gb")),
        ns: "risk",
        pod: "mig-a",
        container: "c",
        energy_mj: Some(7),
    };
    let b2 = Dev {
        uuid: GPU_B,
        model: "NVIDIA H200",
        mig: Some(("2", "4g.71gb")),
        ns: "web",
        pod: "mig-b",
        container: "c",
        energy_mj: Some(7),
    };
    (T0_MS + k * STEP_MS, vec![a, b1, b2])
}

#[derive(Default, Debug, PartialEq)]
struct Expect {
    billed: BTreeMap<String, (Decimal, Decimal)>,
    idle: Decimal,
    unmapped: Decimal,
    unmetered: Decimal,
}

/// The expectation from the observed scrapes alone: each observation holds its device until
/// the next (bridged up to 60 s), energy as differences of rounded readings, no energy across
/// a counter reset, none for MIG instances.
fn expect(observed: &[i64]) -> Expect {
    let tenant = |ns: &str| match ns {
        "risk" => Some("rheinbank"),
        "web" => Some("isarbank"),
        _ => None,
    };
    let mut e = Expect::default();
    for w in observed.windows(2) {
        let (k1, k2) = (w[0], w[1]);
        let secs = Decimal::from((k2 - k1) * STEP_MS) / Decimal::from(1000);
        let (_, devs) = scrape_at(k1);
        for d in devs {
            if (k2 - k1) * STEP_MS > 60_000 {
                e.unmetered += secs;
                continue;
            }
            let energy = match d.mig {
                None if energy_a(k2) >= energy_a(k1) => wh(energy_a(k2)) - wh(energy_a(k1)),
                _ => Decimal::ZERO,
            };
            match (d.ns, tenant(d.ns)) {
                ("", _) => e.idle += secs,
                (_, None) => e.unmapped += secs,
                (_, Some(t)) => {
                    let slot = e.billed.entry(t.to_string()).or_default();
                    slot.0 += secs;
                    slot.1 += energy;
                }
            }
        }
    }
    e
}

#[test]
fn tenants_mig_gaps_resets_escapes_and_unmapped_time_are_metered_exactly() {
    let _serial = serial();
    let (db, topic) = topic_and_db("collect_exact");
    load_namespaces(&db, &[("risk", Some("rheinbank")), ("web", Some("isarbank"))]);
    // Steps 0..=12, then a ten-minute outage (refused scrapes), then steps 52..=56.
    let mut replies = Vec::new();
    let mut observed = Vec::new();
    for k in (0..=12).chain(52..=56) {
        let (t, devs) = scrape_at(k);
        if k == 5 {
            replies.push(Reply::Late(exposition(&devs, t), Duration::from_millis(1500)));
            continue;
        }
        if k == 52 {
            replies.extend((0..3).map(|_| Reply::Refused));
        }
        replies.push(Reply::Body(exposition(&devs, t)));
        observed.push(k);
    }
    let server = playback(replies);
    let (mut child, log) = spawn_collector(&db, &topic, server.port, "//test/collect-exact", Some(30));
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("scrape failed"), "the late scrape timed out: {stderr}");
    assert!(stderr.contains("skipped part of a scrape"), "the malformed line was reported");
    assert!(server.served.load(Ordering::SeqCst) >= 22);

    let events = distinct(read_topic(&topic));
    let mut got = Expect::default();
    for v in events.values() {
        let d = &v["data"];
        let slot = got.billed.entry(d["tenant_id"].as_str().unwrap().to_string()).or_default();
        slot.0 += dec(&d["gpu_seconds"]);
        if d.get("energy_wh").is_some() {
            slot.1 += dec(&d["energy_wh"]);
        }
        let start = chrono::DateTime::parse_from_rfc3339(d["interval_start"].as_str().unwrap()).unwrap();
        let end = chrono::DateTime::parse_from_rfc3339(d["interval_end"].as_str().unwrap()).unwrap();
        assert_eq!(start.timestamp() / 60, (end.timestamp_millis() - 1) / 60_000, "one minute per event: {v}");
        if d["gpu_id"] == GPU_B {
            assert!(d.get("energy_wh").is_none(), "a MIG instance's energy is its parent's: none billed");
            assert!(["3g.71gb", "4g.71gb"].contains(&d["mig_profile"].as_str().unwrap()), "{v}");
            assert!(d["mig_instance"] == "1" || d["mig_instance"] == "2");
        } else if d["project"] == "risk" {
            assert_eq!(d["labels"]["container"], "tr\"ainer", "escaped label value read back");
            assert_eq!(d["node"], "gpu-node-1");
        }
    }
    let mut c = connect(&db);
    for (class, slot) in [("idle", &mut got.idle), ("unmapped", &mut got.unmapped), ("unmetered", &mut got.unmetered)] {
        let row = c
            .query_one("SELECT coalesce(sum(gpu_seconds), 0) FROM collector_coverage WHERE class = $1", &[&class])
            .unwrap();
        *slot = row.get(0);
    }
    let want = expect(&observed);
    assert_eq!(got, want);
    assert!(want.unmapped > Decimal::ZERO && want.unmetered >= Decimal::from(3 * 600));
    let outbox: i64 = c.query_one("SELECT count(*) FROM collector_outbox", &[]).unwrap().get(0);
    assert_eq!(outbox, 0, "everything acknowledged");
}

/// Ten SIGKILLs at random moments of a run: every device's time from its first to its last
/// scrape is billed exactly once (no gap, no overlap, duplicates only as identical events), and
/// its energy adds up to the difference of its rounded first and last readings.
#[test]
fn sigkills_at_random_moments_lose_nothing_and_bill_nothing_twice() {
    use rand::{Rng, SeedableRng};
    let _serial = serial();
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (db, topic) = topic_and_db("collect_kill");
    load_namespaces(&db, &[("risk", Some("rheinbank")), ("web", Some("isarbank"))]);
    let uuids = [
        "GPU-cccccccc-0000-4000-8000-000000000001",
        "GPU-cccccccc-0000-4000-8000-000000000002",
        "GPU-cccccccc-0000-4000-8000-000000000003",
    ];
    let steps: i64 = 240; // an hour of 15-second scrapes, ending on a whole minute
    let energy = |d: usize, k: i64| 1_000_000_000 + k * (7_000_001 + d as i64 * 1_234_567);
    let replies: Vec<Reply> = (0..=steps)
        .map(|k| {
            let devs: Vec<Dev> = uuids
                .iter()
                .enumerate()
                .map(|(d, uuid)| Dev {
                    uuid,
                    model: "NVIDIA H100 80GB HBM3",
                    mig: None,
                    ns: if (k / 7 + d as i64) % 2 == 0 { "risk" } else { "web" },
                    pod: "p",
                    container: "c",
                    energy_mj: Some(energy(d, k)),
                })
                .collect();
            Reply::Body(exposition(&devs, T0_MS + k * STEP_MS))
        })
        .collect();
    let server = playback(replies);
    let source = "//test/collect-kill";
    let mut kills = 0;
    while kills < 10 {
        let (mut child, _) = spawn_collector(&db, &topic, server.port, source, None);
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..700)));
        sigkill(&mut child).unwrap();
        kills += 1;
    }
    // The last collector runs until the sequence is served, then a few rounds more.
    let (child, _) = spawn_collector(&db, &topic, server.port, source, None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.served.load(Ordering::SeqCst) < steps as usize + 5 {
        assert!(Instant::now() < deadline, "the sequence was not served in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop(child).unwrap();
    assert!(server.served.load(Ordering::SeqCst) > steps as usize, "kills fell inside the run");

    let events = distinct(read_topic(&topic));
    let mut per_gpu: BTreeMap<String, Vec<(i64, i64, Decimal, Decimal)>> = BTreeMap::new();
    for v in events.values() {
        let d = &v["data"];
        let ms = |f: &str| chrono::DateTime::parse_from_rfc3339(d[f].as_str().unwrap()).unwrap().timestamp_millis();
        per_gpu.entry(d["gpu_id"].as_str().unwrap().to_string()).or_default().push((
            ms("interval_start"),
            ms("interval_end"),
            dec(&d["gpu_seconds"]),
            dec(&d["energy_wh"]),
        ));
    }
    assert_eq!(per_gpu.len(), 3);
    for (d, uuid) in uuids.iter().enumerate() {
        let mut runs = per_gpu.remove(*uuid).unwrap();
        runs.sort();
        // The first observation that reached the cursor (a collector killed before its first
        // commit loses its scrape): from there on, every millisecond once.
        let first_ms = runs[0].0;
        let first_step = (first_ms - T0_MS) / STEP_MS;
        assert_eq!((first_ms - T0_MS) % STEP_MS, 0);
        let mut at = first_ms;
        for (start, end, secs, _) in &runs {
            assert_eq!(*start, at, "{uuid}: a gap or an overlap at {start}");
            assert_eq!(*secs, Decimal::from(end - start) / Decimal::from(1000));
            at = *end;
        }
        assert_eq!(at, T0_MS + steps * STEP_MS, "{uuid}: billed to the last scrape");
        let energy_sum: Decimal = runs.iter().map(|r| r.3).sum();
        assert_eq!(energy_sum, wh(energy(d, steps)) - wh(energy(d, first_step)), "{uuid}: energy telescopes");
    }
    let ids: BTreeSet<&String> = events.keys().collect();
    assert_eq!(ids.len(), events.len());
}
