//! The pooled connection before the wall: it authenticates the bearer token and then opens the
//! tenant wall for the caller.

use super::{log_access, Caller, Role, WallKey, Walled};
use crate::error::{internal, ApiError};
use crate::limit::RATE_PER_SECOND;
use crate::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Utc};

/// A pooled connection as the API's login role (`gpuledger_api`), before the wall. Until a wall
/// is opened that role sees no tenant's rows and no token table, so this type runs only the token
/// lookup (`api_token_lookup`, one token by the hash of its secret), the access log of an answer
/// served from the cache (which read nothing), and [`TokenLookup::wall`], which turns it into a
/// [`Walled`] transaction for everything else.
pub(crate) struct TokenLookup(deadpool_postgres::Object);

impl TokenLookup {
    pub(crate) async fn get(state: &AppState) -> Result<TokenLookup, ApiError> {
        Ok(TokenLookup(state.pool.get().await.map_err(internal)?))
    }

    /// Opens the request's transaction with its limits, authenticates the bearer
    /// token and sets the tenant wall for the transaction.
    pub(crate) async fn begin(
        &mut self,
        state: &AppState,
        headers: &HeaderMap,
    ) -> Result<(Walled<'_>, Caller), ApiError> {
        let caller = self.authenticate(state, headers).await?;
        let tx = self.wall(&caller).await?;
        Ok((tx, caller))
    }

    /// Authenticates the bearer token (one statement, no transaction) and takes one request from
    /// its rate budget.
    pub(crate) async fn authenticate(&self, state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let client = &self.0;
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
        let stmt = client
            .prepare_cached("SELECT token_id, role, tenant_id, expires_at, revoked FROM api_token_lookup($1)")
            .await
            .map_err(internal)?;
        let hash = store::tokens::hash_token(token);
        let row = client.query_opt(&stmt, &[&hash]).await.map_err(internal)?;
        let row = row.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
        let expires: DateTime<Utc> = row.get(3);
        if row.get::<_, bool>(4) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token was revoked"));
        }
        if expires <= Utc::now() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token has expired"));
        }
        let role = match row.get::<_, &str>(1) {
            "tenant" => Role::Tenant,
            "finance" => Role::Finance,
            "auditor" => Role::Auditor,
            _ => Role::Admin,
        };
        let caller = Caller { token_id: row.get(0), role, tenant: row.get(2), wall_key: WallKey(hash) };
        if !state.limiter.allow(caller.token_id) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {RATE_PER_SECOND} requests per second per token"),
            ));
        }
        Ok(caller)
    }

    /// The wall for an authenticated caller (see [`Walled`]).
    pub(crate) async fn wall(&mut self, caller: &Caller) -> Result<Walled<'_>, ApiError> {
        Walled::open(&mut self.0, caller).await
    }

    /// Logs a finance or auditor read that was answered from the cache, outside any transaction.
    pub(crate) async fn log_cached_access(&self, caller: &Caller, method: &str, path: &str) -> Result<(), ApiError> {
        log_access(&self.0, caller, method, path).await
    }
}
