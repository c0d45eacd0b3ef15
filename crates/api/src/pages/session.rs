//! Signing in and out: the token kept in a cookie scoped to `/ui` and sent back as the bearer
//! token, so every page goes through the API's walls.

use super::layout::{page, page_error};
use crate::auth::{Caller, Role, TokenLookup};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

const COOKIE: &str = "gpuledger_token";
pub(super) const CLEAR_COOKIE: &str = "gpuledger_token=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0";

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE).and_then(|r| r.strip_prefix('=')).map(str::to_string))
}

/// The request's headers as the API sees them: the cookie's token as the bearer token.
pub(super) fn as_bearer(headers: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = cookie_token(headers).and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
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
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(
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

pub(super) async fn logout() -> Response {
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
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; gpuledger_token=glt_abc; b=2"));
        assert_eq!(cookie_token(&h).as_deref(), Some("glt_abc"));
        assert_eq!(as_bearer(&h).get(header::AUTHORIZATION).unwrap(), "Bearer glt_abc");
        h.insert(header::COOKIE, HeaderValue::from_static("gpuledger_tokenx=1"));
        assert_eq!(cookie_token(&h), None);
    }
}
