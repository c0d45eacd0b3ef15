//! Who is asking and what they may read. The tenant comes from the bearer token, never from the
//! URL ([`TokenLookup`]); every query over tenants' rows runs behind the tenant wall ([`Walled`]);
//! the few paths to the database outside it are named for what they may do ([`TokenLookup`],
//! [`CrossTenant`], [`Telemetry`]). Finance and auditor reads go to the append-only access log.

mod token;
mod unwalled;
mod wall;

pub(crate) use token::TokenLookup;
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
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: Uuid,
    pub role: Role,
    pub tenant: Option<String>,
    /// What opens the wall for this caller's transactions (see [`Walled`]).
    pub(crate) wall_key: WallKey,
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

/// Authenticates, checks the role (403 otherwise) and logs the access; the transaction ends here.
pub(crate) async fn authorize(
    s: &AppState,
    headers: &HeaderMap,
    roles: &[Role],
    method: &str,
    path: &str,
) -> Result<Caller, ApiError> {
    let mut client = TokenLookup::get(s).await?;
    let (tx, caller) = client.begin(s, headers).await?;
    if !roles.contains(&caller.role) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this route is not open to your role"));
    }
    tx.log_access(&caller, method, path).await?;
    tx.commit().await?;
    Ok(caller)
}

/// Finance and auditor reads go to the append-only access log, in the read's transaction.
async fn log_access(
    db: &impl deadpool_postgres::GenericClient,
    c: &Caller,
    method: &str,
    path: &str,
) -> Result<(), ApiError> {
    if matches!(c.role, Role::Finance | Role::Auditor | Role::Admin) {
        let role = format!("{:?}", c.role).to_lowercase();
        db.execute(
            "INSERT INTO access_log (at, token_id, role, tenant_id, method, path, status) VALUES (now(), $1, $2, $3, $4, $5, 200)",
            &[&c.token_id, &role, &c.tenant, &method, &path],
        )
        .await
        .map_err(internal)?;
    }
    Ok(())
}
