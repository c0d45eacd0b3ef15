//! What every page shares: the frame with its navigation, the security headers, the error page,
//! the style sheet, attachments, and German number formatting.

use super::session::CLEAR_COOKIE;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};
use rust_decimal::Decimal;

const CSS: &str = include_str!("app.css");
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The headers of every page. The referrer policy is `same-origin`, not `no-referrer`: with
/// `no-referrer` browsers send `Origin: null` even with the site's own forms, which the sign-in
/// and sign-out forms' origin check would refuse; other sites still get neither.
pub(super) fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn page(title: &str, caller: Option<&Caller>, body: Markup) -> Response {
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

/// A page's error: a missing or bad token goes to the sign-in page, the rest is shown as a page
/// with the API's status and message (never database text, as in the API).
pub(super) fn page_error(e: ApiError) -> Response {
    if e.status() == StatusCode::UNAUTHORIZED {
        let mut r = Redirect::to("/ui/login").into_response();
        r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
        r.extensions_mut().insert(crate::access::Refused(StatusCode::UNAUTHORIZED));
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

pub(super) async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], CSS).into_response()
}

pub(super) fn attachment(mut r: Response, file: &str) -> Response {
    let safe: String = file.chars().filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c)).collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    secure_headers(r)
}

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

/// An amount in EUR, German style (`Money`, a `UnitPrice` or a report's decimal).
pub(super) fn eur(d: impl Into<Decimal>) -> String {
    format!("{} €", de(d.into(), 2))
}

pub(super) fn hours(d: Decimal) -> String {
    de(d, 2)
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
}
