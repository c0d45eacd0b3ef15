//! The first check of every request, before any handler: the path and the query, percent-decoded,
//! must be UTF-8 without control characters, and the query has a length limit. So a NUL, a line
//! break or a broken UTF-8 sequence in any parameter of any route, present or future, is a 400
//! here, and never reaches PostgreSQL (which refuses NUL in text with an error) or a log line.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

/// Longest query string accepted (the longest real one is a usage query of about 150 bytes).
pub const QUERY_MAX_BYTES: usize = 2048;

/// Why a request target is refused, or `None` when it is acceptable.
pub(crate) fn refusal(path: &str, query: Option<&str>) -> Option<ApiError> {
    if query.is_some_and(|q| q.len() > QUERY_MAX_BYTES) {
        return Some(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the query is longer than {QUERY_MAX_BYTES} bytes"),
        ));
    }
    // A query's `+` is a space and `=`/`&` separate; checking each decoded piece is checking the whole.
    let pieces = std::iter::once(path).chain(query.into_iter().flat_map(|q| q.split(['&', '='])));
    for piece in pieces {
        let Ok(text) = percent_decode_str(piece).decode_utf8() else {
            return Some(ApiError::new(StatusCode::BAD_REQUEST, "the request target is not UTF-8 once decoded"));
        };
        if text.chars().any(char::is_control) {
            return Some(ApiError::new(StatusCode::BAD_REQUEST, "the request target holds a control character"));
        }
    }
    None
}

pub(crate) async fn check_target(req: Request, next: Next) -> Response {
    match refusal(req.uri().path(), req.uri().query()) {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, query: Option<&str>, status: Option<u16>) {
        assert_eq!(refusal(path, query).map(|e| e.status().as_u16()), status, "{path} {query:?}");
    }

    #[test]
    fn control_characters_and_broken_utf8_are_refused_anywhere_in_the_target() {
        check("/v1/invoices/GL-2026-000001", Some("period=2026-08&x=%C3%A4"), None);
        check("/v1/invoices/a%00b", None, Some(400));
        check("/v1/invoices/a%0Ab", None, Some(400));
        check("/v1/invoices/a%7F", None, Some(400));
        check("/v1/invoices", Some("period=%00"), Some(400));
        check("/v1/invoices", Some("per%01iod=1"), Some(400));
        check("/v1/invoices", Some("period=%FF"), Some(400));
        check("/v1/invoices", Some("period=%ED%A0%80"), Some(400));
        check("/v1/invoices/%C3", None, Some(400));
        check("/v1/invoices", Some(&"a".repeat(QUERY_MAX_BYTES + 1)), Some(414));
    }
}
