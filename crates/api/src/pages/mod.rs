//! Web pages, served by the same binary under `/ui`: a tenant's usage dashboard, the finance
//! dashboard and a printable invoice. HTML is rendered on the server (maud, escaped by
//! construction) with charts as inline SVG; there is no script at all, and the Content Security
//! Policy forbids it.
//!
//! A browser signs in by pasting its API token once: it is kept in an HttpOnly, SameSite=Strict
//! cookie scoped to `/ui` and sent back as the bearer token, so every page goes through the same
//! walls as the API (token, role, row-level security, access log). Pages only read; the API's
//! writing routes never accept the cookie, so a forged cross-site form cannot close a period.

pub mod chart;

use crate::auth::{authorize, Caller, CrossTenant, Role, TokenLookup, READERS};
use crate::error::{bad_query, ApiError};
use crate::routes::finance::finance_export;
use crate::routes::invoices::{
    document, invoice_csv, invoice_json, invoice_xml, list_invoices, InvoiceQuery, InvoiceSummary,
};
use crate::routes::usage::{usage_current, usage_uncached, UsageQuery};
use crate::AppState;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use chart::{budget_bars, stacked_bars, Series};
use chrono::Utc;
use domain::billing::invoice::InvoiceDoc;
use domain::billing::Period;
use maud::{html, Markup, DOCTYPE};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;

const COOKIE: &str = "gpuledger_token";
const CSS: &str = include_str!("app.css");
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(home))
        .route("/ui/app.css", get(css))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route("/ui/usage", get(usage_page))
        .route("/ui/finance", get(finance_page))
        .route("/ui/invoices/{number}", get(invoice_page))
        .route("/ui/invoices/{number}/download/{format}", get(invoice_download))
        .route("/ui/exports/{period}/{file}", get(export_download))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')).map(str::to_string))
}

/// The request's headers as the API sees them: the cookie's token as the bearer token.
fn as_bearer(headers: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = cookie_token(headers).and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

/// Who the browser is (authenticated like any API request).
async fn who(s: &AppState, h: &HeaderMap) -> Result<Caller, ApiError> {
    let mut client = TokenLookup::get(s).await?;
    let (tx, caller) = client.begin(s, h).await?;
    tx.commit().await?;
    Ok(caller)
}

fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn page(title: &str, caller: Option<&Caller>, body: Markup) -> Response {
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · gpuledger" }
                link rel="stylesheet" href="/ui/app.css";
            }
            body {
                nav.noprint {
                    span.brand { "gpuledger" }
                    @if let Some(c) = caller {
                        @match c.role {
                            Role::Tenant => { a href="/ui/usage" { "Usage and invoices" } }
                            _ => { a href="/ui/finance" { "Finance" } a href="/ui/usage" { "Tenant usage" } }
                        }
                        span.who { (format!("{:?}", c.role).to_lowercase()) @if let Some(t) = &c.tenant { " · " (t) } }
                        form method="post" action="/ui/logout" { button type="submit" { "Sign out" } }
                    }
                }
                main { (body) }
            }
        }
    };
    secure_headers(Html(m.into_string()).into_response())
}

use axum::response::Html;

/// A page's error: a missing or bad token goes to the sign-in page, the rest is shown as a page
/// with the API's status and message (never database text, as in the API).
fn page_error(e: ApiError) -> Response {
    if e.status() == StatusCode::UNAUTHORIZED {
        let mut r = Redirect::to("/ui/login").into_response();
        r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
        return r;
    }
    let status = e.status();
    let mut r = page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! { h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } p.error { (e.detail()) } p { a href="/ui" { "Back" } } },
    );
    *r.status_mut() = status;
    r
}

const CLEAR_COOKIE: &str = "gpuledger_token=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0";

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match who(&s, &as_bearer(&headers)).await {
        Ok(c) if c.role == Role::Tenant => Redirect::to("/ui/usage").into_response(),
        Ok(_) => Redirect::to("/ui/finance").into_response(),
        Err(e) => page_error(e),
    }
}

async fn login_form() -> Response {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "Paste the API token you were given (" code { "gpuledger tokens create" } "). It is kept in a cookie for this site only." }
            form.login method="post" action="/ui/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(s): State<AppState>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return page_error(ApiError::new(StatusCode::BAD_REQUEST, "the form needs a token"));
    };
    let token = f.token.trim().to_string();
    let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return page_error(ApiError::new(StatusCode::BAD_REQUEST, "that is not a token"));
    };
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, v);
    match who(&s, &h).await {
        Ok(_) => {
            let mut r = Redirect::to("/ui").into_response();
            let cookie = format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=43200");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
            let mut r = page(
                "Sign in",
                None,
                html! { h1 { "Sign in" } p.error { (e.detail()) } p { a href="/ui/login" { "Try again" } } },
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        Err(e) => page_error(e),
    }
}

async fn logout() -> Response {
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    r
}

// ---------------------------------------------------------------- formatting

/// German number formatting: `1.234.567,89`.
pub fn de(d: Decimal, dp: u32) -> String {
    let d = domain::billing::dec::fixed(d, dp);
    let text = d.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(ch);
    }
    let sign = if d.is_sign_negative() && !d.is_zero() { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped},{frac}")
    }
}

fn eur(d: Decimal) -> String {
    format!("{} €", de(d, 2))
}

fn hours(d: Decimal) -> String {
    de(d, 2)
}

// ---------------------------------------------------------------- tenant dashboard

#[derive(Deserialize)]
struct UsagePageQuery {
    month: Option<String>,
    tenant: Option<String>,
}

async fn usage_page(
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

    // GPU-hours per Berlin day and SKU.
    let days: Vec<chrono::NaiveDate> = period.first_day().iter_days().take_while(|d| *d <= period.last_day()).collect();
    let mut skus: BTreeMap<String, Vec<Decimal>> = BTreeMap::new();
    for r in &u.rows {
        let day = domain::billing::period::berlin_date(r.start);
        let idx = days.iter().position(|d| *d == day);
        let v: Decimal = r.gpu_hours.parse().unwrap_or_default();
        if let Some(i) = idx {
            skus.entry(r.sku.clone().unwrap_or_default()).or_insert_with(|| vec![Decimal::ZERO; days.len()])[i] += v;
        }
    }
    let series: Vec<Series> = skus.iter().map(|(k, v)| Series { name: k.clone(), values: v.clone() }).collect();
    let categories: Vec<String> = days.iter().map(|d| d.format("%-d").to_string()).collect();
    let total: Decimal = skus.values().flatten().sum();
    let title = format!("GPU-hours per day and SKU, {period} (Europe/Berlin days)");
    let body = html! {
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
                    @for (k, v) in &skus {
                        tr { td { (k) } td.num data-value=(v.iter().copied().sum::<Decimal>()) { (hours(v.iter().copied().sum())) } }
                    }
                }
            }
        }
        @if let Some(c) = &current {
            section #current-month {
                h2 { "This month so far (" (c.period) ")" }
                p.hint { "Not yet invoiced; rated with today's prices and contracts. As of " (c.as_of.format("%Y-%m-%d %H:%M UTC")) "." }
                table {
                    thead { tr { th { "Line" } th.num { "GPU-hours" } th.num { "Price / GPU-h" } th.num { "Net" } } }
                    tbody {
                        @for l in &c.lines {
                            tr { td { (l.description) } td.num { (de(l.gpu_hours.parse().unwrap_or_default(), 2)) } td.num { (eur(l.unit_price.parse().unwrap_or_default())) } td.num { (eur(l.net.parse().unwrap_or_default())) } }
                        }
                    }
                    tfoot { tr { th colspan="3" { "Estimated net" } th.num #estimate-total { (eur(c.net_total.parse().unwrap_or_default())) } } }
                }
            }
        }
        section #invoices {
            h2 { "Invoices" }
            @if invoices.is_empty() { p { "No invoices yet." } } @else {
                table {
                    thead { tr { th { "Number" } th { "Period" } th { "Issued" } th.num { "Net" } th.num { "Gross" } th { "Downloads" } } }
                    tbody {
                        @for i in &invoices {
                            tr {
                                td { a href={"/ui/invoices/" (i.number)} { (i.number) } @if i.type_code == 381 { " (credit note)" } }
                                td { (i.period) } td { (i.issued_at.format("%Y-%m-%d")) }
                                td.num { (eur(i.net_total.parse().unwrap_or_default())) } td.num { (eur(i.gross_total.parse().unwrap_or_default())) }
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
    };
    Ok(page(&format!("Usage {tenant}"), Some(&caller), body))
}

// ---------------------------------------------------------------- finance dashboard

#[derive(Deserialize)]
struct FinancePageQuery {
    period: Option<String>,
}

async fn finance_page(
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
    let caller = authorize(&s, &h, READERS, "GET", "/ui/finance").await?;
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
    let (mut net, mut vat, mut gross) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    for i in &invoices {
        net += i.net_total.parse::<Decimal>().unwrap_or_default();
        vat += i.vat_total.parse::<Decimal>().unwrap_or_default();
        gross += i.gross_total.parse::<Decimal>().unwrap_or_default();
    }
    let centres: Vec<&domain::budget::report::BudgetRow> =
        report.rows.iter().filter(|r| r.level == "cost_center").collect();
    let items: Vec<(String, Decimal, Decimal, Decimal)> =
        centres.iter().map(|r| (r.cost_center.clone(), r.budget, r.committed, r.actual)).collect();
    let utilisation: Vec<Series> = vec![Series {
        name: "utilisation %".into(),
        values: report.fleet.per_sku.iter().map(|f| f.utilisation_percent).collect(),
    }];
    let skus: Vec<String> = report.fleet.per_sku.iter().map(|f| f.sku.clone()).collect();
    let body = html! {
        h1 { "Finance · " (period) }
        form.filters.noprint method="get" action="/ui/finance" {
            label { "Period " input type="month" name="period" value=(period.to_string()); }
            button type="submit" { "Show" }
            a href={"/ui/finance?period=" (period.prev())} { "← " (period.prev()) }
            a href={"/ui/finance?period=" (period.next())} { (period.next()) " →" }
        }
        section #period-invoices {
            h2 { "Invoices of " (period) }
            @if invoices.is_empty() { p { "Nothing issued for this period (is it closed?)." } } @else {
                table {
                    thead { tr { th { "Number" } th { "Tenant" } th { "Type" } th.num { "Net" } th.num { "VAT" } th.num { "Gross" } } }
                    tbody {
                        @for i in &invoices {
                            tr.invoice data-tenant=(i.tenant_id) {
                                td { a href={"/ui/invoices/" (i.number)} { (i.number) } }
                                td { (i.tenant_id) }
                                td { @if i.type_code == 381 { "credit note" } @else { "invoice" } }
                                td.num { (eur(i.net_total.parse().unwrap_or_default())) }
                                td.num { (eur(i.vat_total.parse().unwrap_or_default())) }
                                td.num { (eur(i.gross_total.parse().unwrap_or_default())) }
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
            p { "GPU investment " (eur(report.fleet.gpu_investment)) ", depreciated " (eur(report.fleet.accumulated_depreciation))
                ", invoiced net " (eur(report.fleet.revenue_invoiced_net)) " (" (de(report.fleet.recovered_percent, 2)) " % recovered)." }
        }
    };
    Ok(page(&format!("Finance {period}"), Some(&caller), body))
}

async fn export_download(
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

fn attachment(mut r: Response, file: &str) -> Response {
    let safe: String = file.chars().filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c)).collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(r)
}

// ---------------------------------------------------------------- invoices

async fn invoice_download(
    State(s): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let Ok(Path((number, format))) = path else {
        return page_error(ApiError::not_found());
    };
    let h = as_bearer(&headers);
    let n = || Ok(Path(number.clone()));
    let r = match format.as_str() {
        "xrechnung.xml" => invoice_xml(State(s), h, n()).await,
        "invoice.csv" => invoice_csv(State(s), h, n()).await,
        "invoice.json" => invoice_json(State(s), h, n()).await.map(IntoResponse::into_response),
        _ => Err(ApiError::not_found()),
    };
    match r {
        Ok(r) => attachment(r, &format!("{number}-{format}")),
        Err(e) => page_error(e),
    }
}

async fn invoice_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    number: Result<Path<String>, PathRejection>,
) -> Response {
    let h = as_bearer(&headers);
    let Ok(Path(number)) = number else {
        return page_error(ApiError::not_found());
    };
    let caller = match who(&s, &h).await {
        Ok(c) => c,
        Err(e) => return page_error(e),
    };
    match document(&s, &h, &number, "/ui/invoices/{number}").await {
        Ok(d) => page(&d.number, Some(&caller), invoice_markup(&d)),
        Err(e) => page_error(e),
    }
}

/// The invoice as a person reads it: what §14 UStG asks of an invoice (both parties' names and
/// addresses, the seller's tax number and VAT id, date, number, the service and its period,
/// net per rate, rate, tax, gross, the reason for any exemption, the corrected invoice) in
/// German with English beside it, on an A4 page when printed.
pub fn invoice_markup(d: &InvoiceDoc) -> Markup {
    use domain::billing::reference::VatTreatment;
    let credit = d.type_code == 381;
    let title = if credit { "Rechnungskorrektur · Credit note" } else { "Rechnung · Invoice" };
    let s = &d.seller;
    let b = &d.buyer;
    html! {
        article.invoice {
            header.parties {
                div.seller {
                    p.from { (s.legal_name) " · " (s.street) " · " (s.postal_code) " " (s.city) }
                    address.buyer {
                        (b.legal_name) br; (b.street) br; (b.postal_code) " " (b.city) br; (b.country)
                    }
                }
                div.meta {
                    h1 { (title) }
                    dl {
                        dt { "Nummer · Number" } dd #invoice-number { (d.number) }
                        dt { "Datum · Date" } dd { (d.issue_date.format("%d.%m.%Y")) }
                        dt { "Leistungszeitraum · Service period" } dd { (d.period.first_day().format("%d.%m.%Y")) " – " (d.period.last_day().format("%d.%m.%Y")) }
                        dt { "Kunde · Customer" } dd { (d.tenant_id) }
                        @if !b.buyer_reference.is_empty() { dt { "Ihre Referenz · Your reference" } dd { (b.buyer_reference) } }
                        @if let Some(v) = &b.vat_id { dt { "USt-IdNr. Kunde · Customer VAT id" } dd { (v) } }
                        @if let Some(c) = &d.corrects {
                            dt { "Korrigiert · Corrects" } dd #corrects { (c.number) " vom " (c.issue_date.format("%d.%m.%Y")) }
                        }
                    }
                }
            }
            table.lines {
                thead { tr { th { "Pos." } th { "Leistung · Service" } th.num { "Menge · Qty" } th { "Einheit" } th.num { "Preis · Price" } th.num { "Netto · Net" } } }
                tbody {
                    @for l in &d.lines {
                        tr {
                            td { (l.line_no) }
                            td { (l.description) @if l.late { br; small { "Nachberechnung für " (l.period) " · late usage of " (l.period) } } }
                            td.num { (de(l.quantity, 6).trim_end_matches('0').trim_end_matches(',')) }
                            td { "GPU-h" }
                            td.num { (eur(l.unit_price)) }
                            td.num { (eur(l.net)) }
                        }
                    }
                }
                tfoot {
                    tr { th colspan="5" { "Summe netto · Net total" } td.num #net-total { (eur(d.net_total)) } }
                    tr {
                        th colspan="5" {
                            "Umsatzsteuer · VAT "
                            @if let Some(r) = d.vat.rate { (de(r, 0)) " %" } @else { "(" (d.vat.category) ")" }
                            " auf · on " (eur(d.vat.taxable))
                        }
                        td.num #vat-total { (eur(d.vat_total)) }
                    }
                    tr.gross { th colspan="5" { "Gesamtbetrag · Total" } td.num #gross-total { (eur(d.gross_total)) } }
                }
            }
            @match d.vat_treatment {
                VatTreatment::ReverseCharge => p.vatnote { "Steuerschuldnerschaft des Leistungsempfängers (§ 13b UStG) · Reverse charge: VAT is due from the recipient (Art. 196 Directive 2006/112/EC)." }
                VatTreatment::NotTaxable => p.vatnote { "Nicht im Inland steuerbare Leistung (§ 3a Abs. 2 UStG) · Not taxable in Germany: place of supply is the customer's country." }
                VatTreatment::Domestic => {}
            }
            @if let Some(reason) = &d.vat.exemption_reason { p.vatnote { (reason) } }
            @for n in &d.notes { p.note { (n) } }
            p.payment {
                @if credit {
                    "Der Betrag wird Ihnen erstattet · The amount will be refunded to you."
                } @else {
                    "Zahlbar bis · Due by " strong { (d.due_date.format("%d.%m.%Y")) } " auf · to IBAN " (s.iban) ", Verwendungszweck · reference " (d.number) "."
                }
            }
            footer.seller-details {
                p { (s.legal_name) " · " (s.street) " · " (s.postal_code) " " (s.city) " · " (s.country) }
                p { "USt-IdNr. " (s.vat_id) " · Steuernummer " (s.tax_number) " · IBAN " (s.iban) }
                p { (s.contact_name) " · " (s.contact_phone) " · " (s.contact_email) }
            }
        }
        p.noprint.downloads {
            a href={"/ui/invoices/" (d.number) "/download/xrechnung.xml"} { "XRechnung (XML)" } " · "
            a href={"/ui/invoices/" (d.number) "/download/invoice.csv"} { "CSV" } " · "
            a href={"/ui/invoices/" (d.number) "/download/invoice.json"} { "JSON" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn german_number_format() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(de(d("1234567.891"), 2), "1.234.567,89");
        assert_eq!(de(d("-1000"), 2), "-1.000,00");
        assert_eq!(de(d("0.5"), 0), "1");
        assert_eq!(de(d("999"), 2), "999,00");
        assert_eq!(de(d("-0.001"), 2), "0,00");
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; gpuledger_token=glt_abc; b=2"));
        assert_eq!(cookie_token(&h).as_deref(), Some("glt_abc"));
        assert_eq!(as_bearer(&h).get(header::AUTHORIZATION).unwrap(), "Bearer glt_abc");
        h.insert(header::COOKIE, HeaderValue::from_static("gpuledger_tokenx=1"));
        assert_eq!(cookie_token(&h), None);
    }
}
