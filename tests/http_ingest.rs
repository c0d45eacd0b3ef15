//! `POST /v1/events` on the real server, Kafka and PostgreSQL: every input the ingester
//! quarantines is refused with its 400 and reason (from the same fixtures and the simulator's
//! poison); a valid batch reaches the ledger through `gpuledger ingest` with exactly the
//! GPU-seconds sent, a retried batch only as duplicates, and only refusals in the access log; the
//! request's own refusals (type, size, scope, role, revoked token, rate) and a Kafka that is down
//! (503, nothing produced).

use chrono::{Duration, TimeZone, Utc};
use domain::simulate::{FleetSpec, Intent, Simulator};
use domain::usage::RejectionCode;
use integration::{
    brokers, connect, fresh_db, gpuledger, ingest_until, raw_http, repo_root, serve_api_with, topic_messages, unique,
    ApiServer,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

const SOURCE: &str = "//fra1/dcgm-exporter/fra1-r00-n000";
const ONE: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// (status, head, body as JSON or Null)
fn post(s: &ApiServer, token: Option<&str>, ctype: Option<&str>, body: &[u8]) -> (u16, String, Value) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let ct = ctype.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    let mut req = format!(
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\n{auth}{ct}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let (status, head, text) = raw_http(s.port, &req);
    (status, head, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn producer(db: &str, source: &str, tenants: &[&str]) -> (uuid::Uuid, String) {
    let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
    store::tokens::create_producer_token(&mut connect(db), source, &tenants, "test", Duration::days(1), Utc::now())
        .unwrap()
}

/// A fresh database, topic and server (`extra` arguments to `gpuledger serve`).
fn setup(name: &str, extra: &[&str]) -> (String, String, ApiServer) {
    let db = fresh_db(name).unwrap();
    let topic = unique(&format!("http_{name}"));
    ingest::ensure_topic(&brokers(), &topic, 4).unwrap();
    let mut args = vec!["--topic", topic.as_str()];
    args.extend_from_slice(extra);
    let s = serve_api_with(&db, &args);
    (db, topic, s)
}

fn reasons(body: &Value) -> Vec<(u64, String)> {
    body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {body}"))
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["reason"].as_str().unwrap().to_string()))
        .collect()
}

fn fixtures(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(repo_root().join("fixtures/usage").join(dir))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_stem().unwrap().to_str().unwrap().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty());
    out
}

/// A valid event of the fixtures' source, for `tenant`, on its own GPU (so none overlaps another).
fn event(tenant: &str, minute: i64, gpu: u128, gpu_seconds: &str) -> Value {
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + Duration::minutes(minute);
    let end = start + Duration::minutes(1);
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "source": SOURCE,
        "type": "de.gpuledger.usage.recorded.v1", "time": at(end), "datacontenttype": "application/json",
        "data": {"tenant_id": tenant, "gpu_sku": "nvidia-h100-sxm", "gpu_id": format!("GPU-{}", uuid::Uuid::from_u128(gpu)),
            "node": "fra1-r00-n000", "project": "p", "interval_start": at(start), "interval_end": at(end),
            "gpu_seconds": gpu_seconds}})
}

#[test]
fn every_input_the_ingester_quarantines_gets_its_400_and_reason() {
    let (db, topic, s) = setup("quarantine", &[]);
    let (_, token) = producer(&db, SOURCE, &["rheinbank"]);
    let valid = std::fs::read(repo_root().join("fixtures/usage/valid/01-rheinbank-h100-full-minute.json")).unwrap();
    let mut checked = 0;
    for (name, bytes) in fixtures("invalid").into_iter().chain(fixtures("rules")) {
        let reason = name.split("--").next().unwrap();
        let (status, head, body) = post(&s, Some(&token), Some(ONE), &bytes);
        assert_eq!(status, 400, "{name}: {head} {body}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
        assert_eq!(reasons(&body), vec![(0, reason.to_string())], "{name}");
        // In a batch, after a valid event: refused whole, with the index of the bad one.
        let mut batch = b"[".to_vec();
        batch.extend_from_slice(&valid);
        batch.extend_from_slice(b",\n");
        batch.extend_from_slice(&bytes);
        batch.extend_from_slice(b"]");
        let (status, _, body) = post(&s, Some(&token), Some(BATCH), &batch);
        assert_eq!((status, reasons(&body)), (400, vec![(1, reason.to_string())]), "{name} in a batch");
        checked += 1;
    }
    // The simulator's poison, which the ingester's quarantine test feeds it: each kind the parser
    // refuses (a key that is not the tenant cannot be sent over HTTP: the server sets the key).
    let sim = Simulator::new(FleetSpec {
        seed: 11,
        gpus: 8,
        tenants: 3,
        start: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
        minutes: 60,
        duplicates_ppm: 0,
        conflicts_ppm: 0,
        overlaps_ppm: 0,
        poison_ppm: 200_000,
        event_ids: domain::simulate::EventIds::V4,
    });
    let mut kinds = BTreeMap::new();
    for m in sim {
        let Intent::Rejected(code) = m.intent else { continue };
        if code == RejectionCode::KeyMismatch || kinds.contains_key(&code) {
            continue;
        }
        let (status, _, body) = post(&s, Some(&token), Some(ONE), &m.payload);
        assert_eq!((status, reasons(&body)), (400, vec![(0, code.as_str().to_string())]), "poison {code}");
        kinds.insert(code, ());
    }
    let poison: Vec<_> =
        domain::simulate::poison_codes().iter().filter(|c| **c != RejectionCode::KeyMismatch).collect();
    assert_eq!(kinds.len(), poison.len(), "every poison kind was sent: {kinds:?}");
    assert!(checked >= 26);
    assert_eq!(topic_messages(&topic).unwrap(), 0, "nothing refused reached Kafka");
}

#[test]
fn a_valid_batch_reaches_the_ledger_with_exactly_the_gpu_seconds_sent() {
    let (db, topic, s) = setup("valid", &[]);
    // Made with the command line, as an operator would.
    let out = gpuledger(
        &db,
        &[
            "tokens",
            "create",
            "--role",
            "producer",
            "--source",
            SOURCE,
            "--tenant",
            "rheinbank",
            "--tenant",
            "falke-drones",
        ],
    )
    .unwrap();
    let token = out.lines().find_map(|l| l.strip_prefix("token:")).unwrap().trim().to_string();
    let tenants = ["rheinbank", "falke-drones"];
    let mut expected: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut events = Vec::new();
    for i in 0..250u32 {
        let tenant = tenants[(i % 2) as usize];
        let secs = format!("{}.{:03}", i % 60, (i * 7) % 1000);
        *expected.entry(tenant.to_string()).or_default() += Decimal::from_str(&secs).unwrap();
        events.push(event(tenant, i64::from(i), u128::from(i) + 1, &secs));
    }
    let batches: Vec<Vec<u8>> = events.chunks(100).map(|c| serde_json::to_vec(c).unwrap()).collect();
    for b in &batches {
        let (status, head, body) = post(&s, Some(&token), Some(BATCH), b);
        assert_eq!(status, 202, "{head} {body}");
        assert_eq!(body["accepted"], serde_json::from_slice::<Vec<Value>>(b).unwrap().len());
    }
    // One event alone, and the first batch again (a producer's retry): duplicates, not usage twice.
    let single = event("rheinbank", 300, 9999, "12.5");
    *expected.get_mut("rheinbank").unwrap() += Decimal::from_str("12.5").unwrap();
    assert_eq!(post(&s, Some(&token), Some(ONE), &serde_json::to_vec(&single).unwrap()).0, 202);
    assert_eq!(post(&s, Some(&token), Some(BATCH), &batches[0]).0, 202);
    assert_eq!(topic_messages(&topic).unwrap(), 351);

    ingest_until(&db, &topic, &unique("g"), &[], 351).unwrap();
    let mut c = connect(&db);
    let got: BTreeMap<String, Decimal> = c
        .query("SELECT tenant_id, sum(gpu_seconds) FROM ledger_events WHERE kind = 'usage.recorded' GROUP BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got, expected, "GPU-seconds per tenant, exactly as sent");
    let row = c
        .query_one(
            "SELECT sum(ledgered)::bigint, sum(duplicates)::bigint, sum(quarantined)::bigint FROM ledger_streams",
            &[],
        )
        .unwrap();
    let counts: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(counts, (251, 100, 0));
    // Accepted posts are not in the access log (their events are the record); refusals are.
    assert_eq!(post(&s, Some(&token), Some("text/plain"), &batches[0]).0, 415);
    let logged: Vec<i16> = c
        .query("SELECT status FROM access_log WHERE path = '/v1/events'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(logged, vec![415]);
}

#[test]
fn the_request_itself_is_refused_for_type_size_scope_role_token_and_rate() {
    let (db, topic, s) = setup("refusals", &["--producer-events-per-second", "1000"]);
    let (_, token) = producer(&db, SOURCE, &["rheinbank"]);
    let one = serde_json::to_vec(&event("rheinbank", 0, 1, "60")).unwrap();
    let status = |r: (u16, String, Value)| r.0;
    for ct in [None, Some("application/json"), Some("text/plain"), Some("application/cloudevents+xml")] {
        assert_eq!(status(post(&s, Some(&token), ct, &one)), 415, "{ct:?}");
    }
    // Larger than the body limit; more events than a batch may hold; not an array.
    let big = vec![b' '; api::BODY_MAX_BYTES + 1];
    assert_eq!(status(post(&s, Some(&token), Some(ONE), &big)), 413);
    let many = format!("[{}]", vec!["{}"; 1001].join(","));
    assert_eq!(status(post(&s, Some(&token), Some(BATCH), many.as_bytes())), 413);
    assert_eq!(status(post(&s, Some(&token), Some(BATCH), &one)), 400);
    assert_eq!(status(post(&s, Some(&token), Some(BATCH), b"[{},]")), 400);

    // Outside the token's scope: 403, with each event's reason; the whole batch is refused.
    let (_, other_tenant) = producer(&db, SOURCE, &["falke-drones"]);
    let (_, other_source) = producer(&db, "//fra1/elsewhere", &["rheinbank"]);
    let (st, _, body) = post(&s, Some(&other_tenant), Some(ONE), &one);
    assert_eq!((st, reasons(&body)), (403, vec![(0, "tenant_not_permitted".into())]));
    let (st, _, body) = post(&s, Some(&other_source), Some(ONE), &one);
    assert_eq!((st, reasons(&body)), (403, vec![(0, "source_not_permitted".into())]));
    let mixed = serde_json::to_vec(&[event("rheinbank", 1, 2, "1"), event("seekr-ai-us", 1, 3, "1")]).unwrap();
    let (st, _, body) = post(&s, Some(&token), Some(BATCH), &mixed);
    assert_eq!((st, reasons(&body)), (403, vec![(1, "tenant_not_permitted".into())]));

    // Other roles cannot post events; a producer token can do nothing else.
    let mut c = connect(&db);
    let (_, finance) =
        store::tokens::create_token(&mut c, "finance", None, "t", Duration::days(1), Utc::now()).unwrap();
    assert_eq!(status(post(&s, Some(&finance), Some(ONE), &one)), 403);
    for path in ["/v1/invoices", "/v1/usage?from=2026-08-01T00:00:00Z&to=2026-08-02T00:00:00Z", "/v1/audit/events"] {
        assert_eq!(integration::http(&s, "GET", path, Some(&token)).0, 403, "{path}");
    }
    // Revoked, unknown, none: 401.
    let (revoked_id, revoked) = producer(&db, SOURCE, &["rheinbank"]);
    gpuledger(&db, &["tokens", "revoke", &revoked_id.to_string()]).unwrap();
    assert_eq!(status(post(&s, Some(&revoked), Some(ONE), &one)), 401);
    // A token the server found valid is believed for 2 seconds (docs/http-ingest.md), no longer.
    let (late_id, late) = producer(&db, SOURCE, &["rheinbank"]);
    assert_eq!(status(post(&s, Some(&late), Some(BATCH), b"[{}]")), 400);
    gpuledger(&db, &["tokens", "revoke", &late_id.to_string()]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(status(post(&s, Some(&late), Some(BATCH), b"[{}]")), 401);
    assert_eq!(status(post(&s, Some("glt_nobody"), Some(ONE), &one)), 401);
    assert_eq!(status(post(&s, None, Some(ONE), &one)), 401);
    // The command line refuses a producer without its scope, and a scope on another role.
    assert!(gpuledger(&db, &["tokens", "create", "--role", "producer", "--tenant", "rheinbank"]).is_err());
    assert!(gpuledger(&db, &["tokens", "create", "--role", "producer", "--source", SOURCE]).is_err());
    assert!(gpuledger(&db, &["tokens", "create", "--role", "finance", "--source", SOURCE]).is_err());

    // The event budget (1000/s, two seconds' worth at once) is counted in events, refused or not.
    let (_, busy) = producer(&db, SOURCE, &["rheinbank"]);
    let thousand = format!("[{}]", vec!["{}"; 1000].join(","));
    assert_eq!(status(post(&s, Some(&busy), Some(BATCH), thousand.as_bytes())), 400);
    assert_eq!(status(post(&s, Some(&busy), Some(BATCH), thousand.as_bytes())), 400);
    let (st, head, _) = post(&s, Some(&busy), Some(BATCH), thousand.as_bytes());
    assert_eq!(st, 429);
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert_eq!(topic_messages(&topic).unwrap(), 0, "nothing refused reached Kafka");
}

#[test]
fn kafka_down_is_503_with_retry_after_and_nothing_is_produced() {
    // Nothing listens on this port: the server's producer cannot reach a broker (the shared
    // broker is never stopped). The topic exists on the real broker, to show it stays empty.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let brokers_arg = format!("127.0.0.1:{closed}");
    let (db, topic, s) = setup("down", &["--brokers", &brokers_arg, "--produce-timeout-secs", "2"]);
    let (_, token) = producer(&db, SOURCE, &["rheinbank"]);
    let batch = serde_json::to_vec(&[event("rheinbank", 0, 1, "60"), event("rheinbank", 0, 2, "30")]).unwrap();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let (status, head, body) = post(&s, Some(&token), Some(BATCH), &batch);
        assert_eq!(status, 503, "{head} {body}");
        assert!(head.to_ascii_lowercase().contains("retry-after: 5"), "{head}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "answered after the produce timeout");
    }
    assert_eq!(topic_messages(&topic).unwrap(), 0);
}

/// The HTTP path judges SKUs with the ledger's catalogue, as the ingester does: a GPU model the
/// catalogue does not list is refused as `unknown_sku`, and accepted once `sku.set` lists it from
/// the event's interval on (a server already running learns it when the reference stream moves).
#[test]
fn an_sku_is_refused_until_the_catalogue_lists_it_as_the_ingester_does() {
    let (db, topic, s) = setup("catalogue", &[]);
    let (_, token) = producer(&db, SOURCE, &["rheinbank"]);
    let mut e = event("rheinbank", 0, 1, "60");
    e["data"]["gpu_sku"] = json!("nvidia-b300");
    let body = serde_json::to_vec(&e).unwrap();
    let (status, _, refused) = post(&s, Some(&token), Some(ONE), &body);
    assert_eq!((status, reasons(&refused)), (400, vec![(0, "unknown_sku".to_string())]));

    let sku = json!({ "kind": "sku.set", "data": { "sku": "nvidia-b300",
        "effective_from": "2026-10-01T00:00:00Z", "display_name": "NVIDIA B300", "model_names": ["NVIDIA B300"] } });
    let file = std::env::temp_dir().join(unique("b300")).with_extension("json");
    std::fs::write(&file, serde_json::to_vec(&sku).unwrap()).unwrap();
    gpuledger(&db, &["reference", "load", file.to_str().unwrap()]).unwrap();
    let (status, head, accepted) = post(&s, Some(&token), Some(ONE), &body);
    assert_eq!(status, 202, "{head} {accepted}");

    let mut before = e.clone();
    before["id"] = json!(uuid::Uuid::new_v4().to_string());
    before["data"]["interval_start"] = json!("2026-09-30T23:59:00Z");
    before["data"]["interval_end"] = json!("2026-10-01T00:00:00Z");
    before["time"] = json!("2026-10-01T00:00:00Z");
    let (status, _, refused) = post(&s, Some(&token), Some(ONE), &serde_json::to_vec(&before).unwrap());
    assert_eq!((status, reasons(&refused)), (400, vec![(0, "unknown_sku".to_string())]), "before the entry's date");
    assert_eq!(topic_messages(&topic).unwrap(), 1, "only the accepted event reached Kafka");
}
