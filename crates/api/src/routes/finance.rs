//! Finance's routes: the budget report, closing a period, the exports of a close, and loading
//! reference data. Each authorizes the caller's role first (and logs the access), then does its
//! work on the store's cross-tenant connection.

use super::invoices::InvoiceSummary;
use crate::auth::{authorize, CrossTenant, FINANCE, READERS};
use crate::error::{bad_path, bad_query, ApiError, Problem};
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest export one request may fetch (bigger ones: `gpuledger invoices export`).
pub const EXPORT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Most reference items one load may carry.
pub const LOAD_MAX_ITEMS: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BudgetQuery {
    /// The report's date (YYYY-MM-DD, default today in Berlin).
    pub as_of: Option<chrono::NaiveDate>,
}

#[utoipa::path(get, path = "/v1/finance/budget", params(BudgetQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "The budget report", body = Object), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn finance_budget(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<BudgetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    authorize(&s, &headers, READERS).await?;
    let as_of = q.as_of.unwrap_or_else(|| domain::billing::period::berlin_date(Utc::now()));
    domain::billing::period::check_date(as_of).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let r = CrossTenant::new(&s).run(move |c| store::budget::budget_report(c, as_of)).await?;
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
    responses((status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = CloseResult), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn finance_close(
    State(s): State<AppState>,
    headers: HeaderMap,
    period: Result<Path<String>, PathRejection>,
) -> Result<Json<CloseResult>, ApiError> {
    let Path(period) = period.map_err(bad_path)?;
    authorize(&s, &headers, FINANCE).await?;
    let p = domain::billing::Period::parse(&period).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let out = CrossTenant::new(&s).run(move |c| store::billing::close_period(c, p, Utc::now())).await?;
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
                net_total: d.net_total,
                vat_total: d.vat_total,
                gross_total: d.gross_total,
            })
            .collect(),
    }))
}

/// Exports of a close: `invoices.csv`, `invoices.json`, `sap-journal.csv`, `focus-TENANT.csv`.
#[utoipa::path(get, path = "/v1/finance/exports/{period}/{file}",
    params(("period" = String, Path, description = "YYYY-MM"), ("file" = String, Path, description = "invoices.csv, invoices.json, sap-journal.csv or focus-TENANT.csv")),
    security(("bearer" = [])),
    responses((status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "The file"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn finance_export(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((period, file)) = path.map_err(bad_path)?;
    authorize(&s, &headers, READERS).await?;
    let p = domain::billing::Period::parse(&period).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let (ctype, body): (&str, Vec<u8>) = match file.as_str() {
        "invoices.csv" => (
            "text/csv",
            domain::billing::export::csv(
                &CrossTenant::new(&s).run(move |c| store::billing::documents(c, Some(p), None)).await?,
            ),
        ),
        "invoices.json" => (
            "application/json",
            domain::billing::export::json(
                &CrossTenant::new(&s).run(move |c| store::billing::documents(c, Some(p), None)).await?,
            ),
        ),
        "sap-journal.csv" => {
            let lines = CrossTenant::new(&s).run(move |c| store::budget::sap_journal(c, p)).await?;
            ("text/csv", domain::budget::sap::journal_csv(&lines))
        }
        f => {
            let tenant = f
                .strip_prefix("focus-")
                .and_then(|t| t.strip_suffix(".csv"))
                .filter(|t| domain::usage::is_valid_tenant_id(t))
                .ok_or_else(ApiError::not_found)?
                .to_string();
            let docs = CrossTenant::new(&s).run(move |c| store::billing::documents(c, Some(p), Some(&tenant))).await?;
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
    responses((status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = [LoadedItem]), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn finance_reference(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Vec<LoadedItem>>, ApiError> {
    authorize(&s, &headers, FINANCE).await?;
    let items: Vec<serde_json::Value> = crate::body::ijson_body(&headers, body)?;
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
    let loaded = CrossTenant::new(&s).run(move |c| store::billing::load_reference(c, &inputs, Utc::now())).await?;
    Ok(Json(
        loaded.into_iter().map(|l| LoadedItem { event_id: l.event_id, kind: l.kind.to_string(), new: l.new }).collect(),
    ))
}
