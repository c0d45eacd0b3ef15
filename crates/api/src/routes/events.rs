//! `POST /v1/events`: usage events over HTTP, for producers without Kafka. One CloudEvent
//! (`application/cloudevents+json`) or a batch (`application/cloudevents-batch+json`), from a
//! producer token only. Every event is judged by the ingester's own parser
//! (`domain::usage::parse_usage_event`, `parse_usage_message` for a message keyed by the event's
//! tenant; the reason codes of its quarantine), then by the token's scope (its source, its
//! tenants). A request is accepted whole or not at all: one refused event
//! refuses the batch (400, or 403 when only the scope refused), and nothing of it is produced. An
//! accepted batch is produced to the usage topic, keyed by tenant, each event's bytes exactly as
//! received and validated, and answered 202 only once Kafka acknowledged every event (acks=all);
//! else 503 with Retry-After. A retry is safe: the event id is the idempotency key, and the ledger
//! counts an id it holds as a duplicate.

use super::batch::{split_batch, NotABatch};
use crate::auth::{authenticate_producer, CrossTenant, ProducerScope, Telemetry};
use crate::error::{events_refused, retry_after, ApiError, EventRefusal, EventsProblem, Problem};
use crate::{AppState, Events};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::billing::catalogue::Catalogue;
use domain::usage::RejectionCode;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Most events one request may carry.
pub const EVENTS_PER_BATCH_MAX: usize = 1000;
/// Seconds a client is asked to wait after a 503 (Kafka unavailable) or a 429.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// The reason codes of the token's scope (the parser's codes are `domain::usage::RejectionCode`).
pub const SOURCE_NOT_PERMITTED: &str = "source_not_permitted";
pub const TENANT_NOT_PERMITTED: &str = "tenant_not_permitted";

/// The answer to an accepted request.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAccepted {
    /// Events acknowledged by Kafka; the ingester ledgers them (or counts them as duplicates).
    pub accepted: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    One,
    Batch,
}

/// The two CloudEvents JSON formats (parameters such as `charset=utf-8` aside); anything else 415.
fn shape(headers: &HeaderMap) -> Result<Shape, ApiError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    match value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase().as_str() {
        "application/cloudevents+json" => Ok(Shape::One),
        "application/cloudevents-batch+json" => Ok(Shape::Batch),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/cloudevents+json (one event) or application/cloudevents-batch+json (an array)",
        )),
    }
}

#[utoipa::path(post, path = "/v1/events", security(("bearer" = [])),
    request_body(description = "One usage CloudEvent (schemas/usage-recorded.v1.schema.json), or a JSON array of at most 1000 of them. The whole request is accepted or refused.",
        content((Object = "application/cloudevents+json"), (Vec<Object> = "application/cloudevents-batch+json"))),
    responses(
        (status = 202, description = "Every event was acknowledged by Kafka", body = EventsAccepted),
        (status = 400, description = "Refused events, each with its index and reason; nothing was accepted", body = EventsProblem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a producer token, or events outside its source or tenants (then with `events`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The token's event budget is spent (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Kafka did not acknowledge every event (Retry-After); send the same request again", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn post_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = authenticate_producer(&s, &headers).await?;
    let scope = caller.producer.clone().ok_or_else(|| ApiError::new(StatusCode::FORBIDDEN, "not a producer"))?;
    let Some(ingest) = s.events.clone() else {
        return Ok(retry_after(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "this server has no Kafka for events"),
            60,
        ));
    };
    let shape = shape(&headers)?;
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let events: Vec<&[u8]> = match shape {
        Shape::One => vec![&body[..]],
        Shape::Batch => split_batch(&body, EVENTS_PER_BATCH_MAX).map_err(|e| match e {
            NotABatch::Malformed(at) => ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("malformed_json: the body is not a JSON array of events (at byte {at})"),
            ),
            NotABatch::TooMany(max) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("at most {max} events per request"))
            }
        })?,
    };
    let n = u64::try_from(events.len()).unwrap_or(u64::MAX).max(1);
    if !ingest.limiter.allow_n(caller.token_id, n) {
        let e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("at most {} events per second per producer token", ingest.sink.events_per_second()),
        );
        return Ok(retry_after(e, 1));
    }
    let now = Utc::now();
    let remembered = ingest.catalogue.lock().await.1.clone();
    let mut verdict = judge(&events, &scope, &remembered, now);
    if refuses_an_sku(&verdict) {
        let catalogue = match catalogue(&s, &ingest).await {
            Ok(c) => c,
            Err(unavailable) => return Ok(unavailable),
        };
        verdict = judge(&events, &scope, &catalogue, now);
    }
    let keyed = match verdict {
        Ok(keyed) => keyed,
        Err((status, refusals)) => return Ok(events_refused(status, refusals)),
    };
    let messages: Vec<(&str, &[u8])> = keyed.iter().map(|(k, p)| (k.as_str(), *p)).collect();
    if let Err(e) = ingest.sink.send_all(&messages).await {
        tracing::warn!(error = %e.0, events = messages.len(), "events not acknowledged by kafka");
        let e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Kafka did not acknowledge every event; send the same request again (event ids make it safe)",
        );
        return Ok(retry_after(e, RETRY_AFTER_SECONDS));
    }
    Ok((StatusCode::ACCEPTED, Json(EventsAccepted { accepted: keyed.len() })).into_response())
}

/// Whether the verdict refuses an event for its SKU (`unknown_sku`): only then is the catalogue
/// the server remembers compared with the ledger's. The catalogue only ever grows (`sku.set` adds
/// a version from an instant on; nothing removes one), so an SKU the remembered catalogue knows at
/// an instant, the ledger's knows too, and a verdict without `unknown_sku` stands as it is,
/// without a round trip to PostgreSQL per request.
fn refuses_an_sku(verdict: &Verdict<'_>) -> bool {
    let unknown = RejectionCode::UnknownSku.as_str();
    verdict.as_ref().is_err_and(|(_, refused)| refused.iter().any(|r| r.reason == unknown))
}

/// The SKU catalogue as the ledger holds it now, read again only when the reference stream moved
/// (as the ingester's writer does), so both paths refuse exactly the same SKUs.
async fn catalogue(s: &AppState, ingest: &Events) -> Result<Arc<Catalogue>, Response> {
    let unavailable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "the SKU catalogue could not be read");
        retry_after(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the database is not available"),
            RETRY_AFTER_SECONDS,
        )
    };
    let telemetry = Telemetry::get(s).await.map_err(|e| unavailable(&e))?;
    let head = telemetry.reference_head().await.map_err(|e| unavailable(&e))?;
    drop(telemetry);
    let mut cached = ingest.catalogue.lock().await;
    if cached.0 != Some(head) {
        let read = CrossTenant::new(s)
            .run(move |c| store::append::read_catalogue(c, head))
            .await
            .map_err(|e| unavailable(&e.detail()))?;
        *cached = (Some(head), Arc::new(read));
    }
    Ok(cached.1.clone())
}

/// Accepted events: each one's tenant (its Kafka key) and its bytes as received.
type Keyed<'a> = Vec<(String, &'a [u8])>;

/// What [`judge`] decided: every event accepted, or the refusals and the answer's status.
type Verdict<'a> = Result<Keyed<'a>, (StatusCode, Vec<EventRefusal>)>;

/// Each event as the ingester would judge it, then against the token's scope: the (tenant key,
/// bytes) to produce, or every refusal with the status of the answer (400; 403 when only the
/// scope refused).
fn judge<'a>(events: &[&'a [u8]], scope: &ProducerScope, catalogue: &Catalogue, now: DateTime<Utc>) -> Verdict<'a> {
    let (mut keyed, mut refused, mut invalid) = (Vec::with_capacity(events.len()), Vec::new(), false);
    for (index, bytes) in events.iter().enumerate() {
        // The ingester's parser for a message keyed by the event's own tenant, as it is produced.
        match domain::usage::parse_usage_event(bytes, now) {
            Err(r) => {
                invalid = true;
                let reason = r.code.as_str().to_string();
                refused.push(EventRefusal { index, reason, detail: r.message, event_id: r.event_id });
            }
            // The ingester's rule (`domain::decide`): an SKU the catalogue does not list then.
            Ok(u) if !catalogue.knows(&u.gpu_sku, u.interval_start) => {
                invalid = true;
                refused.push(EventRefusal {
                    index,
                    reason: RejectionCode::UnknownSku.as_str().to_string(),
                    detail: format!("gpu_sku {:?} is not in the SKU catalogue at interval_start", u.gpu_sku),
                    event_id: Some(u.event_id),
                });
            }
            Ok(u) if u.source != scope.source => refused.push(EventRefusal {
                index,
                reason: SOURCE_NOT_PERMITTED.into(),
                detail: format!("source {:?} is not this token's", u.source),
                event_id: Some(u.event_id),
            }),
            Ok(u) if !scope.permits_tenant(&u.tenant_id) => refused.push(EventRefusal {
                index,
                reason: TENANT_NOT_PERMITTED.into(),
                detail: format!("this token may not report for tenant {:?}", u.tenant_id),
                event_id: Some(u.event_id),
            }),
            Ok(u) => keyed.push((u.tenant_id, *bytes)),
        }
    }
    if refused.is_empty() {
        Ok(keyed)
    } else {
        Err((if invalid { StatusCode::BAD_REQUEST } else { StatusCode::FORBIDDEN }, refused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const EVENT: &str = r#"{"specversion":"1.0","id":"0b9e2f4a-6c1d-4e8f-a2b3-c4d5e6f70801","source":"//fra1/x","type":"de.gpuledger.usage.recorded.v1","data":{"tenant_id":"rheinbank","gpu_sku":"nvidia-h100-sxm","gpu_id":"GPU-3f1c2a9e-8d7b-4c6a-9e5f-0a1b2c3d4e5f","node":"n1","project":"p","interval_start":"2026-10-01T00:00:00Z","interval_end":"2026-10-01T00:01:00Z","gpu_seconds":"60"}}"#;

    fn scope(source: &str, tenants: &[&str]) -> ProducerScope {
        ProducerScope { source: source.into(), tenants: tenants.iter().map(|t| t.to_string()).collect() }
    }

    /// The status and each refused event's (index, reason).
    type Refused = (u16, Vec<(usize, String)>);

    fn reasons(events: &[&str], scope: &ProducerScope) -> Result<Vec<String>, Refused> {
        let bytes: Vec<&[u8]> = events.iter().map(|e| e.as_bytes()).collect();
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        judge(&bytes, scope, &Catalogue::initial(), now)
            .map(|k| k.into_iter().map(|(t, _)| t).collect())
            .map_err(|(s, r)| (s.as_u16(), r.into_iter().map(|r| (r.index, r.reason)).collect()))
    }

    #[test]
    fn events_are_judged_by_the_parser_then_by_the_scope() {
        let ok = scope("//fra1/x", &["rheinbank"]);
        assert_eq!(reasons(&[EVENT, EVENT], &ok), Ok(vec!["rheinbank".to_string(), "rheinbank".to_string()]));
        let bad = EVENT.replace("\"60\"", "\"61\"");
        let (status, r) = reasons(&[EVENT, &bad, "{", EVENT], &ok).unwrap_err();
        assert_eq!(status, 400);
        assert_eq!(r, vec![(1, "gpu_seconds_exceed_interval".into()), (2, "malformed_json".into())]);
        let r = reasons(&[EVENT], &scope("//fra1/y", &["rheinbank"])).unwrap_err();
        assert_eq!(r, (403, vec![(0, SOURCE_NOT_PERMITTED.into())]));
        let r = reasons(&[EVENT], &scope("//fra1/x", &["falke-drones"])).unwrap_err();
        assert_eq!(r, (403, vec![(0, TENANT_NOT_PERMITTED.into())]));
        // A parser refusal outranks the scope's: the answer is 400.
        let r = reasons(&[&bad, EVENT], &scope("//fra1/x", &["falke-drones"])).unwrap_err();
        assert_eq!(r, (400, vec![(0, "gpu_seconds_exceed_interval".into()), (1, TENANT_NOT_PERMITTED.into())]));
    }

    #[test]
    fn only_the_two_cloudevents_formats_are_taken() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            shape(&h).map_err(|e| e.status().as_u16())
        };
        assert_eq!(with("application/cloudevents+json"), Ok(Shape::One));
        assert_eq!(with("Application/CloudEvents-Batch+JSON; charset=utf-8"), Ok(Shape::Batch));
        assert_eq!(with("application/json"), Err(415));
        assert_eq!(shape(&HeaderMap::new()).map_err(|e| e.status().as_u16()), Err(415));
    }
}
