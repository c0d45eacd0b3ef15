//! The finance dashboard (a period's invoices and exports, the collector's coverage of the
//! period, budget burn per cost centre, fleet utilisation) and its export downloads.

use super::chart::{budget_bars, stacked_bars, Series};
use super::coverage::coverage_section;
use super::layout::{attachment, de, eur, hours, page, page_error};
use super::session::as_bearer;
use crate::auth::{authorize, CrossTenant, FINANCE, READERS};
use crate::error::{bad_query, ApiError};
use crate::routes::coverage::read_coverage;
use crate::routes::finance::finance_export;
use crate::routes::invoices::{list_invoices, InvoiceQuery, InvoiceSummary};
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{NaiveDate, Utc};
use domain::billing::Period;
use domain::budget::report::BudgetReport;
use domain::Money;
use maud::{html, Markup};
use rust_decimal::Decimal;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct FinancePageQuery {
    period: Option<String>,
}

pub(super) async fn finance_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<FinancePageQuery>, QueryRejection>,
) -> Response {
    match finance_page_inner(s, as_bearer(&headers), q).await {
        Ok(r) => r,
        Err(e) => page_error(e),
    }
}

async fn finance_page_inner(
    s: AppState,
    h: HeaderMap,
    q: Result<Query<FinancePageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let caller = authorize(&s, &h, READERS).await?;
    let today = domain::billing::period::berlin_date(Utc::now());
    let period = match q.period.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Period::parse(p).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?,
        None => Period::of(Utc::now()).prev(),
    };
    let Json(invoices) =
        list_invoices(State(s.clone()), h.clone(), Ok(Query(InvoiceQuery { period: Some(period.to_string()) })))
            .await?;
    let as_of = today;
    let report = CrossTenant::new(&s).run(move |c| store::budget::budget_report(c, as_of)).await?;
    let coverage = if FINANCE.contains(&caller.role) {
        Some(read_coverage(&s, period.first_day(), period.last_day()).await?)
    } else {
        None
    };
    let body = html! {
        h1 { "Finance · " (period) }
        form.filters.noprint method="get" action="/ui/finance" {
            label { "Period " input type="month" name="period" value=(period.to_string()); }
            button type="submit" { "Show" }
            a href={"/ui/finance?period=" (period.prev())} { "← " (period.prev()) }
            a href={"/ui/finance?period=" (period.next())} { (period.next()) " →" }
        }
        (invoices_section(period, &invoices))
        (coverage_section(period, coverage.as_ref()))
        (budget_section(as_of, &report))
        (utilisation_section(&report))
    };
    Ok(page(&format!("Finance {period}"), Some(&caller), body))
}

pub(super) async fn export_download(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let file = path.as_ref().map(|p| p.1.clone()).unwrap_or_default();
    match finance_export(State(s), as_bearer(&headers), path).await {
        Ok(r) => attachment(r, &file),
        Err(e) => page_error(e),
    }
}

/// The period's documents with their totals, and the exports of its close.
fn invoices_section(period: Period, invoices: &[InvoiceSummary]) -> Markup {
    let (mut net, mut vat, mut gross) = (Money::ZERO, Money::ZERO, Money::ZERO);
    for i in invoices {
        net += i.net_total;
        vat += i.vat_total;
        gross += i.gross_total;
    }
    html! {
        section #period-invoices {
            h2 { "Invoices of " (period) }
            @if invoices.is_empty() { p { "Nothing issued for this period (is it closed?)." } } @else {
                table {
                    thead { tr { th { "Number" } th { "Tenant" } th { "Type" } th.num { "Net" } th.num { "VAT" } th.num { "Gross" } } }
                    tbody {
                        @for i in invoices {
                            tr.invoice data-tenant=(i.tenant_id) {
                                td { a href={"/ui/invoices/" (i.number)} { (i.number) } }
                                td { (i.tenant_id) }
                                td { @if i.type_code == 381 { "credit note" } @else { "invoice" } }
                                td.num { (eur(i.net_total)) }
                                td.num { (eur(i.vat_total)) }
                                td.num { (eur(i.gross_total)) }
                            }
                        }
                    }
                    tfoot { tr { th colspan="3" { (invoices.len()) " documents" } th.num #period-net { (eur(net)) } th.num { (eur(vat)) } th.num #period-gross { (eur(gross)) } } }
                }
            }
            p.downloads.noprint {
                "Exports: "
                a href={"/ui/exports/" (period) "/invoices.csv"} { "invoices.csv" } " · "
                a href={"/ui/exports/" (period) "/invoices.json"} { "invoices.json" } " · "
                a href={"/ui/exports/" (period) "/sap-journal.csv"} { "SAP journal" }
            }
        }
    }
}

/// Budget burn per cost centre, as of a date.
fn budget_section(as_of: NaiveDate, report: &BudgetReport) -> Markup {
    let centres: Vec<&domain::budget::report::BudgetRow> =
        report.rows.iter().filter(|r| r.level == "cost_center").collect();
    let items: Vec<(String, Decimal, Decimal, Decimal)> =
        centres.iter().map(|r| (r.cost_center.clone(), r.budget, r.committed, r.actual)).collect();
    html! {
        section #budget {
            h2 { "Budget burn per cost centre (as of " (as_of) ")" }
            (budget_bars("budget-chart", "Burn per cost centre: each row on the scale of its own budget", &items))
            table {
                thead { tr { th { "Cost centre" } th { "Owner" } th.num { "Budget" } th.num { "Committed" } th.num { "Actual" } th.num { "Remaining" } th.num { "Forecast at completion" } } }
                tbody {
                    @for r in &centres {
                        tr class=[r.warning.then_some("warning")] {
                            td { (r.cost_center) } td { (r.owner) }
                            td.num { (eur(r.budget)) } td.num { (eur(r.committed)) } td.num { (eur(r.actual)) }
                            td.num { (eur(r.remaining)) } td.num { (eur(r.forecast_at_completion)) @if r.warning { " ⚠" } }
                        }
                    }
                }
            }
            p { "Programme " (report.programme) ": " (eur(report.programme_total)) ", unallocated " (eur(report.unallocated)) "." }
        }
    }
}

/// Billed GPU-hours against available ones per SKU, and how much of the investment is recovered.
fn utilisation_section(report: &BudgetReport) -> Markup {
    let utilisation: Vec<Series> = vec![Series {
        name: "utilisation %".into(),
        values: report.fleet.per_sku.iter().map(|f| f.utilisation_percent).collect(),
    }];
    let skus: Vec<String> = report.fleet.per_sku.iter().map(|f| f.sku.clone()).collect();
    html! {
        section #utilisation {
            h2 { "Fleet utilisation (since each GPU went into service)" }
            (stacked_bars("utilisation-chart", "Billed GPU-hours as % of available GPU-hours", "%", &skus, &utilisation))
            table {
                thead { tr { th { "SKU" } th.num { "GPUs" } th.num { "Available GPU-h" } th.num { "Billed GPU-h" } th.num { "Utilisation" } } }
                tbody {
                    @for f in &report.fleet.per_sku {
                        tr { td { (f.sku) } td.num { (f.gpus) } td.num { (hours(f.available_gpu_hours)) } td.num { (hours(f.billed_gpu_hours)) } td.num { (de(f.utilisation_percent, 2)) " %" } }
                    }
                }
            }
            p { "GPU investment " (eur(report.fleet.gpu_investment)) ", depreciated through "
                (report.bases.accumulated_depreciation_through.to_string()) " (the last completed month) "
                (eur(report.fleet.accumulated_depreciation))
                ", invoiced net by issue date " (eur(report.fleet.revenue_invoiced_net)) " (" (de(report.fleet.recovered_percent, 2)) " % recovered)." }
            @if !report.revenue_by_service_period.is_empty() {
                table #revenue-by-service-period {
                    caption { "Revenue by service period, as the SAP journal posts it" }
                    thead { tr { th { "Period" } th.num { "Documents" } th.num { "Net revenue" } } }
                    tbody {
                        @for r in &report.revenue_by_service_period {
                            tr { td { (r.period.to_string()) } td.num { (r.documents) } td.num { (eur(r.revenue_net)) } }
                        }
                    }
                }
            }
        }
    }
}
