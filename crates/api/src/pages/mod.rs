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
mod coverage;
mod finance;
mod invoice;
mod layout;
mod session;
mod tenant;

use crate::AppState;
use axum::routing::{get, post, MethodRouter};

/// The pages' routes (merged into the API's route table).
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/ui", get(session::home)),
        ("/ui/app.css", get(layout::css)),
        ("/ui/login", get(session::login_form).post(session::login)),
        ("/ui/logout", post(session::logout)),
        ("/ui/usage", get(tenant::usage_page)),
        ("/ui/finance", get(finance::finance_page)),
        ("/ui/invoices/{number}", get(invoice::invoice_page)),
        ("/ui/invoices/{number}/download/{format}", get(invoice::invoice_download)),
        ("/ui/exports/{period}/{file}", get(finance::export_download)),
    ]
}
