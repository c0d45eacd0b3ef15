//! The API's one error type: a status and a detail for the caller, answered as RFC 9457 problem
//! details; the cause of an internal error goes to the log, never into the response.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError(status, detail.into())
    }
    pub(crate) fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "no such object")
    }
    pub(crate) fn status(&self) -> StatusCode {
        self.0
    }
    /// What the caller is told (never database text).
    pub(crate) fn detail(&self) -> &str {
        &self.1
    }
}

pub(crate) fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
}

pub(crate) fn bad_path(e: PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank".into(),
            title: self.0.canonical_reason().unwrap_or("error").into(),
            status: self.0.as_u16(),
            detail: self.1,
        };
        let mut r = (self.0, Json(body)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

pub(crate) fn internal<E: std::fmt::Display>(e: E) -> ApiError {
    // The cause goes to the log, never to the client.
    tracing::error!(error = %e, "request failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}
