//! `gpuledger serve`: the HTTP API. Tenants see their own usage and invoices and nothing else;
//! finance and auditors read across tenants (every such read is logged). Two walls: the tenant
//! comes from the bearer token, never from the URL; and the server logs in as `gpuledger_api`,
//! which reads tenants' rows only under row-level security with the wall opened by the token for
//! the transaction, so even a handler bug cannot read another tenant's rows. Finance's work
//! across tenants (close, exports, budget, reference loads, audit) runs on a second login,
//! `gpuledger_finance`; neither is a superuser or the owner (migration 0011). Errors are RFC 9457
//! problem details without database text.
//!
//! This file holds the state, the router and serving; `auth` the walls, `routes` the handlers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

mod access;
mod auth;
mod body;
pub mod cache;
mod error;
mod input;
mod limit;
mod metrics;
mod openapi;
mod pages;
mod routes;
mod server;
mod sink;

pub use openapi::openapi_document;
pub use routes::coverage::coverage_json;
pub use routes::usage::usage_sql;
pub use server::Limits;
pub use sink::EventIngest;

use cache::UsageCache;
use limit::RateLimiter;
use metrics::Metrics;
use routes::{audit, coverage, events, finance, health, invoices, usage};

/// The largest request body (reference data loads).
pub const BODY_MAX_BYTES: usize = 1024 * 1024;
/// Bytes of usage answers kept in memory (about 850 months of one tenant's hourly usage).
pub const USAGE_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pool: Pool,
    /// The API's login (`gpuledger_api`): the pool and the cache's LISTEN.
    database_url: String,
    /// Finance's login (`gpuledger_finance`), for [`auth::CrossTenant`].
    finance_url: String,
    brokers: String,
    metrics: Arc<Metrics>,
    limiter: Arc<RateLimiter>,
    /// One whole-log verification at a time (it reads every row).
    verifying: Arc<tokio::sync::Semaphore>,
    /// Answers to `GET /v1/usage`, dropped when the usage under them changes.
    cache: Arc<UsageCache>,
    /// `POST /v1/events`: the producer and the producers' event budget (see [`AppState::with_events`]).
    events: Option<Arc<Events>>,
    /// Producer tokens found valid a moment ago ([`auth::ProducerTokens`]).
    producers: Arc<auth::ProducerTokens>,
}

/// What `POST /v1/events` needs beside the database.
pub(crate) struct Events {
    sink: sink::EventSink,
    /// Events per second per producer token (burst: two seconds' worth).
    limiter: RateLimiter,
    /// The SKU catalogue events are judged with, as of the reference stream's head it was read at
    /// (the ingester's rule: `routes::events::catalogue`); before the first read, the initial
    /// catalogue, which every catalogue of the ledger contains.
    catalogue: tokio::sync::Mutex<(Option<Option<i64>>, Arc<domain::billing::catalogue::Catalogue>)>,
}

impl AppState {
    /// Takes usage events over HTTP (`POST /v1/events`) and produces them as `ingest` says;
    /// without this the route answers 503.
    pub fn with_events(mut self, ingest: EventIngest) -> anyhow::Result<AppState> {
        let limiter = RateLimiter::new(ingest.events_per_second, ingest.events_per_second.saturating_mul(2));
        let sink = sink::EventSink::new(ingest)?;
        let catalogue = tokio::sync::Mutex::new((None, Arc::new(domain::billing::catalogue::Catalogue::initial())));
        self.events = Some(Arc::new(Events { sink, limiter, catalogue }));
        Ok(self)
    }
}

/// The server's state: `database_url` logs in as `gpuledger_api`, `finance_url` as
/// `gpuledger_finance` (the command line checks both are unprivileged before serving).
pub fn state(database_url: &str, finance_url: &str, brokers: &str, pool_size: usize) -> anyhow::Result<AppState> {
    let pg: tokio_postgres::Config = database_url.parse()?;
    let mgr =
        Manager::from_config(pg, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let pool = Pool::builder(mgr).max_size(pool_size).build()?;
    Ok(AppState {
        pool,
        database_url: database_url.to_string(),
        finance_url: finance_url.to_string(),
        brokers: brokers.to_string(),
        metrics: Arc::new(Metrics::default()),
        limiter: Arc::new(RateLimiter::default()),
        verifying: Arc::new(tokio::sync::Semaphore::new(1)),
        cache: Arc::new(UsageCache::new(USAGE_CACHE_BYTES_MAX)),
        events: None,
        producers: Arc::default(),
    })
}

/// Every route of the API listener: its template and its handlers. The router is built from this
/// table, and the fuzz test probes every template in it ([`route_templates`]), so a new route is
/// probed without being listed twice.
fn route_table() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let mut t: Vec<(&'static str, MethodRouter<AppState>)> = vec![
        ("/healthz", get(health::healthz)),
        ("/readyz", get(health::readyz)),
        ("/openapi.json", get(openapi::openapi_json)),
        ("/v1/usage", get(usage::usage)),
        ("/v1/usage/current", get(usage::usage_current)),
        ("/v1/invoices", get(invoices::list_invoices)),
        ("/v1/invoices/{number}", get(invoices::invoice_json)),
        ("/v1/invoices/{number}/xrechnung", get(invoices::invoice_xml)),
        ("/v1/invoices/{number}/csv", get(invoices::invoice_csv)),
        ("/v1/finance/budget", get(finance::finance_budget)),
        ("/v1/finance/periods/{period}/close", post(finance::finance_close)),
        ("/v1/finance/exports/{period}/{file}", get(finance::finance_export)),
        ("/v1/finance/reference", post(finance::finance_reference)),
        ("/v1/finance/coverage", get(coverage::finance_coverage)),
        ("/v1/audit/events", get(audit::audit_events)),
        ("/v1/audit/verify", get(audit::audit_verify)),
        ("/v1/events", post(events::post_events)),
    ];
    t.extend(pages::routes());
    t
}

/// The templates of every route (for tests that walk them all).
pub fn route_templates() -> Vec<&'static str> {
    route_table().into_iter().map(|(path, _)| path).collect()
}

pub fn router(state: AppState, limits: Limits) -> Router {
    let mut r = Router::new();
    for (path, handlers) in route_table() {
        r = r.route(path, handlers);
    }
    with_layers(r, state, limits)
}

/// What wraps every route, innermost first: the body limit; the check of the request target
/// (control characters, broken UTF-8: a 400 before any handler); a handler's panic answered as a
/// 500 problem (a bug, logged; the last resort, not a way of refusing input); the request
/// timeout (503); the headers every answer carries (tenant data is never stored by a cache or
/// sniffed into another type); the access log, written once the status is known; metrics.
fn with_layers(r: Router<AppState>, state: AppState, limits: Limits) -> Router {
    r.layer(axum::extract::DefaultBodyLimit::max(BODY_MAX_BYTES))
        .layer(axum::middleware::from_fn(input::check_target))
        .layer(CatchPanicLayer::custom(error::panicked))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(axum::middleware::from_fn_with_state(state.clone(), access::record))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record_metrics))
        .with_state(state)
}

/// The metrics listener's router: `/metrics` only, apart from the API so that it is not public.
fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics::metrics)).with_state(state)
}

/// Serves the API on `listen` (and `/metrics` on `metrics_listen`, if given) until SIGTERM or
/// Ctrl-C. With `cache`, answers to `GET /v1/usage` are kept until the usage under them changes
/// (see [`cache`]).
pub async fn serve(
    listen: std::net::SocketAddr,
    metrics_listen: Option<std::net::SocketAddr>,
    state: AppState,
    cache: bool,
    limits: Limits,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let metrics_listener = match metrics_listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
        None => None,
    };
    if cache {
        tokio::spawn(cache::listen(state.database_url.clone(), state.cache.clone()));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tracing::info!(addr = %listener.local_addr()?, "serving");
    let metrics_task = match metrics_listener {
        Some(l) => {
            tracing::info!(addr = %l.local_addr()?, "serving /metrics");
            let app = metrics_router(state.clone());
            Some(tokio::spawn(server::run(l, app, Limits::default(), until_stopped())))
        }
        None => None,
    };
    let api = tokio::spawn(server::run(listener, router(state, limits), limits, until_stopped()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
    let _ = stop.send(true);
    api.await?;
    if let Some(t) = metrics_task {
        t.await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_handler_that_panics_still_answers_a_500_problem() {
        // The pool connects lazily: nothing here reaches a database.
        let s = state("postgres://nobody@127.0.0.1:1/none", "postgres://nobody@127.0.0.1:1/none", "127.0.0.1:1", 1)
            .unwrap();
        let boom = Router::new().route("/boom", get(|| async { panic!("boom") as &str }));
        let r = with_layers(boom, s, Limits::default())
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
