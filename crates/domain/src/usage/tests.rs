//! The validator's rules, example by example and as properties.

use super::canonical::{json_str, write_instant};
use super::parse::{parse_envelope, parse_general, Key};
use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::json;

const RHEINBANK: Key<'static> = Key::Message(Some(b"rheinbank"));

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn good() -> Value {
    json!({
        "specversion": "1.0",
        "id": "7d8f2a4c-1b3e-4f5a-9c6d-0e1f2a3b4c5d",
        "source": "//fra1/dcgm-exporter/fra1-r01-n001",
        "type": EVENT_TYPE,
        "time": "2026-10-01T00:01:00Z",
        "datacontenttype": "application/json",
        "data": {
            "tenant_id": "rheinbank",
            "gpu_sku": "nvidia-h100-sxm",
            "gpu_id": "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            "node": "fra1-r01-n001",
            "project": "risk-models",
            "job": "train-42",
            "interval_start": "2026-10-01T00:00:00Z",
            "interval_end": "2026-10-01T00:01:00Z",
            "gpu_seconds": "60"
        }
    })
}

/// One helper for every case: mutate the good event, expect a code (or acceptance).
fn check(mutate: impl FnOnce(&mut Value), expect: Option<RejectionCode>) {
    let mut v = good();
    mutate(&mut v);
    let bytes = serde_json::to_vec(&v).unwrap();
    let got = parse_usage_message(Some(b"rheinbank"), &bytes, now());
    // The HTTP ingest's reading (keyed by the event's own tenant) comes to the same verdict as a
    // message keyed so, whatever the event holds.
    let own = v["data"]["tenant_id"].as_str().map(str::as_bytes);
    let code = |r: Result<UsageRecorded, Rejection>| r.map_err(|r| r.code);
    assert_eq!(code(parse_usage_event(&bytes, now())), code(parse_usage_message(own, &bytes, now())), "{v}");
    match (got, expect) {
        (Ok(_), None) => {}
        (Err(r), Some(code)) => assert_eq!(r.code, code, "{}", r.message),
        (got, expect) => panic!("expected {expect:?}, got {got:?}"),
    }
}

#[test]
fn the_good_event_is_accepted_and_canonical() {
    let bytes = serde_json::to_vec(&good()).unwrap();
    let e = parse_usage_message(Some(b"rheinbank"), &bytes, now()).unwrap();
    assert_eq!(e.gpu_seconds.to_string(), "60");
    let again = serde_json::to_vec(&e.to_cloudevent()).unwrap();
    let e2 = parse_usage_message(Some(b"rheinbank"), &again, now()).unwrap();
    assert_eq!(e, e2);
    assert_eq!(e.fingerprint(), e2.fingerprint());
    assert_eq!(UsageRecorded::from_payload(e.event_id, &e.payload_json()).unwrap(), e);
}

#[test]
fn rules() {
    use RejectionCode::*;
    check(|v| v["data"]["gpu_seconds"] = json!("59.999999"), None);
    check(|v| v["data"]["gpu_seconds"] = json!("0"), None);
    check(|v| v["data"]["labels"] = json!({"team": "quant"}), None);
    check(|v| v["data"]["labels"] = json!(null), Some(WrongShape));
    check(|v| v["data"]["job"] = json!(null), Some(WrongShape));
    check(|v| v["time"] = json!(null), Some(WrongShape));
    check(|v| v["data"]["gpu_seconds"] = json!("0000000000000000000060"), Some(GpuSecondsNotDecimal));
    check(|v| v["data"]["gpu_seconds"] = json!(60), Some(WrongShape));
    check(|v| v["data"]["gpu_seconds"] = json!("NaN"), Some(GpuSecondsNotDecimal));
    check(|v| v["data"]["gpu_seconds"] = json!("1e2"), Some(GpuSecondsNotDecimal));
    check(|v| v["data"]["gpu_seconds"] = json!("-1"), Some(GpuSecondsNegative));
    check(|v| v["data"]["gpu_seconds"] = json!("1.0000001"), Some(GpuSecondsOutOfRange));
    check(|v| v["data"]["gpu_seconds"] = json!("60.000001"), Some(GpuSecondsExceedInterval));
    check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:00:00Z"), Some(EndBeforeStart));
    check(|v| v["data"]["interval_end"] = json!("2026-09-30T23:59:00Z"), Some(EndBeforeStart));
    check(|v| v["data"]["interval_end"] = json!("2026-10-01T01:00:01Z"), Some(IntervalTooLong));
    check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:01:00+01:00"), Some(InvalidTimestamp));
    check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:01:00.0000001Z"), Some(InvalidTimestamp));
    // Leap seconds: chrono accepts second 60, PostgreSQL would store the next minute.
    check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:00:60.5Z"), Some(InvalidTimestamp));
    check(|v| v["data"]["interval_start"] = json!("2026-09-30T23:59:60Z"), Some(InvalidTimestamp));
    check(
        |v| {
            v["data"]["interval_start"] = json!("2026-11-25T12:10:00Z");
            v["data"]["interval_end"] = json!("2026-11-25T12:11:00Z");
        },
        Some(FutureTimestamp),
    );
    // Any well-formed SKU id is read; whether the catalogue lists it is the ingester's decision.
    check(|v| v["data"]["gpu_sku"] = json!("nvidia-rtx-9090"), None);
    check(|v| v["data"]["gpu_sku"] = json!("NVIDIA-RTX-9090"), Some(UnknownSku));
    check(|v| v["data"]["gpu_sku"] = json!("x"), Some(UnknownSku));
    check(|v| v["data"]["gpu_sku"] = json!("-nvidia"), Some(UnknownSku));
    check(|v| v["data"]["gpu_id"] = json!("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), Some(InvalidField));
    check(|v| v["data"]["node"] = json!("n".repeat(64)), Some(OversizeField));
    check(|v| v["data"]["node"] = json!("a\u{0}b"), Some(NulCharacter));
    check(|v| v["data"]["tenant_id"] = json!("someone"), Some(KeyMismatch));
    check(|v| v["data"]["tenant_id"] = json!("Rhein Bank"), Some(InvalidField));
    check(|v| v["data"]["extra"] = json!(1), Some(UnknownField));
    check(|v| v["data"].as_object_mut().unwrap().clear(), Some(MissingField));
    check(|v| v["id"] = json!("nope"), Some(InvalidEventId));
    check(|v| v["specversion"] = json!("0.3"), Some(UnsupportedSpecversion));
    check(|v| v["type"] = json!("other"), Some(UnknownEventType));
    check(|v| v["data"] = json!([]), Some(WrongShape));
    check(|v| *v = json!("just a string"), Some(WrongShape));
    check(
        |v| v["data"]["labels"] = json!((0..9).map(|i| (format!("k{i}"), json!("v"))).collect::<Map<_, _>>()),
        Some(OversizeField),
    );
}

#[test]
fn the_fast_path_reads_a_plain_event_and_steps_aside_for_odd_ones() {
    let fast =
        |text: &str| FastObject::parse(text).map(|env| parse_envelope(RHEINBANK, &env, now(), &mut (None, None)));
    let text = serde_json::to_string(&good()).unwrap();
    assert!(matches!(fast(&text), Some(Ok(_))), "a plain event takes the fast path");
    let spaced = serde_json::to_string_pretty(&good()).unwrap();
    assert_eq!(fast(&spaced).unwrap().unwrap(), fast(&text).unwrap().unwrap(), "blanks are read");
    let number = text.replace("\"60\"", "60");
    assert!(fast(&number).is_none(), "a number is not read by the fast path");
    let twice = text.replacen('{', "{\"type\":\"x\",", 1);
    assert!(fast(&twice).is_none(), "a name that comes twice is not read by the fast path");
    let labels = text.replacen("\"data\":{", "\"data\":{\"labels\":{\"a\":\"1\",\"a\":\"2\"},", 1);
    assert!(fast(&labels).is_none(), "nor among the labels");
    assert!(fast(&format!("{text} x")).is_none(), "nor anything after the object");
    assert!(fast(&text.replacen('}', ",}", 1)).is_none(), "nor a trailing comma");
}

/// `v` as JSON text, with the member at `target` (a path of names) written twice: first as
/// `first`, then with its own value, so that a last-value-wins reader would see a valid event.
fn with_member_twice(v: &Value, at: &[String], target: &[String], first: &Value, out: &mut String) {
    let Value::Object(o) = v else {
        out.push_str(&serde_json::to_string(v).unwrap());
        return;
    };
    out.push('{');
    for (i, (k, val)) in o.iter().enumerate() {
        let mut here = at.to_vec();
        here.push(k.clone());
        if i > 0 {
            out.push(',');
        }
        if here == target {
            out.push_str(&format!("{}:{},", serde_json::to_string(k).unwrap(), serde_json::to_string(first).unwrap()));
        }
        out.push_str(&serde_json::to_string(k).unwrap());
        out.push(':');
        with_member_twice(val, &here, target, first, out);
    }
    out.push('}');
}

fn member_paths(v: &Value, at: &[String], out: &mut Vec<Vec<String>>) {
    if let Value::Object(o) = v {
        for (k, val) in o {
            let mut here = at.to_vec();
            here.push(k.clone());
            out.push(here.clone());
            member_paths(val, &here, out);
        }
    }
}

/// Every member of an event, at every depth, written twice (with the same value, with another
/// valid one, with a bad one) is refused as `duplicate_member` by both paths, whichever value
/// comes last; the same text with each member once is accepted.
#[test]
fn a_member_named_twice_is_refused_at_every_depth() {
    let mut v = good();
    v["data"]["labels"] = json!({"team": "quant", "cost-centre": "4711"});
    let mut paths = Vec::new();
    member_paths(&v, &[], &mut paths);
    assert!(paths.len() > 15, "{paths:?}");
    let mut once = String::new();
    with_member_twice(&v, &[], &[], &json!(null), &mut once);
    assert!(parse_usage_message(Some(b"rheinbank"), once.as_bytes(), now()).is_ok(), "{once}");
    for path in &paths {
        let value = path.iter().fold(&v, |v, k| &v[k.as_str()]).clone();
        for first in [value, json!("20"), json!({"x": "y"}), json!(7)] {
            let mut text = String::new();
            with_member_twice(&v, &[], path, &first, &mut text);
            for r in [
                parse_usage_message(Some(b"rheinbank"), text.as_bytes(), now()),
                parse_general(RHEINBANK, &text, now()),
            ] {
                let r = r.expect_err(&text);
                assert_eq!(r.code, RejectionCode::DuplicateMember, "{text}: {}", r.message);
                assert!(r.message.contains(&format!("{:?}", path.last().unwrap())), "{}", r.message);
            }
        }
    }
}

/// The reason of a good event with this interval and these GPU-seconds.
fn reason(start: &str, end: &str, seconds: &str) -> String {
    let mut v = good();
    v["data"]["interval_start"] = json!(start);
    v["data"]["interval_end"] = json!(end);
    v["data"]["gpu_seconds"] = json!(seconds);
    parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&v).unwrap(), now()).unwrap_err().message
}

/// Reasons print lengths and amounts exactly, with their fraction and without padding.
#[test]
fn reasons_print_lengths_with_their_fraction() {
    let t0 = "2026-10-01T00:00:00Z";
    assert_eq!(reason(t0, "2026-10-01T01:00:00.5Z", "1"), "interval of 3600.5s is longer than 3600s");
    assert_eq!(reason(t0, "2026-10-01T01:00:00.000001Z", "1"), "interval of 3600.000001s is longer than 3600s");
    assert_eq!(reason(t0, "2026-10-01T02:00:00Z", "1"), "interval of 7200s is longer than 3600s");
    assert_eq!(reason(t0, "2026-10-01T00:01:00.25Z", "60.5"), "60.5 GPU-seconds on one GPU in an interval of 60.25s");
    assert_eq!(
        reason(t0, "2026-10-01T00:01:00Z", "60.000001"),
        "60.000001 GPU-seconds on one GPU in an interval of 60s"
    );
}

proptest! {
    /// Every length and amount a reason prints reads back as exactly the value refused.
    #[test]
    fn a_printed_length_is_the_exact_length(over in 1i64..3_600_000_000, used in 1i64..1_000_000) {
        let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        let text = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let end = start + Duration::microseconds(3_600_000_000 + over);
        let m = reason(&text(start), &text(end), "1");
        let printed = m.strip_prefix("interval of ").and_then(|m| m.strip_suffix("s is longer than 3600s")).unwrap();
        prop_assert_eq!(printed.parse::<Decimal>().unwrap(), Decimal::new(3_600_000_000 + over, 6));
        prop_assert_eq!(printed.to_string(), Decimal::new(3_600_000_000 + over, 6).normalize().to_string());
        // GPU-seconds above a shorter interval: both figures exact.
        let end = start + Duration::microseconds(used);
        let seconds = Decimal::new(used + 1, 6).normalize();
        let m = reason(&text(start), &text(end), &seconds.to_string());
        let want = format!("{seconds} GPU-seconds on one GPU in an interval of {}s", Decimal::new(used, 6).normalize());
        prop_assert_eq!(m, want);
    }
}

#[test]
fn bytes_that_are_not_json() {
    let r = |b: &[u8]| parse_usage_message(Some(b"rheinbank"), b, now()).unwrap_err().code;
    assert_eq!(r(b"\xff\xfe{}"), RejectionCode::InvalidUtf8);
    assert_eq!(r(b"{\"specversion\":"), RejectionCode::MalformedJson);
    assert_eq!(r(b""), RejectionCode::MalformedJson);
    assert_eq!(r(&vec![b' '; MESSAGE_BYTES_MAX + 1]), RejectionCode::OversizeMessage);
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9./:-]{1,20}",
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![Just('"'), Just('\\'), Just('/'), Just('\u{7f}'), Just('é'), (0u8..0x20).prop_map(char::from)],
            0..12
        )
        .prop_map(|c| c.into_iter().collect()),
    ]
}

prop_compose! {
    fn any_event()(
        id in any::<u128>(), gpu in any::<u128>(), start in 0i64..4_000_000_000, micros in 0i64..3_600_000_000,
        seconds in 0i64..3_600_000_000, scale in 0u32..=6,
        source in any_text(), tenant in any_text(), sku in any_text(), node in any_text(), project in any_text(),
        job in proptest::option::of(any_text()),
        labels in proptest::collection::btree_map(any_text(), any_text(), 0..4),
        mig in proptest::option::of((0u8..100, any_text())),
        energy in proptest::option::of((any::<i64>(), 0u32..=6)),
    ) -> UsageRecorded {
        let start = DateTime::<Utc>::from_timestamp(start, 0).unwrap() + Duration::microseconds(micros % 1_000_000);
        UsageRecorded {
            event_id: Uuid::from_u128(id),
            source,
            tenant_id: tenant,
            gpu_sku: sku,
            gpu_id: Uuid::from_u128(gpu),
            node,
            project,
            job,
            labels,
            interval_start: start,
            interval_end: start + Duration::microseconds(micros.max(1)),
            gpu_seconds: GpuSeconds::new(Decimal::new(seconds, scale)).unwrap(),
            mig: mig.map(|(instance, profile)| MigSlice { instance, profile }),
            energy_wh: energy.and_then(|(units, scale)| crate::energy::WattHours::new(Decimal::new(units, scale))),
        }
    }
}

/// Mutations a producer might make of a good event: each field replaced by an odd value of
/// any JSON type, extension attributes, escapes, repeated keys.
fn mutated_message() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("specversion"),
        Just("id"),
        Just("source"),
        Just("type"),
        Just("time"),
        Just("subject"),
        Just("datacontenttype"),
        Just("data"),
        Just("data.tenant_id"),
        Just("data.gpu_sku"),
        Just("data.gpu_id"),
        Just("data.node"),
        Just("data.project"),
        Just("data.job"),
        Just("data.labels"),
        Just("data.interval_start"),
        Just("data.interval_end"),
        Just("data.gpu_seconds"),
        Just("data.mig_instance"),
        Just("data.mig_profile"),
        Just("data.energy_wh"),
        Just("data.extra"),
        Just("ext"),
    ];
    let value = prop_oneof![
        Just(json!(null)),
        Just(json!(1)),
        Just(json!(1.5)),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({})),
        Just(json!({"team": "quant"})),
        Just(json!({"team": 1})),
        Just(json!("60")),
        Just(json!("59.5")),
        Just(json!("2026-10-01T00:00:30Z")),
        Just(json!("GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")),
        Just(json!("rheinbank")),
        Just(json!("nvidia-h100-sxm")),
        Just(json!("3")),
        Just(json!("1g.18gb")),
        Just(json!("12.25")),
        Just(json!("a\"b\\c")),
        Just(json!("é/ü")),
        any_text().prop_map(Value::String),
    ];
    (proptest::collection::vec((field, value), 0..4), any::<bool>()).prop_map(|(changes, repeat)| {
        let mut v = good();
        for (f, val) in changes {
            match f.split_once('.') {
                Some((_, inner)) => {
                    if let Some(o) = v["data"].as_object_mut() {
                        o.insert(inner.to_string(), val);
                    }
                }
                None => {
                    v[f] = val;
                }
            }
        }
        let mut text = serde_json::to_string(&v).unwrap();
        if repeat {
            // The same key twice: refused by both paths (I-JSON).
            text = text.replacen("{\"data\":", "{\"specversion\":\"0.9\",\"data\":", 1);
        }
        text
    })
}

proptest! {
    /// The canonical bytes' instants, written in place, are exactly `format_instant`'s.
    #[test]
    fn instants_are_written_as_format_instant_writes_them(
        secs in -62_135_596_800i64..400_000_000_000,
        nanos in prop_oneof![
            Just(0u32),
            (0u32..1000).prop_map(|m| m * 1_000_000),
            (0u32..1_000_000).prop_map(|u| u * 1000),
            0u32..2_000_000_000,
        ],
    ) {
        // Second 60 (nanos of a billion or more) exists only where a minute ends.
        let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) else { return Ok(()) };
        let mut out = Vec::new();
        write_instant(&mut out, t);
        let mut expected = Vec::new();
        json_str(&mut expected, &format_instant(t));
        prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap());
    }

    #[test]
    fn canonical_bytes_are_serde_jsons(e in any_event()) {
        prop_assert_eq!(e.payload_bytes(), serde_json::to_vec(&e.payload_json()).unwrap());
    }

    /// The fast path and the general path agree on every message: same event, or (the fast
    /// path stepping aside) the same rejection.
    #[test]
    fn the_fast_path_agrees_with_the_general_path(text in mutated_message()) {
        let fast = parse_usage_message(Some(b"rheinbank"), text.as_bytes(), now());
        let general = parse_general(RHEINBANK, &text, now());
        prop_assert_eq!(fast, general);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_usage_message(Some(b"rheinbank"), &bytes, now());
    }

    #[test]
    fn gpu_seconds_within_the_interval_are_accepted_exactly(
        len_s in 1i64..=3600, units in 0u64..=1_000_000u64, start_min in 0i64..40_000,
    ) {
        let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + Duration::minutes(start_min);
        let end = start + Duration::seconds(len_s);
        let seconds = (Decimal::from(len_s) * Decimal::new(units as i64, 6)).round_dp(6);
        let mut v = good();
        v["data"]["interval_start"] = json!(format_instant(start));
        v["data"]["interval_end"] = json!(format_instant(end));
        v["data"]["gpu_seconds"] = json!(seconds.to_string());
        let e = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&v).unwrap(), now()).unwrap();
        prop_assert_eq!(e.gpu_seconds.value(), seconds);
        let over = Decimal::from(len_s) + Decimal::new(1, 6);
        v["data"]["gpu_seconds"] = json!(over.to_string());
        let r = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&v).unwrap(), now()).unwrap_err();
        prop_assert_eq!(r.code, RejectionCode::GpuSecondsExceedInterval);
    }
}

/// The bytes under the hash chain of an event without the optional members are exactly those
/// written before the members existed (sorted keys, no blanks; the fingerprint is
/// sha256("de.gpuledger.usage.recorded.v1" ‖ 0 ‖ bytes), computed apart with Python's json and
/// hashlib), so every ledger written before verifies unchanged.
#[test]
fn an_event_without_mig_or_energy_keeps_its_canonical_bytes_and_fingerprint() {
    let e = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&good()).unwrap(), now()).unwrap();
    assert_eq!((e.mig.clone(), e.energy_wh), (None, None));
    let expected = r#"{"data":{"gpu_id":"GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","gpu_seconds":"60","gpu_sku":"nvidia-h100-sxm","interval_end":"2026-10-01T00:01:00Z","interval_start":"2026-10-01T00:00:00Z","job":"train-42","node":"fra1-r01-n001","project":"risk-models","tenant_id":"rheinbank"},"source":"//fra1/dcgm-exporter/fra1-r01-n001"}"#;
    assert_eq!(String::from_utf8(e.payload_bytes()).unwrap(), expected);
    let hex: String = e.fingerprint().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "c7cbc0adca6e962293d3e9a8c44edd3f6fadc3e8492ef2c26fb233e2fd3a01f0");
}

#[test]
fn mig_and_energy_are_read_and_written_in_key_order() {
    let mut v = good();
    v["data"]["mig_instance"] = json!("03");
    v["data"]["mig_profile"] = json!("1g.18gb");
    v["data"]["energy_wh"] = json!("12.500");
    let e = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&v).unwrap(), now()).unwrap();
    assert_eq!(e.mig, Some(MigSlice { instance: 3, profile: "1g.18gb".into() }));
    assert_eq!(e.slot(), Some(3));
    let expected = r#"{"data":{"energy_wh":"12.5","gpu_id":"GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0","gpu_seconds":"60","gpu_sku":"nvidia-h100-sxm","interval_end":"2026-10-01T00:01:00Z","interval_start":"2026-10-01T00:00:00Z","job":"train-42","mig_instance":"3","mig_profile":"1g.18gb","node":"fra1-r01-n001","project":"risk-models","tenant_id":"rheinbank"},"source":"//fra1/dcgm-exporter/fra1-r01-n001"}"#;
    assert_eq!(String::from_utf8(e.payload_bytes()).unwrap(), expected);
    let again = UsageRecorded::from_payload(e.event_id, &e.payload_json()).unwrap();
    assert_eq!(again, e);
}

#[test]
fn mig_and_energy_rules() {
    use RejectionCode::*;
    let mig = |i: Value, p: Value| {
        move |v: &mut Value| {
            v["data"]["mig_instance"] = i;
            v["data"]["mig_profile"] = p;
        }
    };
    check(mig(json!("0"), json!("7g.141gb")), None);
    check(mig(json!("99"), json!("1g.10gb+me")), None);
    check(mig(json!("100"), json!("1g.18gb")), Some(InvalidMig));
    check(mig(json!("-1"), json!("1g.18gb")), Some(InvalidMig));
    check(mig(json!("1"), json!("1g.18GB")), Some(InvalidMig));
    check(mig(json!("1"), json!("")), Some(InvalidMig));
    check(mig(json!(1), json!("1g.18gb")), Some(WrongShape));
    check(mig(json!("1"), json!(null)), Some(WrongShape));
    check(|v| v["data"]["mig_instance"] = json!("1"), Some(InvalidMig));
    check(|v| v["data"]["mig_profile"] = json!("1g.18gb"), Some(InvalidMig));
    let energy = |x: Value| move |v: &mut Value| v["data"]["energy_wh"] = x;
    check(energy(json!("0")), None);
    check(energy(json!("0.000001")), None);
    check(energy(json!("99999999999999999999.999999")), None);
    check(energy(json!("0.0000001")), Some(InvalidEnergy));
    check(energy(json!("-1")), Some(InvalidEnergy));
    check(energy(json!("1e3")), Some(InvalidEnergy));
    check(energy(json!("")), Some(InvalidEnergy));
    check(energy(json!(1.5)), Some(WrongShape));
}
