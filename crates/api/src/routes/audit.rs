//! The auditors' routes: the event log page by page, and the verification of every hash chain.

use super::PAGE_MAX;
use crate::auth::{authorize, CrossTenant, Role, TokenLookup};
use crate::error::{bad_query, internal, ApiError, Problem};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with a sequence number greater than this (default 0).
    pub after: Option<i64>,
    /// Page size, at most 500 (default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEvent {
    pub seq: i64,
    pub stream_id: i32,
    pub stream_pos: i64,
    pub kind: String,
    pub version: i16,
    pub tenant_id: String,
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub src_offset: Option<i64>,
    /// SHA-256 chain hash, hex.
    pub hash: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<LedgerEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

#[utoipa::path(get, path = "/v1/audit/events", params(EventsQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = EventsPage), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn audit_events(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("limit is 1 to {PAGE_MAX}")));
    }
    let mut client = TokenLookup::get(&s).await?;
    let (tx, caller) = client.begin(&s, &headers).await?;
    if !matches!(caller.role, Role::Auditor | Role::Admin) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this route is not open to your role"));
    }
    let sql = format!(
        "SELECT seq, stream_id, stream_pos, kind, version, tenant_id, event_id, occurred_at, recorded_at, src_offset, hash, {}
           FROM api_ledger_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        store::ledger_row::content_columns("")
    );
    let rows = tx.query(&sql, &[&q.after.unwrap_or(0), &limit]).await?;
    tx.commit().await?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let tenant: String = r.get(5);
        let id = store::ledger_row::Identity { event_id: r.get(6), tenant_id: &tenant, occurred_at: r.get(7) };
        let payload = store::ledger_row::content(r, 11, id).map_err(internal)?.payload_json();
        events.push(LedgerEvent {
            seq: r.get(0),
            stream_id: r.get(1),
            stream_pos: r.get(2),
            kind: r.get(3),
            version: r.get(4),
            tenant_id: r.get(5),
            event_id: r.get(6),
            occurred_at: r.get(7),
            recorded_at: r.get(8),
            src_offset: r.get(9),
            hash: r.get::<_, Vec<u8>>(10).iter().map(|b| format!("{b:02x}")).collect(),
            payload,
        });
    }
    let next_after = (events.len() as i64 == limit).then(|| events.last().map(|e| e.seq)).flatten();
    Ok(Json(EventsPage { events, next_after }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// A checkpoint fingerprint kept outside the database (as printed by `gpuledger audit checkpoint`).
    pub receipt: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Break {
    pub seq: Option<i64>,
    pub stream_id: i32,
    /// `topic/partition` of the stream.
    pub stream: String,
    pub stream_pos: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamVerdict {
    pub stream_id: i32,
    pub stream: String,
    pub rows: i64,
    pub intact: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    /// True when every chain, head, counter, checkpoint and receipt agrees with the rows.
    pub intact: bool,
    pub rows: i64,
    pub streams: Vec<StreamVerdict>,
    pub checkpoints: usize,
    pub receipt_found: Option<bool>,
    /// Every break, the first one first.
    pub breaks: Vec<Break>,
}

/// `gpuledger audit verify` over HTTP, for auditors: walks every hash chain of the log.
#[utoipa::path(get, path = "/v1/audit/verify", params(VerifyQuery), security(("bearer" = [])),
    responses((status = 429, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 200, body = Verification), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn audit_verify(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<VerifyQuery>, QueryRejection>,
) -> Result<Json<Verification>, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let receipts = match q.receipt.as_deref() {
        Some(r) => {
            vec![domain::audit::Receipt::parse(r).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?]
        }
        None => vec![],
    };
    authorize(&s, &headers, &[Role::Auditor, Role::Admin]).await?;
    let _permit = s.verifying.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "a verification is already running; try again when it is done")
    })?;
    let has_receipt = !receipts.is_empty();
    let r = CrossTenant::new(&s).run(move |c| store::audit::verify_log(c, &receipts)).await?;
    let breaks: Vec<Break> = r
        .breaks()
        .into_iter()
        .map(|b| Break {
            seq: b.seq,
            stream_id: b.stream_id,
            stream: b.stream,
            stream_pos: b.stream_pos,
            reason: b.reason,
        })
        .collect();
    Ok(Json(Verification {
        intact: breaks.is_empty(),
        rows: r.rows(),
        streams: r
            .streams
            .iter()
            .map(|c| StreamVerdict {
                stream_id: c.stream.stream_id,
                stream: c.stream.name(),
                rows: c.rows,
                intact: c.broken.is_none(),
            })
            .collect(),
        checkpoints: r.checkpoints.len(),
        receipt_found: has_receipt.then(|| r.receipts.iter().all(|x| x.found.is_some())),
        breaks,
    }))
}
