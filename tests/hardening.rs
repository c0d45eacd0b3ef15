//! The API against clients that misbehave or look where they should not: a client that never
//! finishes its headers is cut off, connections beyond the limit wait, a slow request times out;
//! `/metrics` is not on the API's listener and its labels come from a fixed set; the access log
//! holds every refusal and every finance read with the real status and the concrete target;
//! sign-in opens a short server-side session in a `__Host-` cookie that signing out ends, and
//! both forms refuse other origins; finance's `tenant` is checked; tokens only for known
//! tenants; every answer carries `no-store` and `nosniff`.

use chrono::{Duration, Utc};
use integration::{
    connect, fresh_db, gpuledger, http, metrics_text, raw_http, repo_root, serial, serve_api, serve_api_with, ApiServer,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration as StdDuration, Instant};

/// A database with the billing fixtures' reference data (tenants `rheinbank`, `seekr-ai-us`, ...).
fn reference_db(name: &str) -> String {
    let db = fresh_db(name).unwrap();
    let mut args = vec!["reference".to_string(), "load".to_string()];
    for f in ["seller", "prices", "profiles", "contracts"] {
        args.push(repo_root().join(format!("fixtures/billing/{f}.json")).display().to_string());
    }
    gpuledger(&db, &args.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    db
}

fn token(db: &str, role: &str, tenant: Option<&str>) -> (uuid::Uuid, String) {
    let mut c = connect(db);
    store::tokens::create_token(&mut c, role, tenant, "hardening", Duration::days(1), Utc::now()).unwrap()
}

/// Reads until the server closes the connection or `limit` passes: (bytes read, closed, elapsed).
fn read_until_closed(c: &mut TcpStream, limit: StdDuration) -> (Vec<u8>, bool, StdDuration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return (got, false, t0.elapsed());
        }
        c.set_read_timeout(Some(left)).unwrap();
        match c.read(&mut buf) {
            Ok(0) => return (got, true, t0.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (got, false, t0.elapsed())
            }
            Err(_) => return (got, true, t0.elapsed()),
        }
    }
}

fn half_header(port: u16) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ").as_bytes()).unwrap();
    c
}

#[test]
fn slow_clients_are_cut_off_and_connections_beyond_the_limit_wait() {
    let _serial = serial();
    let db = fresh_db("slowloris").unwrap();
    let s = serve_api_with(&db, &["--header-timeout-secs", "2", "--max-connections", "2"]);

    // Half a header, and nothing at all: both disconnected after the header timeout.
    for half in [true, false] {
        let mut c = if half { half_header(s.port) } else { TcpStream::connect(("127.0.0.1", s.port)).unwrap() };
        let (_, closed, after) = read_until_closed(&mut c, StdDuration::from_secs(8));
        assert!(closed, "a client that does not finish its headers is still connected after {after:?}");
        assert!(after >= StdDuration::from_millis(1500), "cut off too early: {after:?}");
    }

    // Two connections take both slots; a third, complete request is answered only when the
    // header timeout has freed one of them.
    let t0 = Instant::now();
    let (_a, _b) = (half_header(s.port), half_header(s.port));
    std::thread::sleep(StdDuration::from_millis(200));
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", s.port).as_bytes())
        .unwrap();
    let (got, closed, _) = read_until_closed(&mut c, StdDuration::from_secs(8));
    let waited = t0.elapsed();
    assert!(closed && String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    assert!(
        waited >= StdDuration::from_millis(1500),
        "answered after {waited:?}, while both connections of the limit were still open"
    );
    // Once slots are free, requests are answered at once.
    let t0 = Instant::now();
    assert_eq!(http(&s, "GET", "/healthz", None).0, 200);
    assert!(t0.elapsed() < StdDuration::from_secs(1));
}

#[test]
fn a_request_whose_body_never_arrives_times_out() {
    let _serial = serial();
    let db = fresh_db("reqtimeout").unwrap();
    let (_, finance) = token(&db, "finance", None);
    let s = serve_api_with(&db, &["--request-timeout-secs", "2"]);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(
        format!(
            "POST /v1/finance/reference HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {finance}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[",
            s.port
        )
        .as_bytes(),
    )
    .unwrap();
    let t0 = Instant::now();
    c.set_read_timeout(Some(StdDuration::from_secs(8))).unwrap();
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "after {:?}: {answer:?}", t0.elapsed());
    assert!(t0.elapsed() < StdDuration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn a_producers_slow_body_times_out_and_its_refusals_are_logged() {
    let _serial = serial();
    let db = fresh_db("eventstimeout").unwrap();
    let tenants = vec!["rheinbank".to_string()];
    let (producer_id, producer) =
        store::tokens::create_producer_token(&mut connect(&db), "//x", &tenants, "t", Duration::days(1), Utc::now())
            .unwrap();
    let s = serve_api_with(&db, &["--request-timeout-secs", "2"]);
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {producer}\r\n\
             Content-Type: application/cloudevents-batch+json\r\nContent-Length: 1000\r\n\r\n[",
            s.port
        )
        .as_bytes(),
    )
    .unwrap();
    let t0 = Instant::now();
    c.set_read_timeout(Some(StdDuration::from_secs(8))).unwrap();
    let mut buf = [0u8; 512];
    let n = c.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "after {:?}: {answer:?}", t0.elapsed());
    assert!(t0.elapsed() < StdDuration::from_secs(5), "{:?}", t0.elapsed());
    // A refused post is logged with the producer's token and role.
    assert_eq!(http(&s, "POST", "/v1/events", Some(&producer)).0, 415);
    let rows: Vec<(Option<uuid::Uuid>, Option<String>, i16)> = connect(&db)
        .query("SELECT token_id, role, status FROM access_log WHERE path = '/v1/events' ORDER BY access_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(rows.contains(&(Some(producer_id), Some("producer".into()), 415)), "{rows:?}");
}

#[test]
fn metrics_are_private_and_their_labels_bounded() {
    let _serial = serial();
    let db = fresh_db("metrics").unwrap();
    let s = serve_api(&db);
    // Not on the API's listener.
    assert_eq!(http(&s, "GET", "/metrics", None).0, 404);
    // Invented methods: each answered, none a label of its own.
    for i in 0..20 {
        let req = format!("GROW{i} /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, head, _) = raw_http(s.port, req.as_bytes());
        assert!((400..500).contains(&status), "{head}");
    }
    let body = metrics_text(&s);
    assert!(!body.contains("GROW"), "{body}");
    assert!(body.contains("gpuledger_http_requests_total{method=\"other\",route=\"/healthz\""), "{body}");
}

/// An access log row: token, role, method, path with query, status.
type LogRow = (Option<uuid::Uuid>, Option<String>, String, String, i16);

#[test]
fn the_access_log_records_every_refusal_and_finance_read_as_answered() {
    let _serial = serial();
    let db = reference_db("accesslog");
    let (tenant_id, a) = token(&db, "tenant", Some("rheinbank"));
    let (finance_id, finance) = token(&db, "finance", None);
    let s = serve_api(&db);
    let usage = "/v1/usage?from=2026-08-01T00:00:00Z&to=2026-08-02T00:00:00Z&granularity=day";
    let finance_usage = format!("{usage}&tenant=seekr-ai-us");
    let asked: [(&str, Option<&str>, u16); 7] = [
        ("/v1/invoices?period=2026-08", None, 401),
        ("/v1/invoices?period=2026-08", Some("glt_unknown"), 401),
        ("/v1/finance/budget?as_of=2026-08-31", Some(&a), 403),
        ("/v1/invoices/GL-2099-999999", Some(&a), 404),
        ("/v1/usage?from=yesterday", Some(&a), 400),
        (&finance_usage, Some(&finance), 200),
        ("/v1/invoices/GL-2099-999999", Some(&finance), 404),
    ];
    for (path, tok, status) in asked {
        assert_eq!(http(&s, "GET", path, tok).0, status, "{path}");
    }
    // A tenant's own successful read is not logged.
    assert_eq!(http(&s, "GET", usage, Some(&a)).0, 200);
    let rows: Vec<LogRow> = connect(&db)
        .query("SELECT token_id, role, method, path, status FROM access_log ORDER BY access_id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let want: Vec<LogRow> = asked
        .iter()
        .map(|(path, tok, status)| {
            let who = match *tok {
                // A query that does not parse is refused before the token is looked at.
                _ if *status == 400 => (None, None),
                Some(t) if t == a => (Some(tenant_id), Some("tenant".to_string())),
                Some(t) if t == finance => (Some(finance_id), Some("finance".to_string())),
                _ => (None, None),
            };
            (who.0, who.1, "GET".to_string(), path.to_string(), *status as i16)
        })
        .collect();
    assert_eq!(rows, want);
}

fn set_cookie(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("set-cookie").then(|| value.trim().to_string())
    })
}

fn form_post(s: &ApiServer, path: &str, origin: Option<&str>, cookie: Option<&str>, body: &str) -> (u16, String) {
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let cookie = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{origin}{cookie}Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.port,
        body.len()
    );
    let (status, head, _) = raw_http(s.port, req.as_bytes());
    (status, head)
}

fn page_with(s: &ApiServer, path: &str, cookie: &str) -> (u16, String) {
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n", s.port);
    let (status, head, _) = raw_http(s.port, req.as_bytes());
    (status, head)
}

#[test]
fn signing_in_opens_a_short_session_that_signing_out_ends_and_other_origins_are_refused() {
    let _serial = serial();
    let db = reference_db("sessions");
    let (token_id, a) = token(&db, "tenant", Some("rheinbank"));
    let s = serve_api(&db);
    let me = format!("http://127.0.0.1:{}", s.port);
    let page = "/ui/usage?month=2026-08";

    // Another origin, or none, cannot sign in.
    for origin in [Some("http://evil.example"), Some("null"), None] {
        let (status, head) = form_post(&s, "/ui/login", origin, None, &format!("token={a}"));
        assert_eq!(status, 403, "{origin:?}: {head}");
        assert_eq!(set_cookie(&head), None, "{head}");
    }

    // Signing in: a `__Host-` cookie with a session id, not the token.
    let (status, head) = form_post(&s, "/ui/login", Some(&me), None, &format!("token={a}"));
    assert_eq!(status, 303, "{head}");
    let cookie_line = set_cookie(&head).unwrap();
    let attrs: Vec<&str> = cookie_line.split(';').map(str::trim).collect();
    let cookie = attrs[0].to_string();
    assert!(cookie.starts_with("__Host-gpuledger_session=gls_"), "{cookie_line}");
    for want in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(attrs.contains(&want), "{want} missing: {cookie_line}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("Domain")), "{cookie_line}");
    assert!(!cookie_line.contains(&a), "the cookie holds the API token: {cookie_line}");
    let mut c = connect(&db);
    let r =
        c.query_one("SELECT token_id, expires_at - created_at <= interval '12 hours' FROM ui_sessions", &[]).unwrap();
    assert_eq!(r.get::<_, uuid::Uuid>(0), token_id);
    assert!(r.get::<_, bool>(1), "a session of more than 12 hours is not short");
    assert_eq!(page_with(&s, page, &cookie).0, 200);
    // The session id is no API token.
    let id = cookie.split_once('=').unwrap().1;
    assert_eq!(http(&s, "GET", "/v1/invoices", Some(id)).0, 401);

    // Signing out from another origin, or without one, is refused and leaves the session.
    for origin in [Some("http://evil.example"), None] {
        assert_eq!(form_post(&s, "/ui/logout", origin, Some(&cookie), "").0, 403, "{origin:?}");
        assert_eq!(page_with(&s, page, &cookie).0, 200);
    }
    // Signing out ends the session in the database: the old cookie leads back to the sign-in.
    let (status, head) = form_post(&s, "/ui/logout", Some(&me), Some(&cookie), "");
    assert_eq!(status, 303, "{head}");
    assert!(set_cookie(&head).unwrap().contains("Max-Age=0"), "{head}");
    let (status, head) = page_with(&s, page, &cookie);
    assert_eq!(status, 303, "a signed-out session still opens pages: {head}");
    assert!(head.contains("location: /ui/login") || head.contains("Location: /ui/login"), "{head}");
    let ended: i64 = c.query_one("SELECT count(*) FROM ui_sessions WHERE ended_at IS NOT NULL", &[]).unwrap().get(0);
    assert_eq!(ended, 1);
    // That refusal is in the access log, as the page asked for.
    let logged: i64 = c
        .query_one("SELECT count(*) FROM access_log WHERE path = $1 AND status = 401 AND token_id IS NULL", &[&page])
        .unwrap()
        .get(0);
    assert_eq!(logged, 1);

    // Revoking the token ends its sessions too.
    let (_, head) = form_post(&s, "/ui/login", Some(&me), None, &format!("token={a}"));
    let cookie = set_cookie(&head).unwrap().split(';').next().unwrap().to_string();
    assert_eq!(page_with(&s, page, &cookie).0, 200);
    gpuledger(&db, &["tokens", "revoke", &token_id.to_string()]).unwrap();
    assert_eq!(page_with(&s, page, &cookie).0, 303);
}

#[test]
fn finance_names_only_known_tenants_and_tokens_exist_only_for_them() {
    let _serial = serial();
    let db = reference_db("tenantparam");
    let (_, finance) = token(&db, "finance", None);
    let s = serve_api(&db);
    let usage = "/v1/usage?from=2026-08-01T00:00:00Z&to=2026-08-02T00:00:00Z&granularity=day&tenant=";
    for (tenant, status) in [
        ("seekr-ai-us".to_string(), 200),
        ("nobody-here".to_string(), 404),
        ("a".repeat(200), 400),
        ("Rheinbank".to_string(), 400),
        ("a".repeat(6000), 414),
    ] {
        let (got, _, body) = http(&s, "GET", &format!("{usage}{tenant}"), Some(&finance));
        assert_eq!(got, status, "{}: {body}", &tenant[..tenant.len().min(20)]);
        // Asked again (now possibly from the cache): the same answer.
        assert_eq!(http(&s, "GET", &format!("{usage}{tenant}"), Some(&finance)).0, status);
    }
    assert!(gpuledger(&db, &["tokens", "create", "--role", "tenant", "--tenant", "nobody-here"]).is_err());
    assert!(gpuledger(&db, &["tokens", "create", "--role", "tenant", "--tenant", "rheinbank"]).is_ok());
    let known: i64 =
        connect(&db).query_one("SELECT count(*) FROM api_tokens WHERE role = 'tenant'", &[]).unwrap().get(0);
    assert_eq!(known, 1);
}

#[test]
fn every_answer_carries_no_store_and_nosniff() {
    let _serial = serial();
    let db = reference_db("headers");
    let (_, a) = token(&db, "tenant", Some("rheinbank"));
    let s = serve_api(&db);
    for (path, tok) in [
        ("/healthz", None),
        ("/openapi.json", None),
        ("/v1/invoices", Some(a.as_str())),
        ("/v1/invoices", None),
        ("/v1/usage?from=2026-08-01T00:00:00Z&to=2026-08-02T00:00:00Z", Some(&a)),
        ("/v1/nothing-here", None),
    ] {
        let auth = tok.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        let (_, head, _) = raw_http(s.port, req.as_bytes());
        let head = head.to_ascii_lowercase();
        assert!(head.contains("\r\ncache-control: no-store"), "{path}: {head}");
        assert!(head.contains("\r\nx-content-type-options: nosniff"), "{path}: {head}");
    }
}
