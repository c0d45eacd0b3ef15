//! The API fuzzed from its own OpenAPI document with schemathesis (PyPI, in the venv of
//! scripts/python.sh): with a tenant's, a finance and an auditor token, every operation gets
//! generated and boundary inputs; no response may be a 5xx, and every response must match the
//! document (status, content type, schema).

use chrono::{Duration, Utc};
use integration::{connect, fresh_db, gpuledger, repo_root, serial, serve_api};
use std::process::Command;

#[test]
fn the_api_survives_schemathesis_and_conforms_to_its_document() {
    let _serial = serial();
    let db = fresh_db("fuzz").unwrap();
    let mut args = vec!["reference".to_string(), "load".to_string()];
    for f in ["seller", "prices", "profiles", "contracts"] {
        args.push(repo_root().join(format!("fixtures/billing/{f}.json")).display().to_string());
    }
    gpuledger(&db, &args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let mut args = vec!["budget".to_string(), "load".to_string()];
    for f in ["master", "allocations", "bookings", "sap"] {
        args.push(repo_root().join(format!("fixtures/budget/{f}.json")).display().to_string());
    }
    gpuledger(&db, &args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap();
    let mut c = connect(&db);
    let mut tokens = Vec::new();
    for (role, tenant) in [("tenant", Some("rheinbank")), ("finance", None), ("auditor", None)] {
        tokens
            .push(store::tokens::create_token(&mut c, role, tenant, "fuzz", Duration::days(1), Utc::now()).unwrap().1);
    }
    let s = serve_api(&db);
    let schemathesis = std::env::var("GPULEDGER_SCHEMATHESIS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".services/venv/bin/schemathesis"));
    assert!(schemathesis.exists(), "schemathesis missing at {} (run scripts/python.sh)", schemathesis.display());
    for token in &tokens {
        let out = Command::new(&schemathesis)
            .arg("run")
            .arg(repo_root().join("schemas/openapi.json"))
            .args(["--url", &format!("http://127.0.0.1:{}", s.port)])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--workers", "1", "--seed", "7"])
            .args(["--suppress-health-check", "all"])
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "schemathesis found problems:\n{report}");
    }
}
