//! Signing in and out. Signing in with an API token opens a short server-side session
//! (`ui_sessions`, migration 0008): the browser keeps only the session's random id, in a
//! `__Host-` cookie (Secure, HttpOnly, SameSite=Strict, Path=/), never the token; every page
//! passes it to the API's walls as `Authorization: Session ...`. Signing out ends the session in
//! the database, so a copy of the cookie is worth nothing afterwards. Both forms refuse a
//! request from another origin (403).

use super::layout::{page, page_error};
use crate::auth::{Caller, Role, TokenLookup, SESSION_HOURS};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

const COOKIE: &str = "__Host-gpuledger_session";
pub(super) const CLEAR_COOKIE: &str = "__Host-gpuledger_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0";

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')).map(str::to_string))
}

/// The request's headers as the API sees them: only the cookie's session, as its credential.
pub(super) fn as_bearer(headers: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = cookie_session(headers).and_then(|t| HeaderValue::from_str(&format!("Session {t}")).ok()) {
        h.insert(header::AUTHORIZATION, v);
    }
    h
}

/// Who the browser is (authenticated like any API request).
pub(super) async fn who(s: &AppState, h: &HeaderMap) -> Result<Caller, ApiError> {
    let mut client = TokenLookup::get(s).await?;
    let (tx, caller) = client.begin(s, h).await?;
    tx.commit().await?;
    Ok(caller)
}

pub(super) async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match who(&s, &as_bearer(&headers)).await {
        Ok(c) if c.role == Role::Tenant => Redirect::to("/ui/usage").into_response(),
        Ok(_) => Redirect::to("/ui/finance").into_response(),
        Err(e) => page_error(e),
    }
}

pub(super) async fn login_form() -> Response {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            p { "Paste the API token you were given (" code { "gpuledger tokens create" } "). You stay signed in for a few hours or until you sign out; the token itself is not kept." }
            form.login method="post" action="/ui/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

/// Whether a form was posted from this site: its `Origin` names the host the request was sent
/// to (`Host`). Browsers send `Origin` with every form POST; a request without one is refused
/// too. Behind a proxy, the proxy must pass the original `Host` on.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (get(header::ORIGIN), get(header::HOST)) else {
        return false;
    };
    origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) == Some(host)
}

fn cross_origin() -> Response {
    page_error(ApiError::new(StatusCode::FORBIDDEN, "this form may only be sent from this site"))
}

pub(super) async fn login(
    State(s): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return cross_origin();
    }
    let Ok(Form(f)) = form else {
        return page_error(ApiError::new(StatusCode::BAD_REQUEST, "the form needs a token"));
    };
    let token = f.token.trim().to_string();
    let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return page_error(ApiError::new(StatusCode::BAD_REQUEST, "that is not a token"));
    };
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, v);
    match open_session(&s, &h).await {
        Ok(session) => {
            let mut r = Redirect::to("/ui").into_response();
            let cookie = format!(
                "{COOKIE}={session}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
                SESSION_HOURS * 3600
            );
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

/// Authenticates the token and opens a session for it.
async fn open_session(s: &AppState, h: &HeaderMap) -> Result<String, ApiError> {
    let client = TokenLookup::get(s).await?;
    let caller = client.authenticate(s, h).await?;
    client.open_session(&caller).await
}

pub(super) async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return cross_origin();
    }
    if let Some(session) = cookie_session(&headers) {
        let ended = match TokenLookup::get(&s).await {
            Ok(client) => client.end_session(&session).await,
            Err(e) => Err(e),
        };
        if let Err(e) = ended {
            return page_error(e);
        }
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_static(CLEAR_COOKIE));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; __Host-gpuledger_session=gls_abc; b=2"));
        assert_eq!(cookie_session(&h).as_deref(), Some("gls_abc"));
        assert_eq!(as_bearer(&h).get(header::AUTHORIZATION).unwrap(), "Session gls_abc");
        h.insert(header::COOKIE, HeaderValue::from_static("__Host-gpuledger_sessionx=1; gpuledger_session=2"));
        assert_eq!(cookie_session(&h), None);
    }

    #[test]
    fn forms_are_taken_only_from_this_site() {
        let h = |origin: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("ledger.example:8080"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_static(o));
            }
            h
        };
        assert!(same_origin(&h(Some("http://ledger.example:8080"))));
        assert!(same_origin(&h(Some("https://ledger.example:8080"))));
        for other in [None, Some("null"), Some("http://evil.example"), Some("http://ledger.example:8080.evil.example")]
        {
            assert!(!same_origin(&h(other)), "{other:?}");
        }
    }
}
