//! The access log: one row per finance, auditor or admin request and per refused request (any
//! 4xx or 5xx, with or without a valid token), written once the response is known, so with its
//! real status and the concrete path and query as sent. A read whose row cannot be written is
//! not answered (500). Tenants' own successful reads are not logged, nor producers' accepted
//! posts (`POST /v1/events`: the events themselves are their record, in Kafka and the ledger,
//! and a row per request would cost a commit per hundred events). A page that sends the browser
//! to the sign-in because its session was refused is logged with that refusal's status.
//!
//! Who asked is only known deep inside a handler (the token is looked up there); the lookup
//! notes the caller in a slot that lives as long as the request ([`note_caller`]).

use crate::auth::{log_request, Caller, Role};
use crate::error::internal;
use crate::metrics::method_label;
use crate::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};

/// Longest path with query kept in the log (the input check allows queries of 2 KiB).
pub const LOGGED_TARGET_MAX: usize = 4096;

tokio::task_local! {
    static CALLER: Arc<Mutex<Option<Caller>>>;
}

/// Put on a response that presents a refusal otherwise (a page's redirect to the sign-in after
/// a refused credential): the status the log records.
#[derive(Clone, Copy)]
pub(crate) struct Refused(pub axum::http::StatusCode);

/// Notes who the request is from (called by the token lookup once a token is known).
pub(crate) fn note_caller(c: &Caller) {
    let _ = CALLER.try_with(|slot| *slot.lock().expect("caller slot") = Some(c.clone()));
}

pub(crate) async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    // As sent: percent-encoded, so ASCII without control characters whatever it holds.
    let target: String = req.uri().path_and_query().map_or(req.uri().path(), |p| p.as_str()).to_string();
    let target = match target.char_indices().nth(LOGGED_TARGET_MAX) {
        Some((cut, _)) => target[..cut].to_string(),
        None => target,
    };
    let slot = Arc::new(Mutex::new(None));
    let resp = CALLER.scope(slot.clone(), next.run(req)).await;
    let caller = slot.lock().expect("caller slot").take();
    let status = resp.extensions().get::<Refused>().map_or(resp.status(), |r| r.0);
    let refused = status.is_client_error() || status.is_server_error();
    if !refused && caller.as_ref().is_none_or(|c| matches!(c.role, Role::Tenant | Role::Producer)) {
        return resp;
    }
    match log_request(&s, caller.as_ref(), method, &target, status.as_u16()).await {
        Ok(()) => resp,
        Err(e) if !refused => internal(format_args!("the access log refused a row: {}", e.detail())).into_response(),
        Err(_) => resp,
    }
}
