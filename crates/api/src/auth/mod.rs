//! Who is asking and what they may read. The tenant comes from the bearer token, never from the
//! URL ([`TokenLookup`]); every query over tenants' rows runs behind the tenant wall ([`Walled`]);
//! the few paths to the database outside it are named for what they may do ([`TokenLookup`],
//! [`CrossTenant`], [`Telemetry`]). Finance and auditor reads go to the append-only access log.

mod producers;
mod token;
mod unwalled;
mod wall;

pub(crate) use producers::{authenticate_producer, ProducerTokens};
pub(crate) use token::{TokenLookup, SESSION_HOURS};
pub(crate) use unwalled::{CrossTenant, StreamCounts, Telemetry};
pub(crate) use wall::Walled;

use crate::error::{internal, ApiError};
use crate::AppState;
use axum::http::{HeaderMap, StatusCode};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Tenant,
    Finance,
    Auditor,
    Admin,
    /// Posts usage events (`POST /v1/events`) for its source and tenants, and nothing else.
    Producer,
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: Uuid,
    pub role: Role,
    pub tenant: Option<String>,
    /// What a producer token may report (`None` for every other role).
    pub producer: Option<std::sync::Arc<ProducerScope>>,
    /// What opens the wall for this caller's transactions (see [`Walled`]).
    pub(crate) wall_key: WallKey,
}

/// A producer token's scope: the one CloudEvents `source` its events carry and the tenants they
/// may be for (sorted, without repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerScope {
    pub source: String,
    pub tenants: Vec<String>,
}

impl ProducerScope {
    pub(crate) fn permits_tenant(&self, tenant: &str) -> bool {
        self.tenants.binary_search_by(|t| t.as_str().cmp(tenant)).is_ok()
    }
}

/// The SHA-256 of the caller's token, which `api_open_wall` takes to set the wall's scope; kept
/// out of `Debug` output like the token itself.
#[derive(Clone)]
pub(crate) struct WallKey(pub(crate) Vec<u8>);

impl std::fmt::Debug for WallKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallKey(..)")
    }
}

pub(crate) const FINANCE: &[Role] = &[Role::Finance, Role::Admin];
pub(crate) const READERS: &[Role] = &[Role::Finance, Role::Auditor, Role::Admin];

/// Authenticates and checks the role (403 otherwise); the access log records the request.
pub(crate) async fn authorize(s: &AppState, headers: &HeaderMap, roles: &[Role]) -> Result<Caller, ApiError> {
    let client = TokenLookup::get(s).await?;
    let caller = client.authenticate(s, headers).await?;
    if !roles.contains(&caller.role) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this route is not open to your role"));
    }
    Ok(caller)
}

/// One row of the append-only access log (see [`crate::access`]), as `gpuledger_api` (which may
/// only insert there), in its own transaction.
pub(crate) async fn log_request(
    s: &AppState,
    caller: Option<&Caller>,
    method: &str,
    target: &str,
    status: u16,
) -> Result<(), ApiError> {
    let mut client = s.pool.get().await.map_err(internal)?;
    let tx = client.transaction().await.map_err(internal)?;
    tx.batch_execute("SET LOCAL ROLE gpuledger_api").await.map_err(internal)?;
    let role = caller.map(|c| format!("{:?}", c.role).to_lowercase());
    tx.execute(
        "INSERT INTO access_log (at, token_id, role, tenant_id, method, path, status) VALUES (now(), $1, $2, $3, $4, $5, $6)",
        &[&caller.map(|c| c.token_id), &role, &caller.and_then(|c| c.tenant.clone()), &method, &target, &(status as i16)],
    )
    .await
    .map_err(internal)?;
    tx.commit().await.map_err(internal)
}
