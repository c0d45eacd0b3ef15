//! `gpuledger serve`: the HTTP API. Tenants see their own usage and invoices and nothing else;
//! finance and auditors read across tenants (every such read is logged). Two walls: the tenant
//! comes from the bearer token, never from the URL; and every query runs as `gpuledger_api` under
//! row-level security with the token's tenant set for the transaction, so even a handler bug
//! cannot read another tenant's rows. Errors are RFC 9457 problem details without database text.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use domain::billing::invoice::InvoiceDoc;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use postgres as postgres_sync;

pub mod bench;
pub mod cache;
mod pages;

use cache::{UsageCache, UsageKey};
use hyper::body::Bytes;

/// Longest usage range one request may ask for, and for hourly granularity.
pub const RANGE_DAYS_MAX: i64 = 366;
pub const HOURLY_RANGE_DAYS_MAX: i64 = 31;
pub const PAGE_MAX: i64 = 500;
/// Largest export one request may fetch (bigger ones: `gpuledger invoices export`), and the
/// largest request body (reference data loads).
pub const EXPORT_MAX_BYTES: usize = 64 * 1024 * 1024;
pub const BODY_MAX_BYTES: usize = 1024 * 1024;
/// Most reference items one load may carry.
pub const LOAD_MAX_ITEMS: usize = 1000;
/// Bytes of usage answers kept in memory (about 850 months of one tenant's hourly usage).
pub const USAGE_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pool: Pool,
    database_url: String,
    brokers: String,
    metrics: Arc<Metrics>,
    limiter: Arc<RateLimiter>,
    /// One whole-log verification at a time (it reads every row).
    verifying: Arc<tokio::sync::Semaphore>,
    /// Answers to `GET /v1/usage`, dropped when the usage under them changes.
    cache: Arc<UsageCache>,
}

/// (method, route, status).
type RequestKey = (String, String, u16);
/// (count, total microseconds, cumulative histogram counts per bucket).
type RequestStats = (u64, u64, [u64; LATENCY_BUCKETS_MS.len()]);

#[derive(Default)]
struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, RequestStats>>,
}

/// Requests per token: a token bucket refilled at `RATE_PER_SECOND`, holding at most `RATE_BURST`.
pub const RATE_PER_SECOND: u64 = 100;
pub const RATE_BURST: u64 = 200;

#[derive(Default)]
struct RateLimiter {
    buckets: Mutex<BTreeMap<Uuid, (u64, Instant)>>,
}

impl RateLimiter {
    /// Takes one request from the token's bucket (tokens in thousandths, to refill smoothly).
    fn allow(&self, token: Uuid) -> bool {
        let mut b = self.buckets.lock().expect("rate lock");
        let now = Instant::now();
        let e = b.entry(token).or_insert((RATE_BURST * 1000, now));
        let refill = now.duration_since(e.1).as_millis() as u64 * RATE_PER_SECOND;
        e.0 = (e.0 + refill).min(RATE_BURST * 1000);
        e.1 = now;
        if e.0 >= 1000 {
            e.0 -= 1000;
            true
        } else {
            false
        }
    }
}

const LATENCY_BUCKETS_MS: [u64; 8] = [1, 5, 10, 25, 50, 100, 250, 1000];

pub fn state(database_url: &str, brokers: &str, pool_size: usize) -> anyhow::Result<AppState> {
    let pg: tokio_postgres::Config = database_url.parse()?;
    let mgr =
        Manager::from_config(pg, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(mgr).max_size(pool_size).build()?;
    Ok(AppState {
        pool,
        database_url: database_url.to_string(),
        brokers: brokers.to_string(),
        metrics: Arc::new(Metrics::default()),
        limiter: Arc::new(RateLimiter::default()),
        verifying: Arc::new(tokio::sync::Semaphore::new(1)),
        cache: Arc::new(UsageCache::new(USAGE_CACHE_BYTES_MAX)),
    })
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/usage", get(usage))
        .route("/v1/usage/current", get(usage_current))
        .route("/v1/invoices", get(list_invoices))
        .route("/v1/invoices/{number}", get(invoice_json))
        .route("/v1/invoices/{number}/xrechnung", get(invoice_xml))
        .route("/v1/invoices/{number}/csv", get(invoice_csv))
        .route("/v1/finance/budget", get(finance_budget))
        .route("/v1/finance/periods/{period}/close", axum::routing::post(finance_close))
        .route("/v1/finance/exports/{period}/{file}", get(finance_export))
        .route("/v1/finance/reference", axum::routing::post(finance_reference))
        .route("/v1/audit/events", get(audit_events))
        .route("/v1/audit/verify", get(audit_verify))
        .merge(pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_MAX_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_metrics))
        .with_state(state)
}

/// Serves until SIGTERM or Ctrl-C. With `cache`, answers to `GET /v1/usage` are kept until the
/// usage under them changes (see [`cache`]).
pub async fn serve(listen: std::net::SocketAddr, state: AppState, cache: bool) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    if cache {
        tokio::spawn(cache::listen(state.database_url.clone(), state.cache.clone()));
    }
    tracing::info!(addr = %listener.local_addr()?, "serving");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        })
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- errors

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError(status, detail.into())
    }
    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "no such object")
    }
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
}

fn bad_path(e: PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank".into(),
            title: self.0.canonical_reason().unwrap_or("error").into(),
            status: self.0.as_u16(),
            detail: self.1,
        };
        let mut r = (self.0, Json(body)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn internal<E: std::fmt::Display>(e: E) -> ApiError {
    // The cause goes to the log, never to the client.
    tracing::error!(error = %e, "request failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

// ---------------------------------------------------------------- walls

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Tenant,
    Finance,
    Auditor,
    Admin,
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: Uuid,
    pub role: Role,
    pub tenant: Option<String>,
}

type Client = deadpool_postgres::Object;

async fn db(state: &AppState) -> Result<Client, ApiError> {
    state.pool.get().await.map_err(internal)
}

/// Opens the request's transaction as `gpuledger_api` with its limits, authenticates the bearer
/// token and sets the tenant wall for the transaction.
async fn begin<'a>(
    state: &AppState,
    client: &'a mut Client,
    headers: &HeaderMap,
) -> Result<(deadpool_postgres::Transaction<'a>, Caller), ApiError> {
    let caller = authenticate(state, client, headers).await?;
    let tx = wall(client, &caller).await?;
    Ok((tx, caller))
}

/// Authenticates the bearer token (one statement, no transaction) and takes one request from
/// its rate budget.
async fn authenticate(state: &AppState, client: &Client, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
    let stmt = client
        .prepare_cached(
            "SELECT t.token_id, t.role, t.tenant_id, t.expires_at, r.token_id IS NOT NULL
               FROM api_tokens t LEFT JOIN api_token_revocations r USING (token_id) WHERE t.token_hash = $1",
        )
        .await
        .map_err(internal)?;
    let row = client.query_opt(&stmt, &[&store::tokens::hash_token(token)]).await.map_err(internal)?;
    let row = row.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
    let expires: DateTime<Utc> = row.get(3);
    if row.get::<_, bool>(4) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token was revoked"));
    }
    if expires <= Utc::now() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token has expired"));
    }
    let role = match row.get::<_, &str>(1) {
        "tenant" => Role::Tenant,
        "finance" => Role::Finance,
        "auditor" => Role::Auditor,
        _ => Role::Admin,
    };
    let caller = Caller { token_id: row.get(0), role, tenant: row.get(2) };
    if !state.limiter.allow(caller.token_id) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {RATE_PER_SECOND} requests per second per token"),
        ));
    }
    Ok(caller)
}

/// The wall for an authenticated caller: a transaction as `gpuledger_api` (no BYPASSRLS) with a
/// statement timeout, the caller's tenant (or the all-tenants scope of finance and auditors) set
/// for row-level security.
async fn wall<'a>(client: &'a mut Client, caller: &Caller) -> Result<deadpool_postgres::Transaction<'a>, ApiError> {
    let tx = client.transaction().await.map_err(internal)?;
    tx.batch_execute("SET LOCAL ROLE gpuledger_api; SET LOCAL statement_timeout = '5s'").await.map_err(internal)?;
    let (tenant, scope) = match caller.role {
        Role::Tenant => (caller.tenant.clone().unwrap_or_default(), "tenant"),
        _ => (String::new(), "all"),
    };
    tx.execute(
        "SELECT set_config('gpuledger.tenant', $1, true), set_config('gpuledger.scope', $2, true)",
        &[&tenant, &scope],
    )
    .await
    .map_err(internal)?;
    Ok(tx)
}

/// Finance and auditor reads go to the append-only access log, in the read's transaction.
async fn log_access(
    db: &impl deadpool_postgres::GenericClient,
    c: &Caller,
    method: &str,
    path: &str,
) -> Result<(), ApiError> {
    if matches!(c.role, Role::Finance | Role::Auditor | Role::Admin) {
        let role = format!("{:?}", c.role).to_lowercase();
        db.execute(
            "INSERT INTO access_log (at, token_id, role, tenant_id, method, path, status) VALUES (now(), $1, $2, $3, $4, $5, 200)",
            &[&c.token_id, &role, &c.tenant, &method, &path],
        )
        .await
        .map_err(internal)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- health and metrics

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub database: String,
    pub kafka: String,
}

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into(), database: "not checked".into(), kafka: "not checked".into() })
}

/// Ready when PostgreSQL answers a query and a Kafka broker accepts a connection.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(s): State<AppState>) -> Response {
    let database = match tokio::time::timeout(Duration::from_secs(2), async {
        let c = s.pool.get().await.map_err(|e| e.to_string())?;
        c.query_one("SELECT 1", &[]).await.map_err(|e| e.to_string())
    })
    .await
    {
        Ok(Ok(_)) => "ok".to_string(),
        _ => "unreachable".to_string(),
    };
    let broker = s.brokers.split(',').next().unwrap_or_default().to_string();
    let kafka = match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(broker)).await {
        Ok(Ok(_)) => "ok".to_string(),
        _ => "unreachable".to_string(),
    };
    let ok = database == "ok" && kafka == "ok";
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Health { status: if ok { "ready" } else { "not ready" }.into(), database, kafka })).into_response()
}

async fn record_metrics(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched".to_string(), |m| m.as_str().to_string());
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let micros = t0.elapsed().as_micros() as u64;
    let mut m = s.metrics.requests.lock().expect("metrics lock");
    let e = m.entry((method, route, resp.status().as_u16())).or_insert((0, 0, [0; LATENCY_BUCKETS_MS.len()]));
    e.0 += 1;
    e.1 += micros;
    for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
        if micros <= b * 1000 {
            e.2[i] += 1;
        }
    }
    resp
}

/// Prometheus text format: request counts and latencies; the ingester's counts per partition
/// (from the database, where every ingester reports).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str("# HELP gpuledger_http_requests_total HTTP requests by method, route and status.\n# TYPE gpuledger_http_requests_total counter\n");
    let snapshot = s.metrics.requests.lock().expect("metrics lock").clone();
    for ((m, r, st), (n, _, _)) in &snapshot {
        let _ = writeln!(out, "gpuledger_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {n}");
    }
    out.push_str("# HELP gpuledger_http_request_duration_seconds Request latency.\n# TYPE gpuledger_http_request_duration_seconds histogram\n");
    for ((m, r, st), (n, micros, buckets)) in &snapshot {
        let labels = format!("method=\"{m}\",route=\"{r}\",status=\"{st}\"");
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "gpuledger_http_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {}",
                Decimal::new(*b as i64, 3),
                buckets[i]
            );
        }
        let _ = writeln!(out, "gpuledger_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "gpuledger_http_request_duration_seconds_sum{{{labels}}} {}",
            Decimal::new(*micros as i64, 6)
        );
        let _ = writeln!(out, "gpuledger_http_request_duration_seconds_count{{{labels}}} {n}");
    }
    let (entries, bytes) = s.cache.size();
    let _ = write!(
        out,
        "# HELP gpuledger_usage_cache_live Whether the usage response cache is in use (its listener is connected).\n\
         # TYPE gpuledger_usage_cache_live gauge\ngpuledger_usage_cache_live {}\n\
         # HELP gpuledger_usage_cache_requests_total Usage answers looked up in the cache, by result.\n\
         # TYPE gpuledger_usage_cache_requests_total counter\n\
         gpuledger_usage_cache_requests_total{{result=\"hit\"}} {}\ngpuledger_usage_cache_requests_total{{result=\"miss\"}} {}\n\
         # HELP gpuledger_usage_cache_changes_total Usage changes notified by the database.\n\
         # TYPE gpuledger_usage_cache_changes_total counter\ngpuledger_usage_cache_changes_total {}\n\
         # HELP gpuledger_usage_cache_entries Usage answers held.\n# TYPE gpuledger_usage_cache_entries gauge\ngpuledger_usage_cache_entries {entries}\n\
         # HELP gpuledger_usage_cache_bytes Bytes of usage answers held.\n# TYPE gpuledger_usage_cache_bytes gauge\ngpuledger_usage_cache_bytes {bytes}\n",
        u8::from(s.cache.is_live()),
        s.cache.hits.load(std::sync::atomic::Ordering::Relaxed),
        s.cache.misses.load(std::sync::atomic::Ordering::Relaxed),
        s.cache.invalidations.load(std::sync::atomic::Ordering::Relaxed),
    );
    if let Ok(c) = s.pool.get().await {
        if let Ok(rows) = c
            .query("SELECT topic, kafka_partition, ledgered, duplicates, quarantined, coalesce(next_offset, 0) FROM ledger_streams ORDER BY stream_id", &[])
            .await
        {
            out.push_str("# HELP gpuledger_ingest_events_total Offsets accounted for per stream, by outcome.\n# TYPE gpuledger_ingest_events_total counter\n");
            for r in &rows {
                let (t, p): (String, i32) = (r.get(0), r.get(1));
                for (i, outcome) in [(2, "ledgered"), (3, "duplicate"), (4, "quarantined")] {
                    let _ = writeln!(out, "gpuledger_ingest_events_total{{topic=\"{t}\",partition=\"{p}\",outcome=\"{outcome}\"}} {}", r.get::<_, i64>(i));
                }
            }
            out.push_str("# HELP gpuledger_ingest_next_offset Next Kafka offset to consume per partition.\n# TYPE gpuledger_ingest_next_offset gauge\n");
            for r in &rows {
                let (t, p): (String, i32) = (r.get(0), r.get(1));
                let _ = writeln!(out, "gpuledger_ingest_next_offset{{topic=\"{t}\",partition=\"{p}\"}} {}", r.get::<_, i64>(5));
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

// ---------------------------------------------------------------- usage

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start of the range (RFC 3339), inclusive.
    pub from: DateTime<Utc>,
    /// End of the range (RFC 3339), exclusive. At most 366 days after `from` (31 for hours).
    pub to: DateTime<Utc>,
    /// `hour`, `day` or `month` (days and months in Europe/Berlin).
    pub granularity: Option<String>,
    /// Comma-separated: `sku`, `project`, both or neither.
    pub group_by: Option<String>,
    /// Finance and auditors: the tenant to read. Ignored for tenant tokens (their tenant is the token's).
    pub tenant: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    pub sku: Option<String>,
    pub project: Option<String>,
    /// Exact decimal GPU-seconds, as a string.
    pub gpu_seconds: String,
    /// GPU-hours to 6 decimals, as a string.
    pub gpu_hours: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse {
    pub tenant: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: String,
    pub rows: Vec<UsageRow>,
}

#[utoipa::path(get, path = "/v1/usage", params(UsageQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 200, body = UsageResponse), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn usage(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let client = db(&s).await?;
    let (caller, key) = usage_request(&s, &client, &headers, &q).await?;
    if let Some(body) = s.cache.get(&key) {
        // A paired check: an answer is only ever served to the tenant it was computed for.
        if caller.role == Role::Tenant && caller.tenant.as_deref() != Some(key.tenant.as_str()) {
            return Err(internal("a cached answer was keyed to another tenant"));
        }
        log_access(&client, &caller, "GET", "/v1/usage").await?;
        return Ok(json_bytes(body));
    }
    let ticket = s.cache.ticket(&key.tenant);
    let answer = usage_read(client, &caller, &key).await?;
    let body = Bytes::from(serde_json::to_vec(&answer).map_err(internal)?);
    s.cache.put(key, ticket, body.clone());
    Ok(json_bytes(body))
}

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// `GET /v1/usage` without the cache, for the web pages.
async fn usage_uncached(s: &AppState, headers: &HeaderMap, q: &UsageQuery) -> Result<UsageResponse, ApiError> {
    let client = db(s).await?;
    let (caller, key) = usage_request(s, &client, headers, q).await?;
    usage_read(client, &caller, &key).await
}

/// Checks a usage query (before the token, so a malformed query is a 400 whoever asks),
/// authenticates the caller and names the tenant: a tenant token's own, never the URL's.
async fn usage_request(
    s: &AppState,
    client: &Client,
    headers: &HeaderMap,
    q: &UsageQuery,
) -> Result<(Caller, UsageKey), ApiError> {
    let granularity = q.granularity.clone().unwrap_or_else(|| "day".into());
    if !["hour", "day", "month"].contains(&granularity.as_str()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "granularity is hour, day or month"));
    }
    if q.to <= q.from {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "`to` must be after `from`"));
    }
    let days = (q.to - q.from).num_days();
    let max = if granularity == "hour" { HOURLY_RANGE_DAYS_MAX } else { RANGE_DAYS_MAX };
    if days > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("at most {max} days per request at this granularity"),
        ));
    }
    let groups: Vec<&str> = q.group_by.as_deref().unwrap_or("").split(',').filter(|g| !g.is_empty()).collect();
    if groups.iter().any(|g| !["sku", "project"].contains(g)) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "group_by takes sku and/or project"));
    }
    let (by_sku, by_project) = (groups.contains(&"sku"), groups.contains(&"project"));
    let caller = authenticate(s, client, headers).await?;
    let tenant = match caller.role {
        Role::Tenant => caller.tenant.clone().unwrap_or_default(),
        _ => q.tenant.clone().ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "name the tenant (?tenant=)"))?,
    };
    Ok((caller, UsageKey { tenant, granularity, by_sku, by_project, from: q.from, to: q.to }))
}

/// Reads one usage answer in a transaction behind the tenant wall.
async fn usage_read(mut client: Client, caller: &Caller, key: &UsageKey) -> Result<UsageResponse, ApiError> {
    let tx = wall(&mut client, caller).await?;
    let sql = usage_sql(&key.granularity, key.by_sku, key.by_project);
    let rows = tx.query(&sql, &[&key.tenant, &key.from, &key.to]).await.map_err(internal)?;
    log_access(&tx, caller, "GET", "/v1/usage").await?;
    tx.commit().await.map_err(internal)?;
    let rows = rows
        .iter()
        .map(|r| {
            let secs: Decimal = r.get(3);
            UsageRow {
                start: r.get(0),
                sku: r.get(1),
                project: r.get(2),
                gpu_seconds: secs.normalize().to_string(),
                gpu_hours: domain::billing::dec::fixed(secs / Decimal::from(3600), 6).to_string(),
            }
        })
        .collect();
    Ok(UsageResponse {
        tenant: key.tenant.clone(),
        from: key.from,
        to: key.to,
        granularity: key.granularity.clone(),
        rows,
    })
}

/// The usage query (granularity is `hour`, `day` or `month`, checked by the caller); shared with
/// the benchmark's floor so both run the same SQL. Parameters: tenant, from, to.
pub fn usage_sql(granularity: &str, by_sku: bool, by_project: bool) -> String {
    let bucket = if granularity == "hour" {
        "hour".to_string()
    } else {
        format!("date_trunc('{granularity}', hour AT TIME ZONE 'Europe/Berlin') AT TIME ZONE 'Europe/Berlin'")
    };
    let sku = if by_sku { "gpu_sku" } else { "NULL::text" };
    let project = if by_project { "project" } else { "NULL::text" };
    format!(
        "SELECT {bucket} AS b, {sku} AS s, {project} AS p, sum(gpu_seconds) FROM usage_hourly
          WHERE tenant_id = $1 AND hour >= $2 AND hour < $3 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EstimateLine {
    pub description: String,
    pub gpu_hours: String,
    pub unit_price: String,
    pub net: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentMonth {
    pub tenant: String,
    /// The Berlin month so far (YYYY-MM).
    pub period: String,
    pub as_of: DateTime<Utc>,
    /// Not yet invoiced: rated as the close would rate it with the price lists and contracts in
    /// force now (a minimum charge counts in full).
    pub lines: Vec<EstimateLine>,
    pub net_total: String,
}

#[utoipa::path(get, path = "/v1/usage/current", security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = CurrentMonth), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn usage_current(State(s): State<AppState>, headers: HeaderMap) -> Result<Json<CurrentMonth>, ApiError> {
    let now = Utc::now();
    let period = domain::billing::Period::of(now);
    let mut client = db(&s).await?;
    let (tx, caller) = begin(&s, &mut client, &headers).await?;
    let tenant = match (caller.role, caller.tenant.clone()) {
        (Role::Tenant, Some(t)) => t,
        _ => return Err(ApiError::new(StatusCode::FORBIDDEN, "the current month is shown to a tenant's own token")),
    };
    let rows = tx
        .query(
            "SELECT gpu_sku, project, hour, gpu_seconds FROM usage_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3",
            &[&tenant, &period.start(), &period.end()],
        )
        .await
        .map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    let usage: Vec<domain::billing::rating::UsageRow> = rows
        .iter()
        .map(|r| domain::billing::rating::UsageRow {
            sku: r.get(0),
            project: r.get(1),
            hour: r.get(2),
            gpu_seconds: r.get(3),
        })
        .collect();
    let refs = blocking(&s, store::billing::reference_state).await?;
    let by_project = refs.profiles.get(&tenant).is_some_and(|(p, _)| p.lines_by_project);
    let rated = domain::billing::rating::rate_period(&tenant, period, &usage, &refs, by_project)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let mut net_total = Decimal::ZERO;
    let lines = rated
        .iter()
        .enumerate()
        .map(|(i, (key, r))| {
            let l = domain::billing::invoice::make_line(i as u32 + 1, period, false, "", key, r.gpu_seconds, r.net());
            net_total += l.net;
            EstimateLine {
                description: l.description,
                gpu_hours: l.quantity.to_string(),
                unit_price: l.unit_price.to_string(),
                net: l.net.to_string(),
            }
        })
        .collect();
    Ok(Json(CurrentMonth {
        tenant,
        period: period.to_string(),
        as_of: now,
        lines,
        net_total: domain::billing::dec::cents(net_total).to_string(),
    }))
}

// ---------------------------------------------------------------- invoices

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    /// Only documents of this period (YYYY-MM).
    pub period: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvoiceSummary {
    pub number: String,
    pub type_code: i16,
    pub tenant_id: String,
    pub period: String,
    pub issued_at: DateTime<Utc>,
    pub net_total: String,
    pub vat_total: String,
    pub gross_total: String,
}

#[utoipa::path(get, path = "/v1/invoices", params(InvoiceQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = [InvoiceSummary]), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn list_invoices(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<InvoiceQuery>, QueryRejection>,
) -> Result<Json<Vec<InvoiceSummary>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    if let Some(p) = &q.period {
        domain::billing::Period::parse(p).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    }
    let mut client = db(&s).await?;
    let (tx, caller) = begin(&s, &mut client, &headers).await?;
    let rows = tx
        .query(
            "SELECT number, type_code, tenant_id, period, issued_at, net_total, vat_total, gross_total FROM invoices
              WHERE ($1::text IS NULL OR period = $1) ORDER BY issued_at, number LIMIT $2",
            &[&q.period, &PAGE_MAX],
        )
        .await
        .map_err(internal)?;
    log_access(&tx, &caller, "GET", "/v1/invoices").await?;
    tx.commit().await.map_err(internal)?;
    Ok(Json(
        rows.iter()
            .map(|r| InvoiceSummary {
                number: r.get(0),
                type_code: r.get(1),
                tenant_id: r.get(2),
                period: r.get(3),
                issued_at: r.get(4),
                net_total: r.get::<_, Decimal>(5).to_string(),
                vat_total: r.get::<_, Decimal>(6).to_string(),
                gross_total: r.get::<_, Decimal>(7).to_string(),
            })
            .collect(),
    ))
}

/// One document, through both walls: the invoice index and the ledger row are tenant-walled.
async fn document(s: &AppState, headers: &HeaderMap, number: &str, path: &str) -> Result<InvoiceDoc, ApiError> {
    if number.len() > 40 {
        return Err(ApiError::not_found());
    }
    let mut client = db(s).await?;
    let (tx, caller) = begin(s, &mut client, headers).await?;
    let row = tx
        .query_opt(
            "SELECT e.payload FROM invoices i JOIN api_ledger_events e ON e.stream_id = i.stream_id AND e.stream_pos = i.stream_pos
              WHERE i.number = $1 AND e.kind = 'invoice.issued'",
            &[&number],
        )
        .await
        .map_err(internal)?;
    let row = row.ok_or_else(ApiError::not_found)?;
    log_access(&tx, &caller, "GET", path).await?;
    tx.commit().await.map_err(internal)?;
    let payload: serde_json::Value = row.get(0);
    InvoiceDoc::from_json(&payload["data"]).map_err(internal)
}

#[utoipa::path(get, path = "/v1/invoices/{number}", params(("number" = String, Path, description = "Invoice or credit note number")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "The issued document (canonical JSON)", body = Object), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn invoice_json(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(number) = number.map_err(bad_path)?;
    Ok(Json(document(&s, &headers, &number, "/v1/invoices/{number}").await?.to_json()))
}

#[utoipa::path(get, path = "/v1/invoices/{number}/xrechnung", params(("number" = String, Path, description = "Invoice or credit note number")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "XRechnung 3.0 UBL", content_type = "application/xml"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn invoice_xml(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(number) = number.map_err(bad_path)?;
    let d = document(&s, &headers, &number, "/v1/invoices/{number}/xrechnung").await?;
    Ok(([(header::CONTENT_TYPE, "application/xml")], domain::billing::ubl::xrechnung(&d)).into_response())
}

#[utoipa::path(get, path = "/v1/invoices/{number}/csv", params(("number" = String, Path, description = "Invoice or credit note number")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "One row per line", content_type = "text/csv"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn invoice_csv(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(number) = number.map_err(bad_path)?;
    let d = document(&s, &headers, &number, "/v1/invoices/{number}/csv").await?;
    Ok(([(header::CONTENT_TYPE, "text/csv")], domain::billing::export::csv(std::slice::from_ref(&d))).into_response())
}

// ---------------------------------------------------------------- finance and auditors

/// Authenticates, checks the role (403 otherwise) and logs the access; the transaction ends here.
async fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
    method: &str,
    path: &str,
) -> Result<Caller, ApiError> {
    let mut client = db(s).await?;
    let (tx, caller) = begin(s, &mut client, headers).await?;
    if !roles.contains(&caller.role) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this route is not open to your role"));
    }
    log_access(&tx, &caller, method, path).await?;
    tx.commit().await.map_err(internal)?;
    Ok(caller)
}

/// Runs a store (blocking) call on its own connection.
async fn blocking<T: Send + 'static>(
    s: &AppState,
    f: impl FnOnce(&mut postgres_sync::Client) -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let url = s.database_url.clone();
    tokio::task::spawn_blocking(move || {
        let mut c = store::connect(&url)?;
        f(&mut c)
    })
    .await
    .map_err(internal)?
    .map_err(|e| match e {
        store::StoreError::Refused(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        other => internal(other),
    })
}

const FINANCE: &[Role] = &[Role::Finance, Role::Admin];
const READERS: &[Role] = &[Role::Finance, Role::Auditor, Role::Admin];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BudgetQuery {
    /// The report's date (YYYY-MM-DD, default today in Berlin).
    pub as_of: Option<chrono::NaiveDate>,
}

#[utoipa::path(get, path = "/v1/finance/budget", params(BudgetQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "The budget report", body = Object), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn finance_budget(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<BudgetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    authorize(&s, &headers, READERS, "GET", "/v1/finance/budget").await?;
    let as_of = q.as_of.unwrap_or_else(|| domain::billing::period::berlin_date(Utc::now()));
    let r = blocking(&s, move |c| store::budget::budget_report(c, as_of)).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], r.to_json()).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CloseResult {
    pub period: String,
    pub already_closed: bool,
    pub documents: Vec<InvoiceSummary>,
}

#[utoipa::path(post, path = "/v1/finance/periods/{period}/close", params(("period" = String, Path, description = "YYYY-MM")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = CloseResult), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn finance_close(
    State(s): State<AppState>,
    headers: HeaderMap,
    period: Result<Path<String>, PathRejection>,
) -> Result<Json<CloseResult>, ApiError> {
    let Path(period) = period.map_err(bad_path)?;
    authorize(&s, &headers, FINANCE, "POST", "/v1/finance/periods/{period}/close").await?;
    let p = domain::billing::Period::parse(&period).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let out = blocking(&s, move |c| store::billing::close_period(c, p, Utc::now())).await?;
    Ok(Json(CloseResult {
        period: p.to_string(),
        already_closed: out.already_closed,
        documents: out
            .documents
            .iter()
            .map(|d| InvoiceSummary {
                number: d.number.clone(),
                type_code: d.type_code as i16,
                tenant_id: d.tenant_id.clone(),
                period: d.period.to_string(),
                issued_at: d.issued_at,
                net_total: d.net_total.to_string(),
                vat_total: d.vat_total.to_string(),
                gross_total: d.gross_total.to_string(),
            })
            .collect(),
    }))
}

/// Exports of a close: `invoices.csv`, `invoices.json`, `sap-journal.csv`, `focus-TENANT.csv`.
#[utoipa::path(get, path = "/v1/finance/exports/{period}/{file}",
    params(("period" = String, Path, description = "YYYY-MM"), ("file" = String, Path, description = "invoices.csv, invoices.json, sap-journal.csv or focus-TENANT.csv")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "The file"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn finance_export(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((period, file)) = path.map_err(bad_path)?;
    authorize(&s, &headers, READERS, "GET", "/v1/finance/exports/{period}/{file}").await?;
    let p = domain::billing::Period::parse(&period).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let (ctype, body): (&str, Vec<u8>) = match file.as_str() {
        "invoices.csv" => (
            "text/csv",
            domain::billing::export::csv(&blocking(&s, move |c| store::billing::documents(c, Some(p), None)).await?),
        ),
        "invoices.json" => (
            "application/json",
            domain::billing::export::json(&blocking(&s, move |c| store::billing::documents(c, Some(p), None)).await?),
        ),
        "sap-journal.csv" => {
            let lines = blocking(&s, move |c| store::budget::sap_journal(c, p)).await?;
            ("text/csv", domain::budget::sap::journal_csv(&lines))
        }
        f => {
            let tenant = f
                .strip_prefix("focus-")
                .and_then(|t| t.strip_suffix(".csv"))
                .filter(|t| domain::usage::is_valid_tenant_id(t))
                .ok_or_else(ApiError::not_found)?
                .to_string();
            let docs = blocking(&s, move |c| store::billing::documents(c, Some(p), Some(&tenant))).await?;
            if docs.is_empty() {
                return Err(ApiError::not_found());
            }
            ("text/csv", domain::billing::focus::focus_csv(&docs, p))
        }
    };
    if body.len() > EXPORT_MAX_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the export is larger than {EXPORT_MAX_BYTES} bytes; run `gpuledger invoices export` instead"),
        ));
    }
    Ok(([(header::CONTENT_TYPE, ctype)], body).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoadedItem {
    pub event_id: Uuid,
    pub kind: String,
    /// False when the same event was already in the ledger (a load is idempotent).
    pub new: bool,
}

/// Loads reference data: price lists, contracts, billing profiles, the seller, usage
/// adjustments. The body is a JSON array of `{"kind", "data", "event_id"?}` items, as the files
/// of `gpuledger reference load`; the whole load is refused (nothing written) if one item is.
#[utoipa::path(post, path = "/v1/finance/reference", security(("bearer" = [])),
    request_body(content = Vec<Object>, description = "Reference items `{kind, data, event_id?}`", content_type = "application/json"),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = [LoadedItem]), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn finance_reference(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<Vec<serde_json::Value>>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<LoadedItem>>, ApiError> {
    authorize(&s, &headers, FINANCE, "POST", "/v1/finance/reference").await?;
    let Json(items) = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if items.is_empty() || items.len() > LOAD_MAX_ITEMS {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("send 1 to {LOAD_MAX_ITEMS} items")));
    }
    let inputs = items
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<domain::billing::reference::ReferenceInput>(v).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("item {}: expected {{\"kind\", \"data\", \"event_id\"?}}: {e}", i + 1),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let loaded = blocking(&s, move |c| store::billing::load_reference(c, &inputs, Utc::now())).await?;
    Ok(Json(
        loaded.into_iter().map(|l| LoadedItem { event_id: l.event_id, kind: l.kind.to_string(), new: l.new }).collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with a sequence number greater than this (default 0).
    pub after: Option<i64>,
    /// Page size, at most 500 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEvent {
    pub seq: i64,
    pub stream_id: i32,
    pub stream_pos: i64,
    pub kind: String,
    pub version: i16,
    pub tenant_id: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub src_offset: Option<i64>,
    /// SHA-256 chain hash, hex.
    pub hash: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<LedgerEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

#[utoipa::path(get, path = "/v1/audit/events", params(EventsQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = EventsPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn audit_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("limit is 1 to {PAGE_MAX}")));
    }
    let mut client = db(&s).await?;
    let (tx, caller) = begin(&s, &mut client, &headers).await?;
    if !matches!(caller.role, Role::Auditor | Role::Admin) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this route is not open to your role"));
    }
    let sql = format!(
        "SELECT seq, stream_id, stream_pos, kind, version, tenant_id, event_id, occurred_at, recorded_at, src_offset, hash, {}
           FROM api_ledger_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        store::ledger_row::content_columns("")
    );
    let rows = tx.query(&sql, &[&q.after.unwrap_or(0), &limit]).await.map_err(internal)?;
    log_access(&tx, &caller, "GET", "/v1/audit/events").await?;
    tx.commit().await.map_err(internal)?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let tenant: String = r.get(5);
        let id = store::ledger_row::Identity { event_id: r.get(6), tenant_id: &tenant, occurred_at: r.get(7) };
        let payload = store::ledger_row::content(r, 11, id).map_err(internal)?.payload_json();
        events.push(LedgerEvent {
            seq: r.get(0),
            stream_id: r.get(1),
            stream_pos: r.get(2),
            kind: r.get(3),
            version: r.get(4),
            tenant_id: r.get(5),
            event_id: r.get(6),
            occurred_at: r.get(7),
            recorded_at: r.get(8),
            src_offset: r.get(9),
            hash: r.get::<_, Vec<u8>>(10).iter().map(|b| format!("{b:02x}")).collect(),
            payload,
        });
    }
    let next_after = (events.len() as i64 == limit).then(|| events.last().map(|e| e.seq)).flatten();
    Ok(Json(EventsPage { events, next_after }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// A checkpoint fingerprint kept outside the database (as printed by `gpuledger audit checkpoint`).
    pub receipt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Break {
    pub seq: Option<i64>,
    pub stream_id: i32,
    /// `topic/partition` of the stream.
    pub stream: String,
    pub stream_pos: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamVerdict {
    pub stream_id: i32,
    pub stream: String,
    pub rows: i64,
    pub intact: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    /// True when every chain, head, counter, checkpoint and receipt agrees with the rows.
    pub intact: bool,
    pub rows: i64,
    pub streams: Vec<StreamVerdict>,
    pub checkpoints: usize,
    pub receipt_found: Option<bool>,
    /// Every break, the first one first.
    pub breaks: Vec<Break>,
}

/// `gpuledger audit verify` over HTTP, for auditors: walks every hash chain of the log.
#[utoipa::path(get, path = "/v1/audit/verify", params(VerifyQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = Verification), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn audit_verify(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<VerifyQuery>, QueryRejection>,
) -> Result<Json<Verification>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let receipts = match q.receipt.as_deref() {
        Some(r) => {
            vec![domain::audit::Receipt::parse(r).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?]
        }
        None => vec![],
    };
    authorize(&s, &headers, &[Role::Auditor, Role::Admin], "GET", "/v1/audit/verify").await?;
    let _permit = s.verifying.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "a verification is already running; try again when it is done")
    })?;
    let has_receipt = !receipts.is_empty();
    let r = blocking(&s, move |c| store::audit::verify_log(c, &receipts)).await?;
    let breaks: Vec<Break> = r
        .breaks()
        .into_iter()
        .map(|b| Break {
            seq: b.seq,
            stream_id: b.stream_id,
            stream: b.stream,
            stream_pos: b.stream_pos,
            reason: b.reason,
        })
        .collect();
    Ok(Json(Verification {
        intact: breaks.is_empty(),
        rows: r.rows(),
        streams: r
            .streams
            .iter()
            .map(|c| StreamVerdict {
                stream_id: c.stream.stream_id,
                stream: c.stream.name(),
                rows: c.rows,
                intact: c.broken.is_none(),
            })
            .collect(),
        checkpoints: r.checkpoints.len(),
        receipt_found: has_receipt.then(|| r.receipts.iter().all(|x| x.found.is_some())),
        breaks,
    }))
}

// ---------------------------------------------------------------- OpenAPI

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "gpuledger", description = "Metering and billing ledger of a sovereign GPU cloud: usage, invoices, health."),
    paths(healthz, readyz, metrics, usage, usage_current, list_invoices, invoice_json, invoice_xml, invoice_csv,
          finance_budget, finance_close, finance_export, finance_reference, audit_events, audit_verify),
    components(schemas(Problem, Health, UsageRow, UsageResponse, EstimateLine, CurrentMonth, InvoiceSummary, CloseResult, LoadedItem, LedgerEvent, EventsPage, Verification, StreamVerdict, Break)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The OpenAPI 3.1 document, pretty-printed (the committed `schemas/openapi.json`).
pub fn openapi_document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut s = doc.to_pretty_json().expect("openapi serializes");
    s.push('\n');
    s
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_document()).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/openapi.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let current = super::openapi_document();
        assert!(
            committed == current,
            "schemas/openapi.json differs from the code; regenerate it: target/release/gpuledger openapi > schemas/openapi.json"
        );
        let v: serde_json::Value = serde_json::from_str(&current).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
    }
}
