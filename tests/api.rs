//! The HTTP API on the real database: every route walked with every kind of token and with
//! foreign and nonexistent ids; a tenant sees its own usage and invoices and nothing else (404,
//! identical to a nonexistent object); 401 for missing, unknown, expired and revoked tokens;
//! finance reads across tenants and every such read is logged; and the second wall: row-level
//! security keeps `gpuledger_api` to the transaction's tenant even without a WHERE clause.

use chrono::{Duration, Utc};
use domain::billing::Period;
use integration::{
    connect, fresh_db, gpuledger, http, metrics_text, repo_root, serial, serve_api, superuser_url, unique, ApiServer,
};
use serde_json::{json, Value};

fn get(s: &ApiServer, path: &str, token: Option<&str>) -> (u16, String, String) {
    http(s, "GET", path, token)
}

fn request(s: &ApiServer, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    http(s, method, path, token)
}

fn token(db: &str, role: &str, tenant: Option<&str>, days: i64) -> (uuid::Uuid, String) {
    let mut c = connect(db);
    store::tokens::create_token(&mut c, role, tenant, "test", Duration::days(days), Utc::now()).unwrap()
}

#[test]
fn every_route_with_every_token_shows_a_tenant_only_its_own() {
    let _serial = serial();
    let db = fresh_db("api").unwrap();
    let fixtures: Vec<String> = ["seller", "prices", "profiles", "contracts"]
        .iter()
        .map(|f| repo_root().join(format!("fixtures/billing/{f}.json")).display().to_string())
        .collect();
    let mut args = vec!["reference", "load"];
    args.extend(fixtures.iter().map(String::as_str));
    gpuledger(&db, &args).unwrap();
    let start = Period::parse("2026-08").unwrap().start();
    let usage: Vec<Value> = ["rheinbank", "seekr-ai-us"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({ "kind": "usage.adjusted", "data": { "tenant_id": t, "gpu_sku": "nvidia-h200", "project": format!("secret-{t}"),
            "hour": (start + Duration::hours(30 + i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "gpu_seconds_delta": "7200", "reason": "metered" } }))
        .collect();
    let file = std::env::temp_dir().join(format!("{}.json", unique("api")));
    std::fs::write(&file, serde_json::to_vec(&usage).unwrap()).unwrap();
    gpuledger(&db, &["reference", "load", file.to_str().unwrap()]).unwrap();
    gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap();
    let budget: Vec<String> = ["master", "allocations", "bookings", "sap"]
        .iter()
        .map(|f| repo_root().join(format!("fixtures/budget/{f}.json")).display().to_string())
        .collect();
    let mut args = vec!["budget", "load"];
    args.extend(budget.iter().map(String::as_str));
    gpuledger(&db, &args).unwrap();

    let (_, a) = token(&db, "tenant", Some("rheinbank"), 30);
    let (_, b) = token(&db, "tenant", Some("seekr-ai-us"), 30);
    let (_, finance) = token(&db, "finance", None, 30);
    let (_, auditor) = token(&db, "auditor", None, 30);
    let (_, expired) = token(&db, "tenant", Some("rheinbank"), -1);
    let (revoked_id, revoked) = token(&db, "tenant", Some("rheinbank"), 30);
    gpuledger(&db, &["tokens", "revoke", &revoked_id.to_string()]).unwrap();
    let s = serve_api(&db);

    // Who owns which document.
    let (status, _, body) = get(&s, "/v1/invoices", Some(&finance));
    assert_eq!(status, 200, "{body}");
    let all: Vec<Value> = serde_json::from_str(&body).unwrap();
    let owner = |t: &str| -> Vec<String> {
        all.iter().filter(|d| d["tenant_id"] == t).map(|d| d["number"].as_str().unwrap().to_string()).collect()
    };
    let (docs_a, docs_b) = (owner("rheinbank"), owner("seekr-ai-us"));
    assert!(!docs_a.is_empty() && !docs_b.is_empty());
    let (_, _, auditor_list) = get(&s, "/v1/invoices", Some(&auditor));
    assert_eq!(auditor_list, body);

    let (_, _, missing_body) = get(&s, "/v1/invoices/GL-2099-999999", Some(&a));
    for (tok, own, foreign, tenant) in [(&a, &docs_a, &docs_b, "rheinbank"), (&b, &docs_b, &docs_a, "seekr-ai-us")] {
        let (status, _, body) = get(&s, "/v1/invoices", Some(tok));
        assert_eq!(status, 200);
        let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert!(listed.iter().all(|d| d["tenant_id"] == tenant), "{body}");
        assert_eq!(listed.len(), own.len());
        for suffix in ["", "/xrechnung", "/csv"] {
            for n in own {
                let (status, _, body) = get(&s, &format!("/v1/invoices/{n}{suffix}"), Some(tok));
                assert_eq!(status, 200, "{n}{suffix}: {body}");
                assert!(body.contains(tenant) || suffix == "/xrechnung", "{body}");
            }
            for n in foreign {
                let (status, ctype, body) = get(&s, &format!("/v1/invoices/{n}{suffix}"), Some(tok));
                assert_eq!(status, 404, "{n}{suffix} with {tenant}'s token: {body}");
                assert_eq!(ctype, "application/problem+json");
                assert_eq!(body, missing_body, "a foreign object looks exactly like a nonexistent one");
            }
        }
        // Usage: only the token's tenant, whatever the query says.
        let path = "/v1/usage?from=2026-07-31T22:00:00Z&to=2026-08-31T22:00:00Z&granularity=day&group_by=sku,project";
        for p in [path.to_string(), format!("{path}&tenant=rheinbank"), format!("{path}&tenant=seekr-ai-us")] {
            let (status, _, body) = get(&s, &p, Some(tok));
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["tenant"], tenant);
            let rows = v["rows"].as_array().unwrap();
            assert_eq!(rows.len(), 1, "{body}");
            assert_eq!(rows[0]["project"], format!("secret-{tenant}"));
            assert_eq!(rows[0]["gpu_seconds"], "7200");
        }
    }
    // Finance reads any tenant's usage when it names one; every finance and auditor read is logged.
    let (status, _, body) = get(
        &s,
        "/v1/usage?from=2026-07-31T22:00:00Z&to=2026-08-31T22:00:00Z&granularity=month&tenant=seekr-ai-us",
        Some(&finance),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"gpu_seconds\":\"7200\""), "{body}");
    let logged: i64 = connect(&db)
        .query_one("SELECT count(*) FROM access_log WHERE role IN ('finance', 'auditor') AND status = 200", &[])
        .unwrap()
        .get(0);
    assert_eq!(logged, 3);

    // Finance and auditor routes: 403 for tenants; finance closes and exports; auditors page
    // through the event log; each such read is logged.
    let finance_routes = [
        ("GET", "/v1/finance/budget?as_of=2026-10-31".to_string()),
        ("POST", "/v1/finance/periods/2026-08/close".to_string()),
        ("GET", "/v1/finance/exports/2026-08/invoices.csv".to_string()),
        ("GET", "/v1/finance/exports/2026-08/invoices.json".to_string()),
        ("GET", "/v1/finance/exports/2026-08/sap-journal.csv".to_string()),
        ("GET", "/v1/finance/exports/2026-08/focus-rheinbank.csv".to_string()),
        ("GET", "/v1/audit/events?limit=5".to_string()),
        ("GET", "/v1/audit/verify".to_string()),
        ("POST", "/v1/finance/reference".to_string()),
    ];
    for (method, path) in &finance_routes {
        for tok in [&a, &b] {
            let (status, _, body) = request(&s, method, path, Some(tok));
            assert_eq!(status, 403, "{method} {path}: {body}");
        }
        let (status, _, _) = request(&s, method, path, None);
        assert_eq!(status, 401);
        let tok = if path.starts_with("/v1/audit") { &auditor } else { &finance };
        let (status, _, body) = request(&s, method, path, Some(tok));
        let expected = if path.ends_with("/reference") { 415 } else { 200 }; // no JSON body sent
        assert_eq!(status, expected, "{method} {path}: {body}");
    }
    // Auditors verify the whole log over HTTP.
    let (_, _, body) = get(&s, "/v1/audit/verify", Some(&auditor));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["intact"], true, "{body}");
    assert!(v["rows"].as_i64().unwrap() > 0 && v["breaks"].as_array().unwrap().is_empty(), "{body}");
    assert_eq!(get(&s, "/v1/audit/verify?receipt=zz", Some(&auditor)).0, 400);
    // Finance loads reference data over HTTP: idempotent, refused whole when one item is bad.
    let price = r#"[{"event_id": "9e1ce000-0000-4000-8000-0000000000f1", "kind": "price_list.set", "data": {"sku": "nvidia-l40s",
        "effective_from": "2027-01-01T00:00:00Z", "currency": "EUR", "tiers": [{"from_gpu_hours": "0", "eur_per_gpu_hour": "1.10"}]}}]"#;
    let before: i64 = connect(&db).query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    for (tok, json, status, needle) in [
        (&a, price.to_string(), 403, "role"),
        (&finance, price.to_string(), 200, "\"new\":true"),
        (&finance, price.to_string(), 200, "\"new\":false"),
        (&finance, price.replace("1.10", "-1"), 422, "item 1"),
        (&finance, price.replace("\"1.10\"", "1.10"), 422, "item 1"),
        (&finance, "[]".to_string(), 400, "items"),
        (&finance, "[not json".to_string(), 400, ""),
        (&finance, "{\"kind\": 1}".to_string(), 422, ""),
    ] {
        let (got, ctype, body) =
            integration::http_with_body(&s, "POST", "/v1/finance/reference", Some(tok), Some(&json));
        assert_eq!(got, status, "{json}: {body}");
        assert!(body.contains(needle), "{body}");
        if got != 200 {
            assert_eq!(ctype, "application/problem+json");
        }
    }
    let after: i64 = connect(&db).query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    assert_eq!(after, before + 1, "one new price list, nothing from the refused loads");
    let (status, _, body) = request(&s, "POST", "/v1/finance/periods/2026-08/close", Some(&auditor));
    assert_eq!(status, 403, "auditors change nothing: {body}");
    let (_, _, body) = request(&s, "POST", "/v1/finance/periods/2026-08/close", Some(&finance));
    assert!(body.contains("\"already_closed\":true"), "{body}");
    let (status, _, _) = get(&s, "/v1/finance/exports/2026-08/focus-nobody.csv", Some(&finance));
    assert_eq!(status, 404);
    let (status, _, _) = get(&s, "/v1/audit/events", Some(&finance));
    assert_eq!(status, 403);
    // Paging through the whole log by sequence.
    let (mut after, mut seen) = (0i64, 0usize);
    loop {
        let (status, _, body) = get(&s, &format!("/v1/audit/events?after={after}&limit=7"), Some(&auditor));
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        let events = page["events"].as_array().unwrap();
        for e in events {
            assert!(e["seq"].as_i64().unwrap() > after);
            after = e["seq"].as_i64().unwrap();
        }
        seen += events.len();
        if page["next_after"].is_null() {
            break;
        }
    }
    let total: i64 = connect(&db).query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    assert_eq!(seen as i64, total);

    // 401 without a valid token, on every authenticated route.
    for path in [
        "/v1/invoices",
        &format!("/v1/invoices/{}", docs_a[0]),
        "/v1/usage?from=2026-08-01T00:00:00Z&to=2026-08-02T00:00:00Z",
    ] {
        for tok in [None, Some("glt_nope"), Some(expired.as_str()), Some(revoked.as_str())] {
            let (status, ctype, body) = get(&s, path, tok);
            assert_eq!(status, 401, "{path} {tok:?}: {body}");
            assert_eq!(ctype, "application/problem+json");
            assert!(!body.contains("ERROR") && !body.contains("postgres"), "{body}");
        }
    }
    // Limits: ranges and granularities.
    for bad in [
        "/v1/usage?from=2026-08-01T00:00:00Z&to=2027-12-01T00:00:00Z",
        "/v1/usage?from=2026-08-01T00:00:00Z&to=2026-10-01T00:00:00Z&granularity=hour",
        "/v1/usage?from=2026-08-02T00:00:00Z&to=2026-08-01T00:00:00Z",
        "/v1/usage?from=2026-08-01T00:00:00Z&to=2026-08-02T00:00:00Z&group_by=tenant",
    ] {
        let (status, _, body) = get(&s, bad, Some(&a));
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // Health, readiness, metrics, and the OpenAPI document as committed.
    assert_eq!(get(&s, "/healthz", None).0, 200);
    let (status, _, body) = get(&s, "/readyz", None);
    assert_eq!(status, 200, "{body}");
    let body = metrics_text(&s);
    assert!(
        body.contains("gpuledger_http_requests_total{method=\"GET\",route=\"/v1/invoices/{number}\",status=\"404\"}"),
        "{body}"
    );
    let (_, _, doc) = get(&s, "/openapi.json", None);
    assert_eq!(doc, std::fs::read_to_string(repo_root().join("schemas/openapi.json")).unwrap());

    // The request rate per token is limited (429, as a problem), other tokens unaffected.
    // Sent from 16 threads at once, so that the burst outruns the refill however long one request
    // takes on a loaded machine (sequential requests of 10 ms each would never exceed it).
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let burst: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| (0..60).map(|_| get(&s, "/v1/invoices", Some(&b)).0).collect::<Vec<u16>>()))
            .collect();
        burst.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    assert!(statuses.contains(&429), "a burst beyond the limit is refused");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    assert_eq!(get(&s, "/v1/invoices", Some(&a)).0, 200);
}

#[test]
fn a_refusal_answers_422_for_invalid_input_and_409_for_a_conflict_with_the_ledger() {
    let _serial = serial();
    let db = fresh_db("api_refusals").unwrap();
    let s = serve_api(&db);
    let (_, finance) = token(&db, "finance", None, 30);
    let price = r#"[{"event_id": "9e1ce000-0000-4000-8000-0000000000f2", "kind": "price_list.set", "data": {"sku": "nvidia-l40s",
        "effective_from": "2027-01-01T00:00:00Z", "currency": "EUR", "tiers": [{"from_gpu_hours": "0", "eur_per_gpu_hour": "1.10"}]}}]"#;
    let this_month = format!("/v1/finance/periods/{}/close", Period::of(Utc::now()));
    for (method, path, body, status, needle) in [
        ("POST", "/v1/finance/reference", Some(price.to_string()), 200, "\"new\":true".to_string()),
        // Invalid on its own: sent again, refused again.
        (
            "POST",
            "/v1/finance/reference",
            Some(price.replace("1.10", "-1")),
            422,
            "item 1 (price_list.set): ".to_string(),
        ),
        // The same event id with other content conflicts with what the ledger holds.
        (
            "POST",
            "/v1/finance/reference",
            Some(price.replace("1.10", "1.20")),
            409,
            "event id 9e1ce000-0000-4000-8000-0000000000f2 of - is already in the ledger with other content"
                .to_string(),
        ),
        // A member named twice (I-JSON, RFC 7493) is refused, not read as its last value.
        (
            "POST",
            "/v1/finance/reference",
            Some(price.replace("\"currency\": \"EUR\"", "\"currency\": \"USD\", \"currency\": \"EUR\"")),
            422,
            "currency\\\" appears more than once in [0].data (I-JSON".to_string(),
        ),
        // A month that is not over yet: closing it conflicts with the ledger's clock, not the input.
        ("POST", this_month.as_str(), None, 409, "is not over yet".to_string()),
    ] {
        let (got, ctype, answer) = integration::http_with_body(&s, method, path, Some(&finance), body.as_deref());
        assert_eq!(got, status, "{path}: {answer}");
        assert!(answer.contains(&needle), "{needle:?} in {answer}");
        if got != 200 {
            assert_eq!(ctype, "application/problem+json");
            let problem: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(problem["status"], status, "{answer}");
        }
    }
    let refs: i64 = connect(&db).query_one("SELECT count(*) FROM ledger_events", &[]).unwrap().get(0);
    assert_eq!(refs, 1, "nothing written by the refused requests");
}

#[test]
fn row_level_security_walls_the_api_role_even_without_a_where_clause() {
    let _serial = serial();
    let db = fresh_db("rls").unwrap();
    let mut c = connect(&db);
    c.batch_execute(
        "INSERT INTO usage_hourly VALUES ('tenant-a', 'nvidia-h200', 'p', '2026-08-01T00:00:00Z', 1, 1),
                                         ('tenant-b', 'nvidia-h200', 'p', '2026-08-01T00:00:00Z', 2, 1)",
    )
    .unwrap();
    // The wall is opened by a token (migration 0011), on the API's own login.
    let mut key = |role: &str, tenant: Option<&str>| {
        let (_, t) = store::tokens::create_token(&mut c, role, tenant, "t", Duration::days(1), Utc::now()).unwrap();
        Some(store::tokens::hash_token(&t))
    };
    let (a, b, finance) = (key("tenant", Some("tenant-a")), key("tenant", Some("tenant-b")), key("finance", None));
    let mut api = connect(&integration::login_url(&db, "gpuledger_api"));
    let mut visible = |wall: Option<Vec<u8>>| -> Vec<String> {
        let mut tx = api.transaction().unwrap();
        if let Some(k) = wall {
            tx.execute("SELECT api_open_wall($1)", &[&k]).unwrap();
        }
        let rows = tx.query("SELECT tenant_id FROM usage_hourly ORDER BY 1", &[]).unwrap();
        let denied = tx.execute("UPDATE usage_hourly SET events = 0", &[]).is_err();
        assert!(denied, "the API role cannot change rows");
        rows.iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(visible(a), vec!["tenant-a"]);
    assert_eq!(visible(b), vec!["tenant-b"]);
    assert_eq!(visible(None), Vec::<String>::new(), "no wall opened: no rows");
    assert_eq!(visible(finance), vec!["tenant-a", "tenant-b"]);
    let bypass: bool =
        c.query_one("SELECT rolbypassrls FROM pg_roles WHERE rolname = 'gpuledger_api'", &[]).unwrap().get(0);
    assert!(!bypass);
    let forced: bool =
        c.query_one("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'usage_hourly'", &[]).unwrap().get(0);
    assert!(forced);
}

/// `GET /v1/usage` answers from a cache of whole responses; this checks that the cache never
/// outlives the ledger: usage ingested through Kafka shows in the next answer, and an answer is
/// served only to the tenant it was computed for, also when the listener loses its connection.
#[test]
fn usage_answers_follow_the_ledger_through_the_response_cache() {
    let _serial = serial();
    let db = fresh_db("apicache").unwrap();
    let topic = unique("apicache");
    let ingest_all = |totals: &Value| {
        let child = integration::spawn_ingest(&db, &topic, &unique("apicache-g"), &["--idle-exit-secs", "10"]).unwrap();
        let expected = {
            let mut c = connect(&db);
            integration::accounted(&mut c, &topic).unwrap() + totals["messages"].as_i64().unwrap()
        };
        integration::wait_accounted(&db, &topic, expected, std::time::Duration::from_secs(120)).unwrap();
        integration::stop(child).unwrap();
    };
    let fleet = |seed: &str, start: &str| {
        integration::produce(
            &db,
            &topic,
            &["--seed", seed, "--gpus", "4", "--tenants", "2", "--start", start, "--minutes", "300"],
        )
        .unwrap()
    };
    let seconds_of = |totals: &[&Value], tenant: &str| -> rust_decimal::Decimal {
        totals
            .iter()
            .map(|t| {
                domain::simulate::Totals::gpu_seconds_from_json(t)
                    .unwrap()
                    .get(tenant)
                    .map_or(rust_decimal::Decimal::ZERO, |by_sku| {
                        by_sku.values().copied().sum::<rust_decimal::Decimal>()
                    })
            })
            .sum::<rust_decimal::Decimal>()
            .normalize()
    };
    let first = fleet("7", "2026-08-03T00:00:00Z");
    ingest_all(&first);
    let tenants: Vec<String> =
        domain::simulate::Totals::gpu_seconds_from_json(&first).unwrap().keys().cloned().collect();
    assert_eq!(tenants.len(), 2, "{first}");
    let tokens: Vec<String> = tenants.iter().map(|t| token(&db, "tenant", Some(t), 1).1).collect();
    let s = serve_api(&db);
    let metric = |name: &str| -> i64 {
        let body = metrics_text(&s);
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} not in /metrics: {body}"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric("gpuledger_usage_cache_live ") != 1 {
        assert!(std::time::Instant::now() < deadline, "the cache's listener never connected");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let path = "/v1/usage?from=2026-08-01T00:00:00Z&to=2026-09-01T00:00:00Z&granularity=hour";
    let answer = |tok: &str| -> (String, rust_decimal::Decimal) {
        let (status, _, body) = get(&s, path, Some(tok));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let sum = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["gpu_seconds"].as_str().unwrap().parse::<rust_decimal::Decimal>().unwrap())
            .sum::<rust_decimal::Decimal>()
            .normalize();
        (v["tenant"].as_str().unwrap().to_string(), sum)
    };
    // Each tenant's answer, twice: the second comes from the cache, and each only to its tenant.
    let hits = metric("gpuledger_usage_cache_requests_total{result=\"hit\"}");
    for _ in 0..2 {
        for (tenant, tok) in tenants.iter().zip(&tokens) {
            assert_eq!(answer(tok), (tenant.clone(), seconds_of(&[&first], tenant)));
        }
    }
    assert_eq!(metric("gpuledger_usage_cache_requests_total{result=\"hit\"}"), hits + 2);
    assert!(metric("gpuledger_usage_cache_entries ") >= 2);

    // More usage of the same month arrives through Kafka: the next answers include it (the
    // change is announced at commit; allow the notification a moment to arrive).
    let second = fleet("8", "2026-08-20T00:00:00Z");
    ingest_all(&second);
    let settle = |expected: &[(String, rust_decimal::Decimal)]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let got: Vec<(String, rust_decimal::Decimal)> = tokens.iter().map(|t| answer(t)).collect();
            if got == expected {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "answers {got:?}, the ledger says {expected:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let expected: Vec<(String, rust_decimal::Decimal)> =
        tenants.iter().map(|t| (t.clone(), seconds_of(&[&first, &second], t))).collect();
    settle(&expected);
    assert_ne!(expected[0].1, seconds_of(&[&first], &tenants[0]), "the second fleet used the first tenant's GPUs");

    // The listener loses its connection while usage changes: no answer from before survives.
    // (Ending another login's backend, and reading its query, takes the superuser.)
    let mut c = connect(&superuser_url(&db));
    let killed: i64 = c
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND query LIKE 'LISTEN gpuledger_usage%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one listener");
    c.batch_execute(&format!(
        "INSERT INTO usage_hourly VALUES ('{}', 'nvidia-h200', 'late', '2026-08-31T23:00:00Z', 3600, 1)",
        tenants[0]
    ))
    .unwrap();
    let mut expected = expected;
    expected[0].1 = (expected[0].1 + rust_decimal::Decimal::from(3600)).normalize();
    settle(&expected);
}
