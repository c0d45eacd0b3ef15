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

use axum::routing::get;
use axum::Router;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;

mod auth;
mod body;
pub mod cache;
mod error;
mod limit;
mod metrics;
mod openapi;
mod pages;
mod routes;

pub use openapi::openapi_document;
pub use routes::usage::usage_sql;

use cache::UsageCache;
use limit::RateLimiter;
use metrics::Metrics;
use routes::{audit, finance, health, invoices, usage};

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
    })
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/usage/current", get(usage::usage_current))
        .route("/v1/invoices", get(invoices::list_invoices))
        .route("/v1/invoices/{number}", get(invoices::invoice_json))
        .route("/v1/invoices/{number}/xrechnung", get(invoices::invoice_xml))
        .route("/v1/invoices/{number}/csv", get(invoices::invoice_csv))
        .route("/v1/finance/budget", get(finance::finance_budget))
        .route("/v1/finance/periods/{period}/close", axum::routing::post(finance::finance_close))
        .route("/v1/finance/exports/{period}/{file}", get(finance::finance_export))
        .route("/v1/finance/reference", axum::routing::post(finance::finance_reference))
        .route("/v1/audit/events", get(audit::audit_events))
        .route("/v1/audit/verify", get(audit::audit_verify))
        .merge(pages::routes())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_MAX_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::record_metrics))
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
