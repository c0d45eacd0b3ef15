//! Issued invoices and credit notes: the list, and one document as JSON, XRechnung or CSV. Both
//! the invoice index and the ledger row of a document are behind the tenant wall.

use super::PAGE_MAX;
use crate::auth::TokenLookup;
use crate::error::{bad_path, bad_query, internal, ApiError, Problem};
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::billing::invoice::InvoiceDoc;
use domain::Money;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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
    #[schema(value_type = String)]
    pub net_total: Money,
    #[schema(value_type = String)]
    pub vat_total: Money,
    #[schema(value_type = String)]
    pub gross_total: Money,
}

#[utoipa::path(get, path = "/v1/invoices", params(InvoiceQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = [InvoiceSummary]), (status = 401, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn list_invoices(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<InvoiceQuery>, QueryRejection>,
) -> Result<Json<Vec<InvoiceSummary>>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    if let Some(p) = &q.period {
        domain::billing::Period::parse(p).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    }
    let mut client = TokenLookup::get(&s).await?;
    let (tx, _) = client.begin(&s, &headers).await?;
    let rows = tx
        .query(
            "SELECT number, type_code, tenant_id, period, issued_at, net_total, vat_total, gross_total FROM invoices
              WHERE ($1::text IS NULL OR period = $1) ORDER BY issued_at, number LIMIT $2",
            &[&q.period, &PAGE_MAX],
        )
        .await?;
    tx.commit().await?;
    Ok(Json(
        rows.iter()
            .map(|r| InvoiceSummary {
                number: r.get(0),
                type_code: r.get(1),
                tenant_id: r.get(2),
                period: r.get(3),
                issued_at: r.get(4),
                net_total: Money::new(r.get::<_, Decimal>(5)),
                vat_total: Money::new(r.get::<_, Decimal>(6)),
                gross_total: Money::new(r.get::<_, Decimal>(7)),
            })
            .collect(),
    ))
}

/// One document, through both walls: the invoice index and the ledger row are tenant-walled.
pub(crate) async fn document(s: &AppState, headers: &HeaderMap, number: &str) -> Result<InvoiceDoc, ApiError> {
    if number.len() > 40 {
        return Err(ApiError::not_found());
    }
    let mut client = TokenLookup::get(s).await?;
    let (tx, _) = client.begin(s, headers).await?;
    let row = tx
        .query_opt(
            "SELECT e.payload FROM invoices i JOIN api_ledger_events e ON e.stream_id = i.stream_id AND e.stream_pos = i.stream_pos
              WHERE i.number = $1 AND e.kind = 'invoice.issued'",
            &[&number],
        )
        .await?;
    let row = row.ok_or_else(ApiError::not_found)?;
    tx.commit().await?;
    let payload: serde_json::Value = row.get(0);
    InvoiceDoc::from_json(&payload["data"]).map_err(internal)
}

#[utoipa::path(get, path = "/v1/invoices/{number}", params(("number" = String, Path, description = "Invoice or credit note number")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "The issued document (canonical JSON)", body = Object), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn invoice_json(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(number) = number.map_err(bad_path)?;
    Ok(Json(document(&s, &headers, &number).await?.to_json()))
}

#[utoipa::path(get, path = "/v1/invoices/{number}/xrechnung", params(("number" = String, Path, description = "Invoice or credit note number")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "XRechnung 3.0 UBL", content_type = "application/xml"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn invoice_xml(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(number) = number.map_err(bad_path)?;
    let d = document(&s, &headers, &number).await?;
    Ok(([(header::CONTENT_TYPE, "application/xml")], domain::billing::ubl::xrechnung(&d)).into_response())
}

#[utoipa::path(get, path = "/v1/invoices/{number}/csv", params(("number" = String, Path, description = "Invoice or credit note number")),
    security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, description = "One row per line", content_type = "text/csv"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn invoice_csv(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(number) = number.map_err(bad_path)?;
    let d = document(&s, &headers, &number).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv")], domain::billing::export::csv(std::slice::from_ref(&d))).into_response())
}
