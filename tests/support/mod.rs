//! Shared helpers for the integration tests: a fresh database per test on the real PostgreSQL,
//! a fresh topic per test on the real Kafka (both started by `scripts/services.sh up`), the
//! `gpuledger` binary as a child process, and the checks every exactly-once test ends with.

pub mod dcgm;

use anyhow::{bail, Context, Result};
use postgres::{Client, NoTls};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The owner of the tables (the login `gpuledger migrate` uses, no superuser:
/// scripts/pg-bootstrap.sql), from `GPULEDGER_DATABASE_URL` as `scripts/services.sh env` prints it.
pub fn owner_url() -> String {
    std::env::var("GPULEDGER_DATABASE_URL").unwrap_or_else(|_| "postgres://gpuledger@127.0.0.1:55432/gpuledger".into())
}

/// The owner's user name.
pub fn owner_user() -> String {
    user_of(&owner_url()).unwrap_or_else(|| "gpuledger".into())
}

fn user_of(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(':').next().unwrap_or(user).to_string())
}

/// The cluster's superuser on its `postgres` database (`GPULEDGER_ADMIN_URL`, else the owner's
/// host with the bootstrap superuser `postgres` of scripts/services.sh): it makes the test
/// databases and roles, and the tests that tamper with the ledger behind its back.
pub fn admin_url() -> String {
    std::env::var("GPULEDGER_ADMIN_URL").unwrap_or_else(|_| on_db(&login_url(&owner_url(), "postgres"), "postgres"))
}

/// `url` with its database changed to `db`.
pub fn on_db(url: &str, db: &str) -> String {
    url.rsplit_once('/').expect("url has a path").0.to_string() + "/" + db
}

/// The superuser's URL for the test database `db_url`: only for tampering with what no login of
/// the application may change (switching triggers off with `session_replication_role`).
pub fn superuser_url(db_url: &str) -> String {
    login_url(db_url, &user_of(&admin_url()).unwrap_or_else(|| "postgres".into()))
}

pub fn brokers() -> String {
    std::env::var("GPULEDGER_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// The release binary, built by the test command before the tests run.
pub fn bin() -> PathBuf {
    if let Ok(p) = std::env::var("GPULEDGER_BIN") {
        return PathBuf::from(p);
    }
    let p = repo_root().join("target/release/gpuledger");
    assert!(p.exists(), "build the binary first: cargo build --release -p gpuledger ({})", p.display());
    p
}

/// The benchmark binary (crates/bench), built beside `gpuledger`; `GPULEDGER_BENCH_BIN` overrides it.
pub fn bench_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GPULEDGER_BENCH_BIN") {
        return PathBuf::from(p);
    }
    let p = repo_root().join("target/release/gpuledger-bench");
    assert!(p.exists(), "build the binary first: cargo build --release -p bench ({})", p.display());
    p
}

/// A unique suffix per test run, so that reruns never meet old topics or databases.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("{name}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

/// Creates a fresh database owned by the owner of the tables, migrates it as the owner (as
/// `gpuledger migrate` does), and returns the owner's URL of it.
pub fn fresh_db(name: &str) -> Result<String> {
    let db = unique(&format!("t_{name}"));
    let mut admin =
        Client::connect(&admin_url(), NoTls).context("connecting to PostgreSQL: is scripts/services.sh up?")?;
    admin.batch_execute(&format!("CREATE DATABASE \"{db}\" OWNER \"{}\"", owner_user()))?;
    let url = on_db(&owner_url(), &db);
    let mut c = Client::connect(&url, NoTls)?;
    store::migrate(&mut c)?;
    Ok(url)
}

/// The URL of a test database (from [`fresh_db`]) for another login role, as the commands derive
/// theirs (crates/gpuledger/src/logins.rs): only the user changes; the test cluster trusts local logins.
pub fn login_url(db_url: &str, role: &str) -> String {
    let (scheme, rest) = db_url.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('@').map(|(_, h)| h).unwrap_or(rest);
    format!("{scheme}://{role}@{host}")
}

/// The environment that points the `gpuledger` binary at a test database as production is set
/// up (docs/operations.md, "Database roles"): the owner's URL (for `migrate` and the operator's
/// commands) and each service's own unprivileged login: ingest, serve, and finance's closes,
/// exports and loads. Set explicitly, so that no variable exported in the shell reaches past it.
pub fn logins(db_url: &str) -> [(&'static str, String); 6] {
    [
        ("GPULEDGER_DATABASE_URL", db_url.to_string()),
        ("GPULEDGER_INGEST_DATABASE_URL", login_url(db_url, "gpuledger_ingest")),
        ("GPULEDGER_API_DATABASE_URL", login_url(db_url, "gpuledger_api")),
        ("GPULEDGER_FINANCE_DATABASE_URL", login_url(db_url, "gpuledger_finance")),
        ("GPULEDGER_AUDITOR_DATABASE_URL", login_url(db_url, "gpuledger_auditor")),
        ("GPULEDGER_TOKENS_DATABASE_URL", login_url(db_url, "gpuledger_tokens")),
    ]
}

pub fn connect(url: &str) -> Client {
    // The tests themselves retry too, because some of them restart PostgreSQL under their feet.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Client::connect(url, NoTls) {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for PostgreSQL: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("PostgreSQL unreachable: {e}"),
        }
    }
}

/// Runs `gpuledger produce` with these extra arguments and returns the generator's totals.
pub fn produce(db_url: &str, topic: &str, args: &[&str]) -> Result<Value> {
    let totals = std::env::temp_dir().join(format!("{}.totals.json", unique("totals")));
    let out = Command::new(bin())
        .args(["produce", "--topic", topic, "--totals"])
        .arg(&totals)
        .args(args)
        .envs(logins(db_url))
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .output()?;
    if !out.status.success() {
        bail!("produce failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&std::fs::read(&totals)?)?)
}

/// Starts `gpuledger ingest` as a child process, logged in as `gpuledger_ingest`; its log goes to
/// a file under target/.
pub fn spawn_ingest(db_url: &str, topic: &str, group: &str, args: &[&str]) -> Result<Child> {
    spawn_ingest_as(db_url, &login_url(db_url, "gpuledger_ingest"), topic, group, args)
}

/// [`spawn_ingest`] with the ingester logged in as `login_url` (another database login).
pub fn spawn_ingest_as(db_url: &str, login_url: &str, topic: &str, group: &str, args: &[&str]) -> Result<Child> {
    let logs = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{topic}.log")))?;
    Ok(Command::new(bin())
        .args(["ingest", "--topic", topic, "--group", group])
        .args(args)
        .envs(logins(db_url))
        .env("GPULEDGER_INGEST_DATABASE_URL", login_url)
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// How long the helpers below wait for an ingester to account for every offset.
const INGEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `gpuledger ingest` (in `group`, with these extra arguments) until `expected` offsets of
/// `topic` are accounted for, then stops it; also when the wait failed, whose error it returns.
pub fn ingest_until(db_url: &str, topic: &str, group: &str, args: &[&str], expected: i64) -> Result<()> {
    let child = spawn_ingest(db_url, topic, group, args)?;
    let waited = wait_accounted(db_url, topic, expected, INGEST_TIMEOUT);
    stop(child)?;
    waited
}

/// Produces usage to `topic` (`gpuledger produce` with these arguments) and ingests all of it in
/// a new group; returns the producer's totals.
pub fn produce_and_ingest(db_url: &str, topic: &str, args: &[&str]) -> Result<Value> {
    let before = accounted(&mut connect(db_url), topic)?;
    let totals = produce(db_url, topic, args)?;
    let produced = totals["messages"].as_i64().context("the producer's totals name no message count")?;
    ingest_until(db_url, topic, &unique("g"), &[], before + produced)?;
    Ok(totals)
}

/// Runs `gpuledger ingest` on `topic` with these extra arguments and expects it to give up on
/// its own within `timeout` (panics with `waiting` otherwise) and to fail; returns its stderr.
pub fn ingest_expecting_failure(db_url: &str, topic: &str, args: &[&str], timeout: Duration, waiting: &str) -> String {
    let mut child = Command::new(bin())
        .args(["ingest", "--topic", topic, "--group", &unique("g")])
        .args(args)
        .envs(logins(db_url))
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the ingester");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("waiting for the ingester").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{waiting}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("the ingester's output");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the ingester succeeded: {err}");
    err
}

/// Sum over the topic's partitions of every offset accounted for: ledgered + duplicates + quarantined.
pub fn accounted(db: &mut Client, topic: &str) -> Result<i64> {
    let row = db.query_one(
        "SELECT coalesce(sum(ledgered + duplicates + quarantined), 0)::bigint FROM ledger_streams WHERE topic = $1",
        &[&topic],
    )?;
    Ok(row.get(0))
}

/// Waits until `expected` offsets are accounted for, or fails after `timeout`.
pub fn wait_accounted(db_url: &str, topic: &str, expected: i64, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let n = match Client::connect(db_url, NoTls) {
            Ok(mut c) => accounted(&mut c, topic).unwrap_or(-1),
            Err(_) => -1,
        };
        if n == expected {
            return Ok(());
        }
        if n > expected {
            bail!("{n} offsets accounted for, more than the {expected} produced");
        }
        if Instant::now() > deadline {
            bail!("only {n} of {expected} offsets accounted for after {timeout:?}{}", log_tail(topic));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The last lines the ingesters of `topic` wrote (see `spawn_ingest`), for failure messages.
pub fn log_tail(topic: &str) -> String {
    let path = repo_root().join("target/test-logs").join(format!("{topic}.log"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("\n--- last lines of {} ---\n{tail}", path.display())
}

pub fn stop(mut child: Child) -> Result<()> {
    let pid = child.id() as i32;
    // SIGTERM: the ingester finishes its batch and leaves the group.
    Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            bail!("ingester did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

pub fn sigkill(child: &mut Child) -> Result<()> {
    child.kill()?; // SIGKILL
    child.wait()?;
    Ok(())
}

/// The ledger's exact outcome must equal the generator's: GPU-seconds per tenant and SKU (decimal
/// equality), counts of ledgered, duplicate and quarantined messages by reason, every offset of
/// every partition accounted for exactly once, the hash chains intact and the hourly projection
/// equal to its rebuild from the log.
pub fn assert_exact(db_url: &str, topic: &str, totals: &Value) -> Result<()> {
    let mut db = connect(db_url);
    let messages = totals["messages"].as_i64().expect("messages");
    let good = totals["good"].as_i64().expect("good");
    let duplicates = totals["duplicates"].as_i64().expect("duplicates");

    let streams = store::read::stream_stats(&mut db, topic)?;
    let mut sum = (0i64, 0i64, 0i64);
    for s in &streams {
        let consumed = s.next_offset.unwrap_or(0);
        assert_eq!(
            consumed,
            s.ledgered + s.duplicates + s.quarantined,
            "partition {}: offsets 0..{consumed} must each be ledgered, duplicate or quarantined",
            s.partition
        );
        sum.0 += s.ledgered;
        sum.1 += s.duplicates;
        sum.2 += s.quarantined;
    }
    assert_eq!(sum.0 + sum.1 + sum.2, messages, "every produced message is accounted for");
    assert_eq!(sum.0, good, "ledgered events");
    assert_eq!(sum.1, duplicates, "duplicates");

    // Ledger rows are exactly the good events, each once, and their offsets are distinct.
    let row = db.query_one(
        "SELECT count(*), count(DISTINCT (tenant_id, event_id)), count(DISTINCT (stream_id, src_offset)) FROM ledger_events",
        &[],
    )?;
    let (rows, ids, offsets): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((rows, ids, offsets), (good, good, good), "ledger rows, distinct ids, distinct offsets");

    // Quarantine: one row per refused message, with the generator's reasons.
    let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
    for r in db.query("SELECT reason, count(*) FROM quarantine GROUP BY reason", &[])? {
        reasons.insert(r.get(0), r.get(1));
    }
    let expected: BTreeMap<String, i64> = totals["quarantined"]
        .as_object()
        .expect("quarantined")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().expect("count")))
        .collect();
    assert_eq!(reasons, expected, "quarantine reasons");
    let q: i64 = db.query_one("SELECT count(DISTINCT (stream_id, src_offset)) FROM quarantine", &[])?.get(0);
    assert_eq!(q, sum.2, "each quarantined offset once");

    // GPU-seconds per tenant and SKU, exactly, from the projection and from the raw rows.
    let want = domain::simulate::Totals::gpu_seconds_from_json(totals).expect("gpu_seconds by tenant and SKU");
    assert_eq!(store::read::totals_by_tenant_sku(&mut db)?, want, "projection totals equal the generator's");
    assert_eq!(store::read::ledger_totals_by_tenant_sku(&mut db)?, want, "ledger totals equal the generator's");

    for r in store::read::verify_chains(&mut db)? {
        assert_eq!(r.result, Ok(()), "hash chain of stream {}", r.stream_id);
    }
    assert_eq!(store::read::rebuild_hourly(&mut db)?, store::read::live_hourly(&mut db)?, "projection rebuild");
    // The auditors' replay of every projection (store::replay) agrees with the live ones too.
    let replay = store::replay::replay(&mut db, &store::replay::ReplayOptions::default(), &mut |_| {})?;
    assert_eq!(replay.differences_total(), 0, "audit replay differs from live: {:?}", replay.differences);
    assert_eq!(replay.usage_events, good as u64, "audit replay folds every ledgered usage event");
    Ok(())
}

/// The totals of two generator runs on one topic (different seeds, so different GPUs and ids).
pub fn merge_totals(a: &Value, b: &Value) -> Value {
    let n = |v: &Value, k: &str| v[k].as_i64().expect("count");
    let mut quarantined = serde_json::Map::new();
    for t in [a, b] {
        for (reason, count) in t["quarantined"].as_object().expect("quarantined") {
            let sum = quarantined.get(reason).and_then(Value::as_i64).unwrap_or(0) + count.as_i64().expect("count");
            quarantined.insert(reason.clone(), Value::from(sum));
        }
    }
    let mut seconds: std::collections::BTreeMap<String, std::collections::BTreeMap<String, rust_decimal::Decimal>> =
        Default::default();
    for t in [a, b] {
        for (tenant, by_sku) in domain::simulate::Totals::gpu_seconds_from_json(t).expect("gpu_seconds") {
            for (sku, d) in by_sku {
                *seconds.entry(tenant.clone()).or_default().entry(sku).or_default() += d;
            }
        }
    }
    let seconds: serde_json::Map<String, Value> = seconds
        .into_iter()
        .map(|(t, m)| (t, m.into_iter().map(|(s, d)| (s, Value::from(d.normalize().to_string()))).collect()))
        .collect();
    serde_json::json!({
        "messages": n(a, "messages") + n(b, "messages"),
        "good": n(a, "good") + n(b, "good"),
        "duplicates": n(a, "duplicates") + n(b, "duplicates"),
        "quarantined": quarantined,
        "gpu_seconds": seconds,
    })
}

/// Runs scripts/services.sh with a subcommand and its arguments (restart-pg, restart-kafka kill, ...).
pub fn services(args: &[&str]) -> Result<()> {
    let status = Command::new("bash").arg(repo_root().join("scripts/services.sh")).args(args).status()?;
    if !status.success() {
        bail!("services.sh {} failed", args.join(" "));
    }
    Ok(())
}

/// Tests that restart services or run long must not overlap each other.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Number of messages in a topic (sum of its partitions' high watermarks; topics here start at 0).
pub fn topic_messages(topic: &str) -> Result<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut total = 0;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            total += high - low;
        }
    }
    Ok(total)
}

/// Runs the `gpuledger` binary with these arguments against a database; returns its stdout,
/// or its stderr as the error when it exits non-zero.
pub fn gpuledger(db_url: &str, args: &[&str]) -> Result<String> {
    run_against(bin(), db_url, args)
}

/// [`gpuledger`], of the `gpuledger-bench` binary.
pub fn gpuledger_bench(db_url: &str, args: &[&str]) -> Result<String> {
    run_against(bench_bin(), db_url, args)
}

fn run_against(program: PathBuf, db_url: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .envs(logins(db_url))
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .output()?;
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The official XRechnung validation (UBL 2.1 schema, EN 16931 and XRechnung 3.0 Schematron) of
/// `../shared/einvoice-rules/validate.py`, run by the venv of `scripts/python.sh`. Returns the
/// validator's report; fails when any file has a fatal or error finding, or the validator is missing.
pub fn validate_xrechnung(files: &[PathBuf]) -> Result<String> {
    let python = std::env::var("GPULEDGER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".services/venv/bin/python"));
    let rules = std::env::var("GPULEDGER_EINVOICE_RULES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("../shared/einvoice-rules"));
    let script = rules.join("validate.py");
    if !python.exists() || !script.exists() {
        bail!("validator missing: {} / {} (run scripts/python.sh)", python.display(), script.display());
    }
    if files.is_empty() {
        bail!("no files to validate");
    }
    let out = Command::new(&python).arg(&script).args(files).output()?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("XRechnung validation failed:\n{report}");
    }
    Ok(report)
}

/// `gpuledger serve` on a free local port (and `/metrics` on another), killed when dropped.
pub struct ApiServer {
    pub port: u16,
    pub metrics_port: u16,
    child: Child,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve_api(db: &str) -> ApiServer {
    serve_api_with(db, &[])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// [`serve_api`] with more arguments of `gpuledger serve` (limits, timeouts).
pub fn serve_api_with(db: &str, extra: &[&str]) -> ApiServer {
    let (port, metrics_port) = (free_port(), free_port());
    let child = Command::new(bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .args(extra)
        .envs(logins(db))
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = ApiServer { child, port, metrics_port };
    for _ in 0..100 {
        let up = |p: u16| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok();
        if up(port) && up(metrics_port) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("gpuledger serve did not start");
}

/// The server's `/metrics` (from its metrics listener).
pub fn metrics_text(s: &ApiServer) -> String {
    let req = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", s.metrics_port);
    let (status, head, body) = raw_http(s.metrics_port, req.as_bytes());
    assert_eq!(status, 200, "{head}");
    body
}

/// A request sent as these exact bytes (e.g. with a target no client library would send):
/// (status, the response's head, body).
pub fn raw_http(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(request).unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A plain HTTP/1.1 request without a body: (status, content type, body).
pub fn http(s: &ApiServer, method: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    http_with_body(s, method, path, token, None)
}

/// A plain HTTP/1.1 request with an optional JSON body: (status, content type, body).
pub fn http_with_body(
    s: &ApiServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> (u16, String, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let ctype = if json.is_some() { "Content-Type: application/json\r\n" } else { "" };
    let body = json.unwrap_or("");
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string))
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

fn python_with_lxml() -> Option<PathBuf> {
    let p = std::env::var("GPULEDGER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".services/venv/bin/python"));
    p.exists().then_some(p)
}

/// The column names of each table of an export's index.xml, in order, keyed `url:skip`. lxml
/// validates it against the DTD its DOCTYPE names, which must be gdpdu-01-09-2004.dtd and shipped
/// beside it (the export's own copy; compared with docs/gdpdu/'s). libxml2 refuses the official
/// text's `Media (Name, Command*, Table*, Command*, AcceptNoTables?)` as non-deterministic, so the
/// check uses the same language written deterministically, `(Name, Command*, (Table+, Command*)?,
/// AcceptNoTables?)` (no Table: the two Command* are one), and changes nothing else.
pub fn gdpdu_index_columns(index: &std::path::Path) -> Result<Vec<(String, Vec<String>)>> {
    let Some(py) = python_with_lxml() else { anyhow::bail!("python with lxml missing (scripts/python.sh)") };
    let shipped = index.with_file_name("gdpdu-01-09-2004.dtd");
    let ours = std::fs::read(repo_root().join("docs/gdpdu/gdpdu-01-09-2004.dtd"))?;
    if std::fs::read(&shipped).ok().as_deref() != Some(ours.as_slice()) {
        anyhow::bail!("{} is missing or not docs/gdpdu's copy", shipped.display());
    }
    let script = r#"
import sys, os, io
from lxml import etree
doc = etree.parse(sys.argv[1])
system = doc.docinfo.system_url
if system != "gdpdu-01-09-2004.dtd":
    print("DOCTYPE names", system); sys.exit(2)
text = open(os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), system), encoding="utf-8").read()
media = "<!ELEMENT Media (Name, Command*, Table*, Command*, AcceptNoTables?)>"
if text.count(media) != 1:
    print("not the official DTD's Media declaration"); sys.exit(2)
text = text.replace(media, "<!ELEMENT Media (Name, Command*, (Table+, Command*)?, AcceptNoTables?)>")
d = etree.DTD(io.StringIO(text))
if not d.validate(doc):
    print("DTD:", d.error_log.filter_from_errors()); sys.exit(2)
for t in doc.getroot().iter("Table"):
    cols = [c.findtext("Name") for c in t.find("VariableLength") if c.tag in ("VariablePrimaryKey", "VariableColumn")]
    print(t.findtext("URL") + "\t" + ",".join(cols) + "\t" + t.findtext("SkipNumBytes"))
"#;
    let out = Command::new(py).arg("-c").arg(script).arg(index).output()?;
    if !out.status.success() {
        anyhow::bail!("index.xml: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let url = f.next().unwrap_or_default().to_string();
            let cols: Vec<String> = f.next().unwrap_or_default().split(',').map(str::to_string).collect();
            let skip = f.next().unwrap_or_default().to_string();
            (format!("{url}:{skip}"), cols)
        })
        .collect())
}
