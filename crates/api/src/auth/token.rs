//! The pooled connection before the wall: it authenticates the bearer token and then opens the
//! tenant wall for the caller.

use super::{Caller, ProducerScope, Role, WallKey, Walled};
use crate::error::{internal, ApiError};
use crate::limit::RATE_PER_SECOND;
use crate::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// A pooled connection as the API's login role (`gpuledger_api`), before the wall. Until a wall
/// is opened that role sees no tenant's rows and no token table, so this type runs only the token
/// lookup (`api_token_lookup`, one token by the hash of its secret), the access log of an answer
/// served from the cache (which read nothing), and [`TokenLookup::wall`], which turns it into a
/// [`Walled`] transaction for everything else.
pub(crate) struct TokenLookup(deadpool_postgres::Object);

/// Hours a web page sign-in lasts (a working day).
pub(crate) const SESSION_HOURS: i32 = 8;

/// A token by its hash: (id, role, tenant, expiry, revoked, the hash again, a producer's source
/// and tenants).
const TOKEN_SQL: &str =
    "SELECT token_id, role, tenant_id, expires_at, revoked, $1::bytea, source, tenants FROM api_token_lookup($1)";

/// A sign-in session by its hash, as its token: (id, role, tenant, the earlier expiry, revoked or
/// signed out, the token's hash, which opens the wall).
/// (A producer token opens no session, migration 0015, so it has no scope here.)
const SESSION_SQL: &str = "SELECT token_id, role, tenant_id, expires_at, revoked, token_hash, NULL::text, NULL::text[]
     FROM api_session_lookup($1)";

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

    /// Authenticates the request (one statement, no transaction) and takes one request from its
    /// token's rate budget. `Authorization: Bearer glt_...` is an API token; `Session gls_...` a
    /// web page's sign-in (see [`crate::pages`]), which stands for its token until it ends. A
    /// producer token is refused here (403): it may only post events ([`Self::authenticate_producer`]).
    pub(crate) async fn authenticate(&self, state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let caller = self.identify(headers).await?;
        if caller.role == Role::Producer {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a producer token may only post events (POST /v1/events)",
            ));
        }
        if !state.limiter.allow(caller.token_id) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {RATE_PER_SECOND} requests per second per token"),
            ));
        }
        Ok(caller)
    }

    /// Authenticates a producer token (403 for any other role). Its rate budget is counted in
    /// events by the route ([`crate::routes::events`]), not in requests.
    /// With the caller, the token's expiry (for [`super::ProducerTokens`]).
    pub(crate) async fn authenticate_producer(&self, headers: &HeaderMap) -> Result<(Caller, DateTime<Utc>), ApiError> {
        let (caller, expires) = self.identify_until(headers).await?;
        if caller.role != Role::Producer || caller.producer.is_none() {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "only a producer token may post events"));
        }
        Ok((caller, expires))
    }

    /// Who the credential belongs to, if it is valid now (401 otherwise); noted for the access log.
    async fn identify(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.identify_until(headers).await.map(|(caller, _)| caller)
    }

    /// [`Self::identify`], with the credential's expiry.
    async fn identify_until(&self, headers: &HeaderMap) -> Result<(Caller, DateTime<Utc>), ApiError> {
        let client = &self.0;
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let (sql, secret, what) = if let Some(t) = auth.strip_prefix("Bearer ") {
            (TOKEN_SQL, t, "token")
        } else if let Some(t) = auth.strip_prefix("Session ") {
            (SESSION_SQL, t, "session")
        } else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"));
        };
        let stmt = client.prepare_cached(sql).await.map_err(internal)?;
        let row = client.query_opt(&stmt, &[&store::tokens::hash_token(secret)]).await.map_err(internal)?;
        let row = row.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, format!("unknown {what}")))?;
        let expires: DateTime<Utc> = row.get(3);
        if row.get::<_, bool>(4) {
            let why = if what == "token" { "the token was revoked" } else { "the session has ended" };
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, why));
        }
        if expires <= Utc::now() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, format!("the {what} has expired")));
        }
        let role = match row.get::<_, &str>(1) {
            "tenant" => Role::Tenant,
            "finance" => Role::Finance,
            "auditor" => Role::Auditor,
            "admin" => Role::Admin,
            "producer" => Role::Producer,
            other => return Err(internal(format_args!("a token of unknown role {other:?}"))),
        };
        let producer = match (row.get::<_, Option<String>>(6), row.get::<_, Option<Vec<String>>>(7)) {
            (Some(source), Some(mut tenants)) if role == Role::Producer => {
                tenants.sort();
                Some(Arc::new(ProducerScope { source, tenants }))
            }
            _ => None,
        };
        let caller = Caller { token_id: row.get(0), role, tenant: row.get(2), producer, wall_key: WallKey(row.get(5)) };
        crate::access::note_caller(&caller);
        Ok((caller, expires))
    }

    /// A new sign-in session for an authenticated caller: its secret, stored only as a hash, valid
    /// for [`SESSION_HOURS`] or until its token expires, whichever is first. Sessions ended a day
    /// ago are deleted on the way.
    pub(crate) async fn open_session(&self, caller: &Caller) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let secret = format!("gls_{}", hex::encode(bytes));
        let opened: bool = self
            .0
            .query_one(
                "SELECT api_session_open($1, $2, $3)",
                &[&caller.wall_key.0, &store::tokens::hash_token(&secret), &SESSION_HOURS],
            )
            .await
            .map_err(internal)?
            .get(0);
        if !opened {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the token is no longer valid"));
        }
        Ok(secret)
    }

    /// Ends a sign-in session (signing out); an unknown or ended one is left as it is.
    pub(crate) async fn end_session(&self, secret: &str) -> Result<(), ApiError> {
        self.0.execute("SELECT api_session_end($1)", &[&store::tokens::hash_token(secret)]).await.map_err(internal)?;
        Ok(())
    }

    /// The wall for an authenticated caller (see [`Walled`]).
    pub(crate) async fn wall(&mut self, caller: &Caller) -> Result<Walled<'_>, ApiError> {
        Walled::open(&mut self.0, caller).await
    }
}
