//! The OpenAPI 3.1 document of the API (utoipa), committed as `schemas/openapi.json` and served
//! at `/openapi.json`.

use crate::error::{EventRefusal, EventsProblem, Problem};
use crate::routes::audit::{
    __path_audit_events, __path_audit_verify, Break, EventsPage, LedgerEvent, StreamVerdict, Verification,
};
use crate::routes::coverage::{__path_finance_coverage, CoverageFigures, CoverageLine, CoverageResponse};
use crate::routes::events::{__path_post_events, EventsAccepted};
use crate::routes::finance::{
    __path_finance_budget, __path_finance_close, __path_finance_export, __path_finance_reference, CloseResult,
    LoadedItem,
};
use crate::routes::health::{__path_healthz, __path_readyz, Health};
use crate::routes::invoices::{
    __path_invoice_csv, __path_invoice_json, __path_invoice_xml, __path_list_invoices, InvoiceSummary,
};
use crate::routes::usage::{__path_usage, __path_usage_current, CurrentMonth, EstimateLine, UsageResponse, UsageRow};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

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
    paths(healthz, readyz, usage, usage_current, list_invoices, invoice_json, invoice_xml, invoice_csv,
          finance_budget, finance_close, finance_export, finance_reference, finance_coverage, audit_events, audit_verify, post_events),
    components(schemas(Problem, EventsProblem, EventRefusal, EventsAccepted, Health, UsageRow, UsageResponse, EstimateLine, CurrentMonth, InvoiceSummary, CloseResult, LoadedItem, CoverageResponse, CoverageLine, CoverageFigures, LedgerEvent, EventsPage, Verification, StreamVerdict, Break)),
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

pub(crate) async fn openapi_json() -> Response {
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
