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
mod finance;
mod invoice;
mod layout;
mod session;
mod tenant;

use crate::AppState;
use axum::routing::get;
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(session::home))
        .route("/ui/app.css", get(layout::css))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", axum::routing::post(session::logout))
        .route("/ui/usage", get(tenant::usage_page))
        .route("/ui/finance", get(finance::finance_page))
        .route("/ui/invoices/{number}", get(invoice::invoice_page))
        .route("/ui/invoices/{number}/download/{format}", get(invoice::invoice_download))
        .route("/ui/exports/{period}/{file}", get(finance::export_download))
}
