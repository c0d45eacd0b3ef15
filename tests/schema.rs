//! The JSON Schema in schemas/ and the Rust validator agree: every fixture and every generated
//! event validates against the schema, every schema-invalid fixture is refused by the Rust code
//! with the reason in its file name, and the rules the schema cannot state are refused by Rust.

use chrono::{TimeZone, Utc};
use domain::simulate::{FleetSpec, Intent, Simulator};
use domain::usage::parse_usage_message;
use integration::repo_root;
use serde_json::{json, Value};
use std::path::Path;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("schemas/usage-recorded.v1.schema.json")).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// The fixtures of a directory: name, value, and the file's own bytes (which the Rust code reads:
/// a value read back by serde_json has lost any repeated member name).
fn fixtures(dir: &str) -> Vec<(String, Value, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("fixtures/usage").join(dir)).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        let bytes = std::fs::read(&path).expect("read");
        out.push((name, serde_json::from_slice(&bytes).expect("fixture is JSON"), bytes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no fixtures in {dir}");
    out
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
}

fn key_of(v: &Value) -> Option<Vec<u8>> {
    v["data"]["tenant_id"].as_str().map(|s| s.as_bytes().to_vec()).or(Some(b"rheinbank".to_vec()))
}

#[test]
fn valid_fixtures_pass_schema_and_rust_and_round_trip() {
    let v = schema();
    for (name, event, _) in fixtures("valid") {
        let errors: Vec<String> = v.iter_errors(&event).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        let bytes = serde_json::to_vec(&event).unwrap();
        let parsed =
            parse_usage_message(key_of(&event).as_deref(), &bytes, now()).unwrap_or_else(|r| panic!("{name}: {r}"));
        // What Rust writes back is valid too, and means the same.
        let again = parsed.to_cloudevent();
        assert!(v.is_valid(&again), "{name}: re-encoded event invalid");
        let reparsed =
            parse_usage_message(key_of(&again).as_deref(), &serde_json::to_vec(&again).unwrap(), now()).unwrap();
        assert_eq!(parsed, reparsed, "{name}");
    }
}

#[test]
fn invalid_fixtures_fail_schema_and_rust_with_their_reason() {
    let v = schema();
    for (name, event, bytes) in fixtures("invalid") {
        let reason = name.split("--").next().unwrap();
        assert!(!v.is_valid(&event), "{name}: the schema accepts it");
        let r = parse_usage_message(Some(b"rheinbank"), &bytes, now()).unwrap_err();
        assert_eq!(r.code.as_str(), reason, "{name}: {}", r.message);
    }
}

#[test]
fn rules_beyond_the_schema_are_enforced_by_rust() {
    let v = schema();
    // A repeated member name (`duplicate_member--*`) is among them: JSON Schema validates the
    // data model, in which an object has each name once, so the schema sees the last value only.
    for (name, event, bytes) in fixtures("rules") {
        let reason = name.split("--").next().unwrap();
        assert!(v.is_valid(&event), "{name}: meant to be schema-valid");
        let r = parse_usage_message(Some(b"rheinbank"), &bytes, now()).unwrap_err();
        assert_eq!(r.code.as_str(), reason, "{name}: {}", r.message);
    }
}

/// Every generated event the Rust validator accepts is schema-valid, and every generated poison
/// message that is JSON and refused by the schema is refused by Rust.
#[test]
fn generated_events_agree_with_the_schema() {
    let v = schema();
    let sim = Simulator::new(FleetSpec {
        seed: 3,
        gpus: 40,
        tenants: 6,
        start: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
        minutes: 120,
        duplicates_ppm: 10_000,
        conflicts_ppm: 10_000,
        overlaps_ppm: 10_000,
        poison_ppm: 30_000,
        event_ids: domain::simulate::EventIds::V4,
    });
    let mut checked = 0;
    for m in sim {
        let rust = parse_usage_message(m.key.as_deref(), &m.payload, now());
        let json: Option<Value> = serde_json::from_slice(&m.payload).ok();
        match (&rust, &json) {
            (Ok(_), Some(j)) => {
                let errors: Vec<String> = v.iter_errors(j).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{errors:?}");
                checked += 1;
            }
            (Ok(_), None) => panic!("rust accepted non-JSON"),
            (Err(_), Some(j)) if !v.is_valid(j) => {}
            (Err(_), _) => {}
        }
        if m.intent == Intent::Good {
            assert!(rust.is_ok());
        }
    }
    assert!(checked > 4000, "checked {checked}");
}

#[test]
fn fixture_tree_exists() {
    assert!(Path::new(&repo_root().join("fixtures/usage/valid")).is_dir());
}

/// The schema, with `format` asserted (JSON Schema 2020-12 only annotates it by default): the
/// calendar (no 30 February) is stated there.
fn schema_with_formats() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("schemas/usage-recorded.v1.schema.json")).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options().should_validate_formats(true).build(&schema).expect("schema compiles")
}

/// A fixture valid by both, with an interval short enough and long enough for the cases below.
fn base() -> Value {
    serde_json::from_slice(
        &std::fs::read(repo_root().join("fixtures/usage/valid/01-rheinbank-h100-full-minute.json")).unwrap(),
    )
    .unwrap()
}

/// Sets the member at a dotted path (`data.labels.team`), or removes it (`None`).
fn set(v: &mut Value, path: &str, to: Option<Value>) {
    let (parents, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
    let mut at = v;
    for p in parents.split('.').filter(|p| !p.is_empty()) {
        at = &mut at[p];
    }
    if at.is_null() {
        *at = json!({});
    }
    let o = at.as_object_mut().expect("an object");
    match to {
        Some(x) => o.insert(last.to_string(), x),
        None => o.remove(last),
    };
}

/// The Rust verdict on an event, with the message key it names (the key rule is not the schema's).
fn rust_accepts(v: &Value) -> Result<(), domain::usage::Rejection> {
    let key = v["data"]["tenant_id"].as_str().unwrap_or("rheinbank").as_bytes().to_vec();
    parse_usage_message(Some(&key), &serde_json::to_vec(v).unwrap(), Utc.with_ymd_and_hms(2101, 1, 1, 0, 0, 0).unwrap())
        .map(|_| ())
}

/// Every rule the schema states, at its boundary: one value each side, accepted or refused
/// alike by the schema and by the ingester. (The ingester's own rules — interval, key, size, NUL,
/// repeated names — are kept satisfied here; `rules_beyond_the_schema_are_enforced_by_rust` has
/// those.)
#[test]
fn every_rule_the_schema_states_is_held_by_the_ingester_alike() {
    let v = schema_with_formats();
    let s = |x: &str| Some(json!(x));
    let n = |c: char, k: usize| Some(json!(c.to_string().repeat(k)));
    let labels = |k: usize| Some(Value::Object((0..k).map(|i| (format!("k{i}"), json!("v"))).collect()));
    // (path, value or None to remove, whether both accept)
    let mut cases: Vec<(&str, Option<Value>, bool)> = vec![
        // Envelope: required members, consts, the id's form, lengths and control characters.
        ("specversion", None, false),
        ("specversion", s("1.1"), false),
        ("specversion", Some(json!(1.0)), false),
        ("id", None, false),
        ("id", s("0B9E2F4A-6C1D-4E8F-A2B3-C4D5E6F70810"), true),
        ("id", s("0b9e2f4a6c1d4e8fa2b3c4d5e6f70810"), false),
        ("id", s("{0b9e2f4a-6c1d-4e8f-a2b3-c4d5e6f70810}"), false),
        ("id", s("urn:uuid:0b9e2f4a-6c1d-4e8f-a2b3-c4d5e6f70810"), false),
        ("id", s("0b9e2f4a6-c1d-4e8f-a2b3-c4d5e6f70810"), false),
        ("id", s("0b9e2f4a-6c1d-4e8f-a2b3-c4d5e6f7081g"), false),
        ("source", None, false),
        ("source", s(""), false),
        ("source", n('s', 256), true),
        ("source", n('s', 257), false),
        ("source", n('ä', 256), true),
        ("source", n('ä', 257), false),
        ("source", s("a\u{1}b"), false),
        ("source", s("a\u{7f}b"), false),
        ("source", s("a\u{85}b"), false),
        ("source", s("a\u{a0}b"), true),
        ("source", Some(json!(1)), false),
        ("type", None, false),
        ("type", s("de.gpuledger.usage.recorded.v2"), false),
        ("datacontenttype", None, true),
        ("datacontenttype", s("text/plain"), false),
        ("datacontenttype", Some(Value::Null), false),
        ("traceparent", s("00-extension-attribute"), true),
        ("data", None, false),
        ("data", Some(Value::Null), false),
        ("data", Some(json!([])), false),
    ];
    for name in ["subject", "time", "dataschema"] {
        cases.extend([
            (name, None, true),
            (name, n('x', 256), true),
            (name, n('x', 257), false),
            (name, n('ß', 256), true),
            (name, n('ß', 257), false),
            (name, Some(json!(7)), false),
            (name, Some(Value::Null), false),
        ]);
    }
    // data: required and optional members, and no others.
    for name in [
        "data.tenant_id",
        "data.gpu_sku",
        "data.gpu_id",
        "data.node",
        "data.project",
        "data.interval_start",
        "data.interval_end",
        "data.gpu_seconds",
    ] {
        cases.push((name, None, false));
    }
    cases.extend([("data.job", None, true), ("data.labels", None, true), ("data.colour", s("red"), false)]);
    let mut data: Vec<(&str, Option<Value>, bool)> = vec![
        ("data.tenant_id", s("ab"), true),
        ("data.tenant_id", s("a"), false),
        ("data.tenant_id", n('t', 63), true),
        ("data.tenant_id", n('t', 64), false),
        ("data.tenant_id", s("0-a"), true),
        ("data.tenant_id", s("-ab"), false),
        ("data.tenant_id", s("aB"), false),
        ("data.tenant_id", s("a_b"), false),
        ("data.tenant_id", s("ab\n"), false),
        ("data.tenant_id", s("äb"), false),
        // Well-formed: the catalogue (reference data) is the ingester's rule beyond the schema.
        ("data.gpu_sku", s("nvidia-rtx-9090"), true),
        ("data.gpu_sku", s("NVIDIA-B200"), false),
        ("data.gpu_sku", s("x"), false),
        ("data.gpu_sku", s("-ab"), false),
        ("data.gpu_sku", n('g', 64), true),
        ("data.gpu_sku", n('g', 65), false),
        ("data.gpu_sku", Some(json!(1)), false),
        ("data.gpu_id", s("GPU-3F1C2A9E-8D7B-4C6A-9E5F-0A1B2C3D4E5F"), true),
        ("data.gpu_id", s("gpu-3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f"), false),
        ("data.gpu_id", s("3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f"), false),
        ("data.gpu_id", s("GPU-3f1c2a9e8d7b4c6a9e5f0a1b2c3d4e5f"), false),
        ("data.gpu_id", s("GPU-{3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f}"), false),
        ("data.gpu_id", s("MIG-3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f"), false),
        ("data.labels", Some(json!({})), true),
        ("data.labels", labels(8), true),
        ("data.labels", labels(9), false),
        ("data.labels", Some(json!([])), false),
        ("data.labels", Some(Value::Null), false),
        ("data.labels", Some(json!({"a": "v"})), true),
        ("data.labels", Some(json!({"a_b.c-9": "v"})), true),
        ("data.labels", Some(json!({"k".repeat(32): "v"})), true),
        ("data.labels", Some(json!({"k".repeat(33): "v"})), false),
        ("data.labels", Some(json!({"A": "v"})), false),
        ("data.labels", Some(json!({"1a": "v"})), false),
        ("data.labels", Some(json!({"": "v"})), false),
        ("data.labels", Some(json!({"a": "v".repeat(128)})), true),
        ("data.labels", Some(json!({"a": "v".repeat(129)})), false),
        ("data.labels", Some(json!({"a": "€".repeat(128)})), true),
        ("data.labels", Some(json!({"a": "€".repeat(129)})), false),
        ("data.labels", Some(json!({"a": ""})), true),
        ("data.labels", Some(json!({"a": "x\u{1f}"})), false),
        ("data.labels", Some(json!({"a": "x\u{7f}"})), false),
        ("data.labels", Some(json!({"a": "x\u{9f}"})), false),
        ("data.labels", Some(json!({"a": "x\u{a0}"})), true),
        ("data.labels", Some(json!({"a": 1})), false),
        ("data.labels", Some(json!({"a": null})), false),
    ];
    for sku in domain::sku::SKUS {
        data.push(("data.gpu_sku", s(sku), true));
    }
    for (path, max) in [("data.node", 63), ("data.project", 64), ("data.job", 64)] {
        data.extend([
            (path, s("a"), true),
            (path, n('n', max), true),
            (path, n('n', max + 1), false),
            (path, s("A0._:/-z"), true),
            (path, s("-a"), false),
            (path, s(".a"), false),
            (path, s("a b"), false),
            (path, s("aé"), false),
            (path, s(""), false),
            (path, Some(json!(1)), false),
            (path, Some(Value::Null), false),
        ]);
    }
    // GPU-seconds: a decimal string, at most 20 integer and 6 fractional digits (the base
    // interval is 60 s long, so the amounts stay within it).
    for (text, ok) in [
        ("0", true),
        ("60", true),
        ("59.999999", true),
        ("0.000001", true),
        ("1.5", true),
        ("60.000000", true),
        ("00000000000000000060", true),
        ("000000000000000000060", false),
        ("59.9999999", false),
        ("1.0000000", false),
        ("1.0000000000000000001", false),
        ("-0", false),
        ("-1", false),
        ("+1", false),
        ("1.", false),
        (".5", false),
        ("1e1", false),
        ("NaN", false),
        (" 1", false),
        ("1,5", false),
        ("", false),
    ] {
        data.push(("data.gpu_seconds", s(text), ok));
    }
    data.push(("data.gpu_seconds", Some(json!(1)), false));
    data.push(("data.gpu_seconds", Some(json!("٣")), false));
    // Energy (optional): the same decimal form as GPU-seconds, with no bound but its digits.
    for (text, ok) in [
        ("0", true),
        ("12.5", true),
        ("0.000001", true),
        ("99999999999999999999.999999", true),
        ("00000000000000000060", true),
        ("000000000000000000060", false),
        ("1.0000000", false),
        ("-0", false),
        ("-1", false),
        ("+1", false),
        ("1.", false),
        (".5", false),
        ("1e1", false),
        ("NaN", false),
        ("", false),
    ] {
        data.push(("data.energy_wh", s(text), ok));
    }
    data.extend([
        ("data.energy_wh", None, true),
        ("data.energy_wh", Some(json!(1)), false),
        ("data.energy_wh", Some(Value::Null), false),
        ("data.mig_instance", s("1"), false),
        ("data.mig_profile", s("1g.18gb"), false),
    ]);
    cases.extend(data);

    // MIG: instance and profile together, each at its pattern's edges.
    let mut mig: Vec<(Value, Value, bool)> = Vec::new();
    for (instance, ok) in [
        ("0", true),
        ("9", true),
        ("99", true),
        ("07", true),
        ("100", false),
        ("", false),
        ("-1", false),
        ("a", false),
        ("1 ", false),
        ("٣", false),
    ] {
        mig.push((json!(instance), json!("1g.18gb"), ok));
    }
    for (profile, ok) in [
        ("1g.18gb", true),
        ("7g.141gb", true),
        ("9g.9999gb", true),
        ("1g.10gb+me", true),
        ("2g.1gb+abcdefgh", true),
        ("0g.18gb", false),
        ("10g.18gb", false),
        ("1g.12345gb", false),
        ("1g.gb", false),
        ("1G.18gb", false),
        ("1g.18GB", false),
        ("1g18gb", false),
        ("1g.18gb+", false),
        ("1g.18gb+ME", false),
        ("1g.18gb+abcdefghi", false),
        ("1g.18gb+m+e", false),
        ("1g.18gb\n", false),
        ("", false),
    ] {
        mig.push((json!("1"), json!(profile), ok));
    }
    mig.push((json!(1), json!("1g.18gb"), false));
    mig.push((json!("1"), json!(18), false));
    mig.push((Value::Null, json!("1g.18gb"), false));

    let mut checked = 0;
    let mut check = |event: &Value, what: &str, ok: bool| {
        let schema_ok = v.is_valid(event);
        let rust = rust_accepts(event);
        assert_eq!(
            schema_ok,
            ok,
            "{what}: the schema says {schema_ok}: {:?}",
            v.iter_errors(event).map(|e| e.to_string()).collect::<Vec<_>>()
        );
        assert_eq!(rust.is_ok(), ok, "{what}: the ingester says {rust:?}");
        checked += 1;
    };
    for (path, to, ok) in &cases {
        let mut event = base();
        set(&mut event, path, to.clone());
        check(&event, &format!("{path} = {to:?}"), *ok);
    }
    for (instance, profile, ok) in &mig {
        let mut event = base();
        set(&mut event, "data.mig_instance", Some(instance.clone()));
        set(&mut event, "data.mig_profile", Some(profile.clone()));
        check(&event, &format!("MIG {instance} {profile}"), *ok);
    }
    // Instants, as (start, end) pairs that keep the ingester's own rules (end after start, at
    // most an hour, GPU-seconds within it: "0").
    for (start, end, ok) in [
        ("2026-10-01T00:00:00Z", "2026-10-01T00:00:00.000001Z", true),
        ("2026-10-01T00:00:00.123456Z", "2026-10-01T00:00:00.5Z", true),
        ("2026-10-01T00:00:00.1Z", "2026-10-01T00:00:00.123Z", true),
        ("2026-10-01T00:00:00Z", "2026-10-01T00:00:00.1234567Z", false),
        ("2026-10-01T00:00:00Z", "2026-10-01T00:00:01.Z", false),
        ("2020-01-01T00:00:00Z", "2020-01-01T00:01:00Z", true),
        ("2019-12-31T23:59:00Z", "2020-01-01T00:00:00Z", false),
        ("2100-12-31T23:59:00Z", "2100-12-31T23:59:59.999999Z", true),
        ("2100-12-31T23:59:00Z", "2101-01-01T00:00:00Z", false),
        ("2028-02-29T00:00:00Z", "2028-02-29T00:01:00Z", true),
        ("2026-02-29T00:00:00Z", "2026-02-29T00:01:00Z", false),
        ("2026-02-30T00:00:00Z", "2026-02-30T00:01:00Z", false),
        ("2026-04-31T00:00:00Z", "2026-04-31T00:01:00Z", false),
        ("2026-13-01T00:00:00Z", "2026-13-01T00:01:00Z", false),
        ("2026-00-01T00:00:00Z", "2026-00-01T00:01:00Z", false),
        ("2026-10-00T00:00:00Z", "2026-10-00T00:01:00Z", false),
        ("2026-10-32T00:00:00Z", "2026-10-32T00:01:00Z", false),
        ("2026-10-01T23:59:00Z", "2026-10-01T24:00:00Z", false),
        ("2026-10-01T00:59:00Z", "2026-10-01T00:60:00Z", false),
        ("2026-10-01T00:00:59Z", "2026-10-01T00:00:60Z", false),
        ("2026-10-01T00:00:00Z", "2026-10-01T00:01:00z", false),
        ("2026-10-01T00:00:00Z", "2026-10-01t00:01:00Z", false),
        ("2026-10-01T00:00:00Z", "2026-10-01 00:01:00Z", false),
        ("2026-10-01T00:00:00Z", "2026-10-01T00:01:00+00:00", false),
        ("2026-10-01T00:00:00Z", "2026-10-01T00:01:00", false),
        ("2026-10-01T00:00:00Z", "2026-10-1T00:01:00Z", false),
        ("2026-10-01T00:00:00Z", "+2026-10-01T00:01:00Z", false),
    ] {
        let mut event = base();
        set(&mut event, "data.interval_start", s(start));
        set(&mut event, "data.interval_end", s(end));
        set(&mut event, "data.gpu_seconds", s("0"));
        check(&event, &format!("[{start}, {end})"), ok);
    }
    assert!(checked > 240, "{checked} cases");
}

/// Random values in every string member (near each bound, from an alphabet of the characters
/// the rules are about): whatever the schema refuses, the ingester refuses; whatever the schema
/// accepts, the ingester accepts or refuses by a rule the schema cannot state.
#[test]
fn random_values_are_judged_alike_by_schema_and_ingester() {
    use domain::usage::RejectionCode::*;
    use rand::{Rng, SeedableRng};
    let v = schema_with_formats();
    let beyond = [EndBeforeStart, IntervalTooLong, GpuSecondsExceedInterval, FutureTimestamp];
    let alphabet: Vec<char> = "aAz09-_.:/ äé€\u{1}\u{7f}\u{85}\u{a0}TZ+".chars().collect();
    let paths = [
        "id",
        "source",
        "subject",
        "time",
        "dataschema",
        "data.tenant_id",
        "data.gpu_sku",
        "data.gpu_id",
        "data.node",
        "data.project",
        "data.job",
        "data.interval_start",
        "data.interval_end",
        "data.gpu_seconds",
        "data.labels.team",
        "data.energy_wh",
        "data.mig_instance",
        "data.mig_profile",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..20_000 {
        let mut event = base();
        let path = paths[rng.gen_range(0..paths.len())];
        let current = path.split('.').fold(&event, |e, p| &e[p]).as_str().unwrap_or("team").to_string();
        let text: String = match rng.gen_range(0..3) {
            // A character of the current value changed.
            0 if !current.is_empty() => {
                let mut c: Vec<char> = current.chars().collect();
                let i = rng.gen_range(0..c.len());
                c[i] = alphabet[rng.gen_range(0..alphabet.len())];
                c.into_iter().collect()
            }
            // Near a length bound.
            1 => {
                let c = alphabet[rng.gen_range(0..alphabet.len())];
                let len = [1, 2, 31, 32, 33, 62, 63, 64, 65, 127, 128, 129, 256, 257][rng.gen_range(0..14)];
                std::iter::repeat_n(c, len).collect()
            }
            // Digits, a dot or two (GPU-seconds, instants).
            _ => (0..rng.gen_range(0..30)).map(|_| b"0123456789.9-"[rng.gen_range(0..13)] as char).collect(),
        };
        set(&mut event, path, Some(json!(text)));
        let schema_ok = v.is_valid(&event);
        match rust_accepts(&event) {
            Ok(()) => assert!(schema_ok, "{path} = {text:?}: the ingester accepts what the schema refuses"),
            Err(r) if beyond.contains(&r.code) => {}
            Err(r) => assert!(!schema_ok, "{path} = {text:?}: the schema accepts, the ingester refuses: {r}"),
        }
        if schema_ok {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(accepted > 2_000 && refused > 2_000, "{accepted} accepted, {refused} refused");
}
