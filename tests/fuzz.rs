//! The API fuzzed from its own OpenAPI document with schemathesis (PyPI, in the venv of
//! scripts/python.sh): with a tenant's, a finance and an auditor token, every operation gets
//! generated and boundary inputs; no response may be a 5xx, and every response must match the
//! document (status, content type, schema). And every parameter of every route (the router's
//! own table, pages included) probed with hostile values that a generator from the document
//! would not send: NUL and control characters, broken UTF-8, dates at chrono's limits,
//! overlong strings, numbers beyond 64 bits, and random bytes (seeded); each must get a 4xx.

use chrono::{Duration, Utc};
use integration::{connect, fresh_db, gpuledger, raw_http, repo_root, serial, serve_api, sign_in};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// A database with reference data, a budget and a closed August 2026.
fn seeded_db(name: &str) -> String {
    let db = fresh_db(name).unwrap();
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
    db
}

/// Values no parameter may answer with a 5xx, already percent-encoded for a request target.
fn hostile_values(seed: u64) -> Vec<String> {
    let mut v: Vec<String> = [
        "%00",
        "a%00b",
        "2026-08%00",
        "%01",
        "%1F",
        "%7F",
        "%0D%0A",
        "%C2%85",
        "%FF",
        "%C3%28",
        "%E2%82",
        "%ED%A0%80",
        "%",
        "%zz",
        "%2F",
        "..%2F..",
        "-1",
        "0",
        "-9223372036854775808",
        "9223372036854775807",
        "9223372036854775808",
        "-99999999999999999999999",
        "1e309",
        "NaN",
        "%20",
        "",
        "%2B262143-12-31T23:59:59Z",
        "-262143-01-01T00:00:00Z",
        "%2B262143-12-31",
        "-262143-01-01",
        "99999-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "1969-12-31T23:59:59Z",
        "2026-02-30T00:00:00Z",
        "2026-08-01T00:00:00%2B25:00",
        "0000-01",
        "9999-12",
        "-001-01",
        "2026-13",
        "2026-08-01",
        "%2B262143-12",
        "2100-12-31",
        "2101-01-01",
        "1900-01-01",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("a".repeat(6000));
    v.push("9".repeat(400));
    v.push("%E2%80%AE".repeat(50));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..12 {
        let len = rng.gen_range(1..64);
        v.push((0..len).map(|_| format!("%{:02X}", rng.gen::<u8>())).collect());
    }
    v
}

/// Plausible values per parameter name, so that a hostile value in one parameter meets valid
/// ones in the others and reaches the handler's deeper checks.
fn baseline(invoice: &str) -> BTreeMap<&'static str, String> {
    [
        ("from", "2026-08-01T00:00:00Z"),
        ("to", "2026-08-02T00:00:00Z"),
        ("granularity", "day"),
        ("group_by", "sku"),
        ("tenant", "rheinbank"),
        ("period", "2026-08"),
        ("as_of", "2026-08-31"),
        ("after", "0"),
        ("limit", "5"),
        ("month", "2026-08"),
        ("file", "invoices.csv"),
        ("format", "invoice.json"),
        ("number", invoice),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// Query parameters of each route: the OpenAPI document's for the API, the forms' for the pages
/// (which are not in the document).
fn query_names(doc: &Value, template: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Some(ops) = doc["paths"][template].as_object() {
        for op in ops.values() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "query" {
                    names.insert(p["name"].as_str().unwrap().to_string());
                }
            }
        }
    }
    let pages: &[(&str, &[&str])] = &[("/ui/usage", &["month", "tenant"]), ("/ui/finance", &["period"])];
    for (t, ns) in pages {
        if *t == template {
            names.extend(ns.iter().map(|n| n.to_string()));
        }
    }
    names
}

fn methods(doc: &Value, template: &str) -> Vec<String> {
    match doc["paths"][template].as_object() {
        Some(ops) => ops.keys().map(|m| m.to_uppercase()).collect(),
        None => vec!["GET".into(), "POST".into()],
    }
}

#[test]
fn every_parameter_of_every_route_answers_hostile_values_with_a_4xx() {
    let _serial = serial();
    let db = seeded_db("probe");
    let invoice: String = connect(&db).query_one("SELECT min(number) FROM invoices", &[]).unwrap().get(0);
    let s = serve_api(&db);
    let mut c = connect(&db);
    // Several tokens per role, taken in turn, so that the rate limit does not hide the handlers.
    let mut callers: Vec<Vec<(String, String)>> = Vec::new();
    for (role, tenant) in [("tenant", Some("rheinbank")), ("finance", None), ("auditor", None)] {
        callers.push(
            (0..8)
                .map(|_| {
                    let t = store::tokens::create_token(&mut c, role, tenant, "probe", Duration::days(1), Utc::now())
                        .unwrap()
                        .1;
                    let cookie = sign_in(s.port, &t);
                    (t, cookie)
                })
                .collect(),
        );
    }
    // Producer tokens (they sign in to no page: no cookie), for `POST /v1/events` and every
    // route they are refused.
    let tenants = vec!["rheinbank".to_string()];
    callers.push(
        (0..8)
            .map(|_| {
                let t = store::tokens::create_producer_token(
                    &mut c,
                    "//probe",
                    &tenants,
                    "probe",
                    Duration::days(1),
                    Utc::now(),
                );
                (t.unwrap().1, String::new())
            })
            .collect(),
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("schemas/openapi.json")).unwrap()).unwrap();
    let seed: u64 =
        std::env::var("GPULEDGER_PROBE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("probe seed {seed} (rerun with GPULEDGER_PROBE_SEED={seed})");
    let hostile = hostile_values(seed);
    let base = baseline(&invoice);
    let mut templates = api::route_templates();
    // Signing out last: it ends the sessions the other probes use.
    templates.sort_by_key(|t| *t == "/ui/logout");
    let (mut sent, mut failures) = (0usize, Vec::new());
    for template in &templates {
        let path_params: Vec<&str> =
            template.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|p| p.strip_suffix('}'))).collect();
        let query = query_names(&doc, template);
        let params: Vec<(&str, bool)> =
            path_params.iter().map(|p| (*p, true)).chain(query.iter().map(|q| (q.as_str(), false))).collect();
        let value = |name: &str| base.get(name).cloned().unwrap_or_else(|| "x".to_string());
        // Each parameter in turn takes each hostile value, the others their plausible ones; a
        // route without parameters is still asked once.
        let mut cases: Vec<(String, String)> = vec![(String::new(), String::new())];
        for (name, _) in &params {
            cases.extend(hostile.iter().map(|h| (name.to_string(), h.clone())));
        }
        // Ranges (`from` with `to`) at and beyond the limits of chrono and PostgreSQL, one day long.
        let windows: Vec<(String, String)> = if query.contains("from") && query.contains("to") {
            [
                ("-262143-01-01T00:00:00Z", "-262143-01-02T00:00:00Z"),
                ("-4714-11-24T00:00:00Z", "-4714-11-25T00:00:00Z"),
                ("0001-01-01T00:00:00Z", "0001-01-02T00:00:00Z"),
                ("9999-12-30T00:00:00Z", "9999-12-31T00:00:00Z"),
                ("262143-12-30T00:00:00Z", "262143-12-31T00:00:00Z"),
                ("%2B262143-12-30T00:00:00Z", "%2B262143-12-31T23:59:59.999999999Z"),
            ]
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect()
        } else {
            vec![]
        };
        cases.extend(windows.iter().map(|w| ("from+to".to_string(), format!("{}|{}", w.0, w.1))));
        for (target_name, bad) in &cases {
            let pick = |n: &str| match target_name.as_str() {
                "from+to" if n == "from" => bad.split('|').next().unwrap_or_default().to_string(),
                "from+to" if n == "to" => bad.split('|').nth(1).unwrap_or_default().to_string(),
                t if t == n => bad.clone(),
                _ => value(n),
            };
            let mut path = template.to_string();
            for (name, in_path) in &params {
                if *in_path {
                    path = path.replace(&format!("{{{name}}}"), &pick(name));
                }
            }
            let q: Vec<String> = params.iter().filter(|p| !p.1).map(|(n, _)| format!("{n}={}", pick(n))).collect();
            if !q.is_empty() {
                path = format!("{path}?{}", q.join("&"));
            }
            for method in methods(&doc, template) {
                for role in &callers {
                    let (token, cookie) = &role[sent % role.len()];
                    sent += 1;
                    let req = format!(
                        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {token}\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        s.port
                    );
                    let (status, head, body) = raw_http(s.port, req.as_bytes());
                    let head_l = head.to_ascii_lowercase();
                    let stored = !head_l.contains("\r\ncache-control: no-store") && *template != "/ui/app.css";
                    if stored || !head_l.contains("\r\nx-content-type-options: nosniff") {
                        failures.push(format!("{method} {template}: no no-store or nosniff: {head}"));
                    }
                    if !(200..500).contains(&status) {
                        let shown: String = path.chars().take(160).collect();
                        failures.push(format!(
                            "{method} {shown} -> {status} {}",
                            body.chars().take(200).collect::<String>()
                        ));
                    }
                }
            }
        }
    }
    eprintln!("probed {} routes with {sent} requests", templates.len());
    assert!(
        failures.is_empty(),
        "{} requests were not answered with a 2xx-4xx:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_api_survives_schemathesis_and_conforms_to_its_document() {
    let _serial = serial();
    let db = seeded_db("fuzz");
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
