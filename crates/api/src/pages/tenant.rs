//! The tenant dashboard: GPU-hours per day and SKU for a month, this month so far, and the
//! tenant's invoices.

use super::chart::{stacked_bars, Series};
use super::layout::{de, eur, hours, page, page_error};
use super::session::{as_bearer, who};
use crate::auth::{Caller, Role};
use crate::error::{bad_query, ApiError};
use crate::routes::invoices::{list_invoices, InvoiceQuery, InvoiceSummary};
use crate::routes::usage::{usage_current, usage_uncached, CurrentMonth, UsageQuery, UsageRow};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{NaiveDate, Utc};
use domain::billing::Period;
use maud::{html, Markup};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
pub(super) struct UsagePageQuery {
    month: Option<String>,
    tenant: Option<String>,
}

pub(super) async fn usage_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<UsagePageQuery>, QueryRejection>,
) -> Response {
    match usage_page_inner(s, as_bearer(&headers), q).await {
        Ok(r) => r,
        Err(e) => page_error(e),
    }
}

async fn usage_page_inner(
    s: AppState,
    h: HeaderMap,
    q: Result<Query<UsagePageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let caller = who(&s, &h).await?;
    let now = Utc::now();
    let period = match q.month.as_deref().filter(|m| !m.is_empty()) {
        Some(m) => Period::parse(m).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?,
        None => Period::of(now),
    };
    let tenant = match caller.role {
        Role::Tenant => caller.tenant.clone(),
        _ => q.tenant.clone().filter(|t| !t.is_empty()),
    };
    let Some(tenant) = tenant else {
        let body = html! {
            h1 { "Tenant usage" }
            form.filters method="get" action="/ui/usage" {
                label { "Tenant " input type="text" name="tenant" required; }
                label { "Month " input type="month" name="month" value=(period.to_string()); }
                button type="submit" { "Show" }
            }
        };
        return Ok(page("Tenant usage", Some(&caller), body));
    };
    if !domain::usage::is_valid_tenant_id(&tenant) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "not a tenant id"));
    }
    let uq = UsageQuery {
        from: period.start(),
        to: period.end(),
        granularity: Some("day".into()),
        group_by: Some("sku".into()),
        tenant: Some(tenant.clone()),
    };
    let u = usage_uncached(&s, &h, &uq).await?;
    let Json(invoices) = list_invoices(State(s.clone()), h.clone(), Ok(Query(InvoiceQuery { period: None }))).await?;
    let invoices: Vec<InvoiceSummary> = invoices.into_iter().filter(|i| i.tenant_id == tenant).rev().collect();
    let current =
        if caller.role == Role::Tenant { Some(usage_current(State(s.clone()), h.clone()).await?.0) } else { None };
    let (days, skus) = hours_per_day_and_sku(period, &u.rows);
    let body = html! {
        (usage_section(&caller, &tenant, period, &days, &skus))
        @if let Some(c) = &current {
            (current_month_section(c))
        }
        (invoices_section(&invoices))
    };
    Ok(page(&format!("Usage {tenant}"), Some(&caller), body))
}

/// GPU-hours per Berlin day of the period (its days, in order) and SKU.
fn hours_per_day_and_sku(period: Period, rows: &[UsageRow]) -> (Vec<NaiveDate>, BTreeMap<String, Vec<Decimal>>) {
    let days: Vec<NaiveDate> = period.first_day().iter_days().take_while(|d| *d <= period.last_day()).collect();
    let mut skus: BTreeMap<String, Vec<Decimal>> = BTreeMap::new();
    for r in rows {
        let day = domain::billing::period::berlin_date(r.start);
        let idx = days.iter().position(|d| *d == day);
        let v = r.gpu_hours.value();
        if let Some(i) = idx {
            skus.entry(r.sku.clone().unwrap_or_default()).or_insert_with(|| vec![Decimal::ZERO; days.len()])[i] += v;
        }
    }
    (days, skus)
}

/// The month's chart and totals per SKU, under the month picker.
fn usage_section(
    caller: &Caller,
    tenant: &str,
    period: Period,
    days: &[NaiveDate],
    skus: &BTreeMap<String, Vec<Decimal>>,
) -> Markup {
    let series: Vec<Series> = skus.iter().map(|(k, v)| Series { name: k.clone(), values: v.clone() }).collect();
    let categories: Vec<String> = days.iter().map(|d| d.format("%-d").to_string()).collect();
    let total: Decimal = skus.values().flatten().sum();
    let title = format!("GPU-hours per day and SKU, {period} (Europe/Berlin days)");
    html! {
        h1 { "Usage of " span.tenant { (tenant) } }
        form.filters.noprint method="get" action="/ui/usage" {
            @if caller.role != Role::Tenant { input type="hidden" name="tenant" value=(tenant); }
            label { "Month " input type="month" name="month" value=(period.to_string()); }
            button type="submit" { "Show" }
            a href={"/ui/usage?month=" (period.prev()) @if caller.role != Role::Tenant { "&tenant=" (tenant) }} { "← " (period.prev()) }
            a href={"/ui/usage?month=" (period.next()) @if caller.role != Role::Tenant { "&tenant=" (tenant) }} { (period.next()) " →" }
        }
        section {
            (stacked_bars("usage-chart", &title, "GPU-h", &categories, &series))
            p.total { "Total " (period) ": " strong #usage-total { (hours(total)) " GPU-hours" } }
            table #usage-table {
                thead { tr { th { "SKU" } th.num { "GPU-hours" } } }
                tbody {
                    @for (k, v) in skus {
                        tr { td { (k) } td.num data-value=(v.iter().copied().sum::<Decimal>()) { (hours(v.iter().copied().sum())) } }
                    }
                }
            }
        }
    }
}

/// This month so far, not yet invoiced (tenant tokens only).
fn current_month_section(c: &CurrentMonth) -> Markup {
    html! {
        section #current-month {
            h2 { "This month so far (" (c.period) ")" }
            p.hint { "Not yet invoiced; rated with today's prices and contracts. As of " (c.as_of.format("%Y-%m-%d %H:%M UTC")) "." }
            table {
                thead { tr { th { "Line" } th.num { "GPU-hours" } th.num { "Price / GPU-h" } th.num { "Net" } } }
                tbody {
                    @for l in &c.lines {
                        tr { td { (l.description) } td.num { (de(l.gpu_hours, 2)) } td.num { (eur(l.unit_price)) } td.num { (eur(l.net)) } }
                    }
                }
                tfoot { tr { th colspan="3" { "Estimated net" } th.num #estimate-total { (eur(c.net_total)) } } }
            }
        }
    }
}

fn invoices_section(invoices: &[InvoiceSummary]) -> Markup {
    html! {
        section #invoices {
            h2 { "Invoices" }
            @if invoices.is_empty() { p { "No invoices yet." } } @else {
                table {
                    thead { tr { th { "Number" } th { "Period" } th { "Issued" } th.num { "Net" } th.num { "Gross" } th { "Downloads" } } }
                    tbody {
                        @for i in invoices {
                            tr {
                                td { a href={"/ui/invoices/" (i.number)} { (i.number) } @if i.type_code == 381 { " (credit note)" } }
                                td { (i.period) } td { (i.issued_at.format("%Y-%m-%d")) }
                                td.num { (eur(i.net_total)) } td.num { (eur(i.gross_total)) }
                                td.downloads {
                                    a href={"/ui/invoices/" (i.number) "/download/xrechnung.xml"} { "XRechnung" } " "
                                    a href={"/ui/invoices/" (i.number) "/download/invoice.csv"} { "CSV" } " "
                                    a href={"/ui/invoices/" (i.number) "/download/invoice.json"} { "JSON" } " "
                                    a href={"/ui/invoices/" (i.number)} { "Print" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
