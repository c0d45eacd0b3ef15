//! A tenant's usage: `GET /v1/usage` (hours, days or months of GPU time, kept in the usage cache)
//! and `GET /v1/usage/current` (this month so far, rated as the close would rate it).

use crate::auth::{Caller, CrossTenant, Role, TokenLookup};
use crate::cache::UsageKey;
use crate::error::{bad_query, internal, ApiError, Problem};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::{GpuHours, Money, UnitPrice};
use hyper::body::Bytes;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Longest usage range one request may ask for, and for hourly granularity.
pub const RANGE_DAYS_MAX: i64 = 366;
pub const HOURLY_RANGE_DAYS_MAX: i64 = 31;

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
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub gpu_seconds: Decimal,
    /// GPU-hours to 6 decimals, as a string.
    #[schema(value_type = String)]
    pub gpu_hours: GpuHours,
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
pub(crate) async fn usage(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let client = TokenLookup::get(&s).await?;
    let (caller, key) = usage_request(&s, &client, &headers, &q).await?;
    if let Some(body) = s.cache.get(&key) {
        // A paired check: an answer is only ever served to the tenant it was computed for.
        if caller.role == Role::Tenant && caller.tenant.as_deref() != Some(key.tenant.as_str()) {
            return Err(internal("a cached answer was keyed to another tenant"));
        }
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
pub(crate) async fn usage_uncached(
    s: &AppState,
    headers: &HeaderMap,
    q: &UsageQuery,
) -> Result<UsageResponse, ApiError> {
    let client = TokenLookup::get(s).await?;
    let (caller, key) = usage_request(s, &client, headers, q).await?;
    usage_read(client, &caller, &key).await
}

/// Checks a usage query (before the token, so a malformed query is a 400 whoever asks),
/// authenticates the caller and names the tenant: a tenant token's own, never the URL's.
async fn usage_request(
    s: &AppState,
    client: &TokenLookup,
    headers: &HeaderMap,
    q: &UsageQuery,
) -> Result<(Caller, UsageKey), ApiError> {
    let granularity = q.granularity.clone().unwrap_or_else(|| "day".into());
    if !["hour", "day", "month"].contains(&granularity.as_str()) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "granularity is hour, day or month"));
    }
    for t in [q.from, q.to] {
        domain::billing::period::check_instant(t).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
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
    let caller = client.authenticate(s, headers).await?;
    let tenant = match caller.role {
        Role::Tenant => caller.tenant.clone().unwrap_or_default(),
        _ => q.tenant.clone().ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "name the tenant (?tenant=)"))?,
    };
    if !domain::usage::is_valid_tenant_id(&tenant) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "not a tenant id"));
    }
    Ok((caller, UsageKey { tenant, granularity, by_sku, by_project, from: q.from, to: q.to }))
}

/// Reads one usage answer in a transaction behind the tenant wall.
async fn usage_read(mut client: TokenLookup, caller: &Caller, key: &UsageKey) -> Result<UsageResponse, ApiError> {
    let tx = client.wall(caller).await?;
    // A tenant named in the query (finance, auditors) must be one the ledger knows: an unknown
    // one is a 404, and so never reaches the cache.
    if caller.role != Role::Tenant {
        let known = tx.query_opt("SELECT gpuledger_tenant_known($1)", &[&key.tenant]).await?;
        if !known.is_some_and(|r| r.get::<_, bool>(0)) {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no such tenant"));
        }
    }
    let sql = usage_sql(&key.granularity, key.by_sku, key.by_project);
    let rows = tx.query(&sql, &[&key.tenant, &key.from, &key.to]).await?;
    tx.commit().await?;
    let rows = rows
        .iter()
        .map(|r| {
            let secs: Decimal = r.get(3);
            UsageRow {
                start: r.get(0),
                sku: r.get(1),
                project: r.get(2),
                gpu_seconds: secs.normalize(),
                gpu_hours: GpuHours::billed(secs),
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
    // The line's quantity: billed GPU-hours, or ±1 for a discount (as on the invoice). A plain
    // comment, not a doc comment: the OpenAPI document stays as it was.
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub gpu_hours: Decimal,
    #[schema(value_type = String)]
    pub unit_price: UnitPrice,
    #[schema(value_type = String)]
    pub net: Money,
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
    #[schema(value_type = String)]
    pub net_total: Money,
}

#[utoipa::path(get, path = "/v1/usage/current", security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = CurrentMonth), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn usage_current(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<CurrentMonth>, ApiError> {
    let now = Utc::now();
    let period = domain::billing::Period::of(now);
    let mut client = TokenLookup::get(&s).await?;
    let (tx, caller) = client.begin(&s, &headers).await?;
    let tenant = match (caller.role, caller.tenant.clone()) {
        (Role::Tenant, Some(t)) => t,
        _ => return Err(ApiError::new(StatusCode::FORBIDDEN, "the current month is shown to a tenant's own token")),
    };
    let rows = tx
        .query(
            "SELECT gpu_sku, project, hour, gpu_seconds, mig_profile FROM usage_hourly
              WHERE tenant_id = $1 AND hour >= $2 AND hour < $3",
            &[&tenant, &period.start(), &period.end()],
        )
        .await?;
    tx.commit().await?;
    let usage: Vec<domain::billing::rating::UsageRow> = rows
        .iter()
        .map(|r| domain::billing::rating::UsageRow {
            sku: r.get(0),
            project: r.get(1),
            hour: r.get(2),
            gpu_seconds: r.get(3),
            mig_profile: r.get(4),
        })
        .collect();
    let refs = CrossTenant::new(&s).run(store::billing::reference_state).await?;
    let by_project = refs.profiles.get(&tenant).is_some_and(|(p, _)| p.lines_by_project);
    let rated = domain::billing::rating::rate_period(&tenant, period, &usage, &refs, by_project)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let mut net_total = Money::ZERO;
    let lines = rated
        .iter()
        .enumerate()
        .map(|(i, (key, r))| {
            let l = domain::billing::invoice::make_line(i as u32 + 1, period, false, "", key, r.gpu_seconds, r.net());
            net_total += l.net;
            EstimateLine { description: l.description, gpu_hours: l.quantity, unit_price: l.unit_price, net: l.net }
        })
        .collect();
    Ok(Json(CurrentMonth { tenant, period: period.to_string(), as_of: now, lines, net_total: net_total.round_cents() }))
}
