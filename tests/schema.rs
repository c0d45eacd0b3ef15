//! The JSON Schema in schemas/ and the Rust validator agree: every fixture and every generated
//! event validates against the schema, every schema-invalid fixture is refused by the Rust code
//! with the reason in its file name, and the rules the schema cannot state are refused by Rust.

use chrono::{TimeZone, Utc};
use domain::simulate::{FleetSpec, Intent, Simulator};
use domain::usage::parse_usage_message;
use integration::repo_root;
use serde_json::Value;
use std::path::Path;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("schemas/usage-recorded.v1.schema.json")).expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn fixtures(dir: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("fixtures/usage").join(dir)).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
        out.push((name, serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("fixture is JSON")));
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
    for (name, event) in fixtures("valid") {
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
    for (name, event) in fixtures("invalid") {
        let reason = name.split("--").next().unwrap();
        assert!(!v.is_valid(&event), "{name}: the schema accepts it");
        let r = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&event).unwrap(), now()).unwrap_err();
        assert_eq!(r.code.as_str(), reason, "{name}: {}", r.message);
    }
}

#[test]
fn rules_beyond_the_schema_are_enforced_by_rust() {
    let v = schema();
    for (name, event) in fixtures("rules") {
        let reason = name.split("--").next().unwrap();
        assert!(v.is_valid(&event), "{name}: meant to be schema-valid");
        let r = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&event).unwrap(), now()).unwrap_err();
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
