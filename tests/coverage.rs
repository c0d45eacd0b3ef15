//! Coverage before a close (issue 15, section 5), end to end: the real collector meters a
//! playback of dcgm-exporter scrapes over HTTP (billed, idle, unmapped, unbillable, MIG slices,
//! a gap longer than the bridge, across Berlin's midnight and then UTC's), its events go through
//! Kafka into the ledger, and `gpuledger coverage` and `GET /v1/finance/coverage` must show
//! exactly the GPU-seconds per SKU and Berlin day computed here from the scrapes alone; a tenant
//! is refused; the finance page shows the table.

use integration::dcgm::*;
use integration::*;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

/// 2026-10-14T22:00:00Z: midnight in Berlin (CEST), where 14 October ends.
const BERLIN_MIDNIGHT_MS: i64 = 1_792_015_200_000;
/// 2026-10-15T00:00:00Z: no boundary of a Berlin day.
const UTC_MIDNIGHT_MS: i64 = 1_792_022_400_000;
const STEP_MS: i64 = 15_000;
const BRIDGE_MS: i64 = 60_000; // spawn_collector's --bridge-ms

const GPU_A: &str = "GPU-aaaaaaaa-0000-4000-8000-00000000000a";
const GPU_B: &str = "GPU-bbbbbbbb-0000-4000-8000-00000000000b";
const GPU_C: &str = "GPU-cccccccc-0000-4000-8000-00000000000c";

/// The scrape times: every 15 s from two minutes before Berlin's midnight to a minute after;
/// ten minutes of silence; a minute; then nothing until a minute before UTC's midnight, and
/// every 15 s to a minute after it. Every stretch ends on a whole minute, so every minute closes.
fn times() -> Vec<i64> {
    let run = |from: i64, steps: i64| (0..=steps).map(move |k| from + k * STEP_MS);
    run(BERLIN_MIDNIGHT_MS - 120_000, 12)
        .chain(run(BERLIN_MIDNIGHT_MS + 660_000, 4))
        .chain(run(UTC_MIDNIGHT_MS - 60_000, 8))
        .collect()
}

/// GPU A's holder at scrape `i`: rheinbank's, nobody, isarbank's, an unmapped namespace.
fn holder_a(i: usize) -> &'static str {
    ["risk", "risk", "", "web", "ghost", "ghost", "risk"][i % 7]
}

fn scrape(i: usize) -> Vec<Dev> {
    let dev = |uuid, model, mig, ns| Dev { uuid, model, mig, ns, pod: "p", container: "c", energy_mj: Some(1000) };
    vec![
        dev(GPU_A, "NVIDIA H200", None, holder_a(i)),
        dev(GPU_B, "NVIDIA H200", Some(("1", "3g.71gb")), "risk"),
        dev(GPU_B, "NVIDIA H200", Some(("2", "4g.71gb")), ""),
        // A model with no SKU, held by a mapped tenant: unbillable.
        dev(GPU_C, "NVIDIA A30", None, "risk"),
    ]
}

/// (day, sku, model_name, mig_profile) → [capacity, metered, idle, unmetered, unmapped, unbillable].
type Expected = BTreeMap<(String, Option<String>, Option<String>, Option<String>), [Decimal; 6]>;

/// From the scrapes alone: each observation holds its device until the next one (a gap longer
/// than the bridge is unmetered), seconds split at Berlin's midnight only.
fn expected(times: &[i64]) -> Expected {
    let mut e = Expected::new();
    for (i, w) in times.windows(2).enumerate() {
        for d in scrape(i) {
            let class = match (w[1] - w[0] > BRIDGE_MS, d.ns, d.model) {
                (true, _, _) => 3,
                (_, "", _) => 2,
                (_, "ghost", _) => 4,
                (_, _, "NVIDIA A30") => 5,
                _ => 1,
            };
            let (sku, model) = match d.model {
                "NVIDIA H200" => (Some("nvidia-h200".to_string()), None),
                m => (None, Some(m.to_string())),
            };
            let profile = d.mig.map(|m| m.1.to_string());
            let pieces = [
                (w[0], w[1].min(BERLIN_MIDNIGHT_MS), "2026-10-14"),
                (w[0].max(BERLIN_MIDNIGHT_MS), w[1], "2026-10-15"),
            ];
            for (a, b, day) in pieces.into_iter().filter(|p| p.1 > p.0) {
                let secs = Decimal::new(b - a, 3);
                let cell = e.entry((day.to_string(), sku.clone(), model.clone(), profile.clone())).or_default();
                cell[0] += secs;
                cell[class] += secs;
            }
        }
    }
    e
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a decimal string")).parse().unwrap()
}

fn opt(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// The report's non-zero days in the shape of [`Expected`]; checks each line's in-ledger figure.
fn got(report: &Value, in_ledger_is_metered: bool) -> Expected {
    let mut out = Expected::new();
    for d in report["days"].as_array().unwrap() {
        let names = ["capacity", "metered", "idle", "unmetered", "unmapped", "unbillable"];
        let f = names.map(|n| dec(&d[n]));
        assert_eq!(f[0], f[1..].iter().sum::<Decimal>(), "classes add up to capacity: {d}");
        let in_ledger = if in_ledger_is_metered { f[1] } else { Decimal::ZERO };
        assert_eq!(dec(&d["in_ledger"]), in_ledger, "{d}");
        if f[0].is_zero() {
            continue;
        }
        let key =
            (d["day"].as_str().unwrap().to_string(), opt(&d["sku"]), opt(&d["model_name"]), opt(&d["mig_profile"]));
        assert!(out.insert(key, f).is_none(), "one line per day and key");
    }
    out
}

fn coverage_cli(db: &str, args: &[&str]) -> String {
    let mut all = vec!["coverage"];
    all.extend(args);
    gpuledger(db, &all).unwrap()
}

#[test]
fn coverage_per_sku_and_berlin_day_equals_the_scrapes_in_cli_api_and_page() {
    let _serial = serial();
    let (db, topic) = topic_and_db("coverage");
    load_namespaces(&db, &[("risk", Some("rheinbank")), ("web", Some("isarbank"))]);
    let times = times();
    let replies: Vec<Reply> = times.iter().enumerate().map(|(i, t)| Reply::Body(exposition(&scrape(i), *t))).collect();
    let server = playback(replies);
    let (mut child, log) = spawn_collector(&db, &topic, server.port, "//test/coverage", Some(times.len() + 3));
    let status = child.wait().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap());

    let want = expected(&times);
    assert_eq!(want.len(), 8, "two days of four keys: {want:?}");
    assert!(want.values().all(|f| f[0] > Decimal::ZERO));
    for class in 1..=5 {
        assert!(want.values().any(|f| f[class] > Decimal::ZERO), "class {class} occurs");
    }

    // Before the ingester ran: metered, nothing in the ledger yet.
    let before: Value = serde_json::from_str(&coverage_cli(&db, &["--month", "2026-10", "--format", "json"])).unwrap();
    assert_eq!(got(&before, false), want);

    let messages = topic_messages(&topic).unwrap();
    assert!(messages > 0);
    ingest_until(&db, &topic, &unique("coverage"), &[], messages).unwrap();

    let cli_json = coverage_cli(&db, &["--month", "2026-10", "--format", "json"]);
    let report: Value = serde_json::from_str(&cli_json).unwrap();
    assert_eq!(got(&report, true), want);
    assert_eq!(report["time_zone"], "Europe/Berlin");
    assert_eq!(report["days"].as_array().unwrap().len(), 31 * 4, "every key on every day of October");
    for t in report["totals"].as_array().unwrap() {
        let key = (opt(&t["sku"]), opt(&t["model_name"]), opt(&t["mig_profile"]));
        let capacity: Decimal =
            want.iter().filter(|(k, _)| (k.1.clone(), k.2.clone(), k.3.clone()) == key).map(|(_, f)| f[0]).sum();
        assert_eq!(dec(&t["capacity"]), capacity, "{t}");
    }

    // CSV and the table carry the same figures.
    let csv_text = coverage_cli(&db, &["--from", "2026-10-14", "--to", "2026-10-15", "--format", "csv"]);
    let mut csv_seen = Expected::new();
    for r in csv::Reader::from_reader(csv_text.as_bytes()).records() {
        let r = r.unwrap();
        let o = |i: usize| Some(r[i].to_string()).filter(|s| !s.is_empty());
        let f = [4, 5, 7, 8, 9, 10].map(|i| r[i].parse::<Decimal>().unwrap());
        csv_seen.insert((r[0].to_string(), o(1), o(2), o(3)), f);
    }
    assert_eq!(csv_seen, want);
    let table = coverage_cli(&db, &["--month", "2026-10"]);
    let h200 = want.iter().filter(|(k, _)| k.1.is_some() && k.3.is_none()).map(|(_, f)| f[0]).sum::<Decimal>();
    assert!(
        table.lines().any(|l| l.starts_with("total")
            && l.contains(" nvidia-h200 ")
            && l.contains(&format!(" {} ", h200.normalize()))),
        "{table}"
    );

    // The API: finance gets the same JSON; a tenant is refused; a bad range is a 400.
    let (finance, tenant) = {
        let mut c = connect(&db);
        let mk = |c: &mut postgres::Client, role, t| {
            store::tokens::create_token(c, role, t, "coverage", chrono::Duration::days(1), chrono::Utc::now())
                .unwrap()
                .1
        };
        (mk(&mut c, "finance", None), mk(&mut c, "tenant", Some("rheinbank")))
    };
    let s = serve_api(&db);
    let (status, ctype, body) = http(&s, "GET", "/v1/finance/coverage?month=2026-10", Some(&finance));
    assert_eq!((status, ctype.as_str()), (200, "application/json"), "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), report, "the API answers what the command prints");
    let (status, _, body) = http(&s, "GET", "/v1/finance/coverage?from=2026-10-14&to=2026-10-15", Some(&finance));
    assert_eq!(status, 200, "{body}");
    let two_days: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(got(&two_days, true), want);
    assert_eq!(two_days["totals"], report["totals"]);
    let (status, _, _) = http(&s, "GET", "/v1/finance/coverage?month=2026-10", Some(&tenant));
    assert_eq!(status, 403, "a tenant token reads no coverage");
    for bad in ["month=2026-13", "from=2026-10-02&to=2026-10-01", "month=2026-10&from=2026-10-01&to=2026-10-02", ""] {
        let (status, _, body) = http(&s, "GET", &format!("/v1/finance/coverage?{bad}"), Some(&finance));
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // The finance page shows the totals per SKU, device and class.
    let cookie = sign_in(s.port, &finance);
    let req = format!(
        "GET /ui/finance?period=2026-10 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
        s.port
    );
    let (status, _, page) = raw_http(s.port, req.as_bytes());
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"coverage-totals\""), "{page}");
    assert!(
        page.contains("data-sku=\"nvidia-h200\"")
            && page.contains("MIG 3g.71gb")
            && page.contains("no SKU: NVIDIA A30")
    );
    let h200_hours = api_hours(h200);
    assert!(page.contains(&h200_hours), "{h200_hours} GPU-h of whole H200s on the page");
}

/// GPU-seconds as the page writes GPU-hours: German style, two decimals (half away from zero).
fn api_hours(secs: Decimal) -> String {
    let h =
        (secs / Decimal::from(3600)).round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    format!("{h:.2}").replace('.', ",")
}
