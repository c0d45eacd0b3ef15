//! `GET /v1/finance/coverage`: the collector's coverage per SKU (or MIG slice) and Berlin day
//! before a close (docs/collect.md, "Coverage before a close"), for finance only. The same JSON
//! is what `gpuledger coverage --format json` prints ([`coverage_json`]).

use crate::auth::{authorize, CrossTenant, FINANCE};
use crate::error::{bad_query, ApiError, Problem};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use domain::meter::coverage::{CoverageKey, CoverageReport, Figures};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverageQuery {
    /// A month (YYYY-MM, Europe/Berlin, as a close), or else `from` and `to`.
    pub month: Option<String>,
    /// First day (YYYY-MM-DD, Europe/Berlin), inclusive.
    pub from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD, Europe/Berlin), inclusive; at most 366 days from `from`.
    pub to: Option<NaiveDate>,
}

/// GPU-seconds (exact decimal strings) of one key: `capacity` is the sum of the five classes.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoverageFigures {
    /// All device-time the collector observed, gaps included (the five classes' sum).
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub capacity: Decimal,
    /// Held by a tenant's workload: usage events produced.
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub metered: Decimal,
    /// The part of `metered` whose events are in the ledger; the rest is not ingested yet (or quarantined).
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub in_ledger: Decimal,
    /// Observed, held by no workload.
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub idle: Decimal,
    /// Gaps between scrapes longer than the bridge limit.
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub unmetered: Decimal,
    /// Held by a namespace mapped to no tenant.
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub unmapped: Decimal,
    /// Held by a tenant, but no SKU for the model, or a name the event cannot carry.
    #[serde(with = "domain::billing::dec")]
    #[schema(value_type = String)]
    pub unbillable: Decimal,
}

impl From<&Figures> for CoverageFigures {
    fn from(f: &Figures) -> Self {
        CoverageFigures {
            capacity: f.capacity,
            metered: f.metered,
            in_ledger: f.in_ledger,
            idle: f.idle,
            unmetered: f.unmetered,
            unmapped: f.unmapped,
            unbillable: f.unbillable,
        }
    }
}

/// One day (or the range's total) of one SKU, model without a SKU, or MIG slice.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoverageLine {
    /// The Berlin day; absent in the totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<NaiveDate>,
    pub sku: Option<String>,
    /// The exporter's modelName, when the model has no SKU.
    pub model_name: Option<String>,
    /// Null for whole GPUs; a MIG instance's profile (slice-seconds, never added to the whole GPU's).
    pub mig_profile: Option<String>,
    #[serde(flatten)]
    pub figures: CoverageFigures,
}

impl CoverageLine {
    fn new(day: Option<NaiveDate>, k: &CoverageKey, f: &Figures) -> CoverageLine {
        CoverageLine {
            day,
            sku: k.sku.clone(),
            model_name: k.model_name.clone(),
            mig_profile: k.mig_profile.clone(),
            figures: f.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CoverageResponse {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Days are calendar days in this zone (a close's month is a Berlin month).
    pub time_zone: &'static str,
    /// Berlin midnight of `from`, and of the day after `to` (exclusive).
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// A line per day and key, every key on every day of the range.
    pub days: Vec<CoverageLine>,
    /// A line per key over the range.
    pub totals: Vec<CoverageLine>,
}

impl From<&CoverageReport> for CoverageResponse {
    fn from(r: &CoverageReport) -> Self {
        CoverageResponse {
            from: r.from,
            to: r.to,
            time_zone: "Europe/Berlin",
            start: r.start,
            end: r.end,
            days: r.days.iter().map(|d| CoverageLine::new(Some(d.day), &d.key, &d.figures)).collect(),
            totals: r.totals.iter().map(|t| CoverageLine::new(None, &t.key, &t.figures)).collect(),
        }
    }
}

/// The report as `GET /v1/finance/coverage` answers it (pretty-printed, with a final newline).
pub fn coverage_json(r: &CoverageReport) -> String {
    let mut s = serde_json::to_string_pretty(&CoverageResponse::from(r)).expect("the report serializes");
    s.push('\n');
    s
}

/// The range a query names, or a 400.
pub(crate) fn coverage_range(q: &CoverageQuery) -> Result<(NaiveDate, NaiveDate), ApiError> {
    domain::meter::coverage::range(q.month.as_deref(), q.from, q.to)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))
}

/// The coverage report of a range, finance's login across tenants.
pub(crate) async fn read_coverage(s: &AppState, from: NaiveDate, to: NaiveDate) -> Result<CoverageReport, ApiError> {
    CrossTenant::new(s).run(move |c| store::coverage::coverage_report(c, from, to)).await
}

/// Coverage before a close: per SKU (or MIG slice) and Berlin day, the device-time the collector
/// observed and what became of it, in exact GPU-seconds.
#[utoipa::path(get, path = "/v1/finance/coverage", params(CoverageQuery), security(("bearer" = [])),
    responses((status = 200, body = CoverageResponse), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn finance_coverage(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<CoverageQuery>, QueryRejection>,
) -> Result<Json<CoverageResponse>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    authorize(&s, &headers, FINANCE).await?;
    let (from, to) = coverage_range(&q)?;
    let report = read_coverage(&s, from, to).await?;
    Ok(Json(CoverageResponse::from(&report)))
}
