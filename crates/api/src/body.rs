//! JSON request bodies read as I-JSON (RFC 7493): axum's `Json` extractor reads a member named
//! twice as its last value; here such a body is refused (422), like a Kafka message or a loaded
//! file. The rest follows `Json`: 415 without a JSON content type, 400 for text that is not JSON,
//! 422 for JSON of the wrong shape.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use domain::ijson::{self, JsonError};
use serde::de::DeserializeOwned;

/// Reads a request body as a `T`, refusing repeated member names at any depth.
pub(crate) fn ijson_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`",
        ));
    }
    let bytes = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    ijson::from_slice(&bytes).map_err(|e| match e {
        JsonError::Malformed(e) if e.classify() == serde_json::error::Category::Data => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("Failed to deserialize the JSON body: {e}"))
        }
        JsonError::Malformed(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, format!("Failed to parse the JSON body: {e}"))
        }
        JsonError::DuplicateMember(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("not I-JSON: {m}")),
    })
}

/// `application/json`, or `application/<anything>+json`, parameters aside.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::Value;

    fn read(ctype: Option<&str>, body: &str) -> Result<Vec<Value>, StatusCode> {
        let mut h = HeaderMap::new();
        if let Some(c) = ctype {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(c).unwrap());
        }
        ijson_body::<Vec<Value>>(&h, Ok(Bytes::from(body.to_string()))).map_err(|e| e.status())
    }

    #[test]
    fn a_body_is_refused_like_json_and_also_for_a_repeated_name() {
        let json = Some("application/json");
        assert_eq!(read(json, r#"[{"a":1}]"#).unwrap().len(), 1);
        assert!(read(Some("application/problem+json; charset=utf-8"), "[]").is_ok());
        assert_eq!(read(None, "[]"), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(read(Some("text/plain"), "[]"), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(read(json, "[not json"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(read(json, r#"{"a":1}"#), Err(StatusCode::UNPROCESSABLE_ENTITY));
        assert_eq!(read(json, r#"[{"a":1,"a":2}]"#), Err(StatusCode::UNPROCESSABLE_ENTITY));
        assert_eq!(read(json, r#"[{"d":{"a":1,"\u0061":1}}]"#), Err(StatusCode::UNPROCESSABLE_ENTITY));
    }
}
