//! The pooled connection before the wall: it authenticates the bearer token and then opens the
//! tenant wall for the caller.

use super::{Caller, Role, Walled};
use crate::error::{internal, ApiError};
use crate::limit::RATE_PER_SECOND;
use crate::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Utc};

/// A pooled connection as the server's own role, before the wall. That role reads every tenant's
/// rows, so this type runs only the token lookup, the access log of an answer served from the
/// cache (which read nothing), and [`TokenLookup::wall`], which turns it into a [`Walled`]
/// transaction for everything else.
pub(crate) struct TokenLookup(deadpool_postgres::Object);

/// Hours a web page sign-in lasts (a working day).
pub(crate) const SESSION_HOURS: i32 = 8;

/// A token by its hash: (id, role, tenant, expiry, revoked).
const TOKEN_SQL: &str = "SELECT t.token_id, t.role, t.tenant_id, t.expires_at, r.token_id IS NOT NULL
   FROM api_tokens t LEFT JOIN api_token_revocations r USING (token_id) WHERE t.token_hash = $1";

/// A sign-in session by its hash, as its token: (id, role, tenant, the earlier expiry, revoked or
/// signed out).
const SESSION_SQL: &str = "SELECT t.token_id, t.role, t.tenant_id, least(t.expires_at, s.expires_at),
        r.token_id IS NOT NULL OR s.ended_at IS NOT NULL
   FROM ui_sessions s JOIN api_tokens t USING (token_id)
   LEFT JOIN api_token_revocations r USING (token_id) WHERE s.session_hash = $1";

impl TokenLookup {
    pub(crate) async fn get(state: &AppState) -> Result<TokenLookup, ApiError> {
        Ok(TokenLookup(state.pool.get().await.map_err(internal)?))
    }

    /// Opens the request's transaction as `gpuledger_api` with its limits, authenticates the bearer
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
    /// web page's sign-in (see [`crate::pages`]), which stands for its token until it ends.
    pub(crate) async fn authenticate(&self, state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
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
            _ => Role::Admin,
        };
        let caller = Caller { token_id: row.get(0), role, tenant: row.get(2) };
        crate::access::note_caller(&caller);
        if !state.limiter.allow(caller.token_id) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {RATE_PER_SECOND} requests per second per token"),
            ));
        }
        Ok(caller)
    }

    /// A new sign-in session for an authenticated caller: its secret, stored only as a hash, valid
    /// for [`SESSION_HOURS`] or until its token expires, whichever is first. Sessions ended a day
    /// ago are deleted on the way.
    pub(crate) async fn open_session(&self, caller: &Caller) -> Result<String, ApiError> {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let secret = format!("gls_{}", hex::encode(bytes));
        self.0
            .execute(
                "WITH gone AS (DELETE FROM ui_sessions WHERE expires_at < now() - interval '1 day')
                 INSERT INTO ui_sessions (session_hash, token_id, created_at, expires_at)
                 SELECT $1, token_id, now(), least(now() + make_interval(hours => $3), expires_at)
                   FROM api_tokens WHERE token_id = $2",
                &[&store::tokens::hash_token(&secret), &caller.token_id, &SESSION_HOURS],
            )
            .await
            .map_err(internal)?;
        Ok(secret)
    }

    /// Ends a sign-in session (signing out); an unknown or ended one is left as it is.
    pub(crate) async fn end_session(&self, secret: &str) -> Result<(), ApiError> {
        self.0
            .execute(
                "UPDATE ui_sessions SET ended_at = now() WHERE session_hash = $1 AND ended_at IS NULL",
                &[&store::tokens::hash_token(secret)],
            )
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// The wall for an authenticated caller (see [`Walled`]).
    pub(crate) async fn wall(&mut self, caller: &Caller) -> Result<Walled<'_>, ApiError> {
        Walled::open(&mut self.0, caller).await
    }
}
