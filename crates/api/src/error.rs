//! The API's one error type: a status and a detail for the caller, answered as RFC 9457 problem
//! details; the cause of an internal error goes to the log, never into the response. The one place
//! where a store refusal's kind becomes a status.

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

/// RFC 9457 problem details for events refused by `POST /v1/events`: the usual members and, as
/// an extension member, each refused event with its place in the body and its reason code (the
/// codes the ingester quarantines with, and `source_not_permitted` / `tenant_not_permitted`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsProblem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub events: Vec<EventRefusal>,
}

/// One refused event of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventRefusal {
    /// Its place in the batch, from 0 (always 0 for a single event).
    pub index: usize,
    /// The reason code, stable (see docs/api.md).
    pub reason: String,
    /// The reason for people.
    pub detail: String,
    /// The event's id, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<uuid::Uuid>,
}

/// The problem type of [`EventsProblem`].
pub const EVENTS_REFUSED_TYPE: &str = "urn:gpuledger:problem:events-refused";

/// Answers refused events: 400, or 403 when every refusal is about the token's scope.
pub(crate) fn events_refused(status: StatusCode, events: Vec<EventRefusal>) -> Response {
    let detail = format!("{} event(s) refused; nothing of this request was accepted", events.len());
    let body = EventsProblem {
        kind: EVENTS_REFUSED_TYPE.into(),
        title: status.canonical_reason().unwrap_or("error").into(),
        status: status.as_u16(),
        detail,
        events,
    };
    let mut r = (status, Json(body)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    r
}

/// A problem answer that tells the client when to try again (429, 503).
pub(crate) fn retry_after(e: ApiError, seconds: u32) -> Response {
    let mut r = e.into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    r
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

/// A refusal answers with its kind's status and its message (the domain's cause included, never
/// database text); any other store error is internal.
impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> ApiError {
        match e {
            store::StoreError::Refused(r) => {
                let status = match r.kind() {
                    store::RefusalKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                    store::RefusalKind::Conflict => StatusCode::CONFLICT,
                    store::RefusalKind::NotFound => StatusCode::NOT_FOUND,
                };
                ApiError::new(status, r.message())
            }
            other => internal(other),
        }
    }
}

/// The answer to a handler that panicked (a bug: the cause goes to the log), so that a panic is
/// still a problem document and never a dropped connection.
pub(crate) fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    internal(format_args!("handler panicked: {what}")).into_response()
}

pub(crate) fn internal<E: std::fmt::Display>(e: E) -> ApiError {
    // The cause goes to the log, never to the client.
    tracing::error!(error = %e, "request failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{Refusal, StoreError};

    fn check(e: StoreError, status: StatusCode, detail: &str) {
        let a = ApiError::from(e);
        assert_eq!((a.status(), a.detail()), (status, detail));
    }

    #[test]
    fn each_kind_of_refusal_has_its_status_and_keeps_its_message() {
        let period = domain::billing::Period::parse("2026-08").unwrap();
        check(
            Refusal::PeriodNotOver { period, ends_at: period.end() }.into(),
            StatusCode::CONFLICT,
            "period 2026-08 is not over yet (it ends at 2026-08-31 22:00:00 UTC)",
        );
        let source =
            domain::billing::reference::RefError { field: "tiers".into(), message: "must not be empty".into() };
        check(
            Refusal::InvalidItem { item: 1, event_kind: "price_list.set".into(), source: source.into() }.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "item 1 (price_list.set): tiers: must not be empty",
        );
        check(
            Refusal::NoToken(uuid::Uuid::nil()).into(),
            StatusCode::NOT_FOUND,
            "no token 00000000-0000-0000-0000-000000000000",
        );
        check(StoreError::Raced, StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    }
}
