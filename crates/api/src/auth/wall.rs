//! The tenant wall: the one way the API reads tenants' rows.

use super::Caller;
use crate::error::{internal, ApiError};
use axum::http::StatusCode;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// A transaction behind the wall, for an authenticated caller: on the API's login role
/// (`gpuledger_api`: no superuser, no BYPASSRLS, not the owner, so there is no other role to
/// reset to) with a statement timeout, and the wall opened for the transaction by
/// `api_open_wall` with the caller's token: the caller's tenant, or all tenants for finance and
/// auditors. The scope lives where this role cannot write (migration 0011), so even a handler bug
/// that ran SQL of its own could not widen it or read another tenant's rows.
pub(crate) struct Walled<'a>(deadpool_postgres::Transaction<'a>);

impl<'a> Walled<'a> {
    pub(super) async fn open(
        client: &'a mut deadpool_postgres::Object,
        caller: &Caller,
    ) -> Result<Walled<'a>, ApiError> {
        let tx = client.transaction().await.map_err(internal)?;
        tx.batch_execute("SET LOCAL statement_timeout = '5s'").await.map_err(internal)?;
        tx.execute("SELECT api_open_wall($1)", &[&caller.wall_key.0]).await.map_err(|e| {
            // Revoked or expired since it was authenticated a moment ago.
            if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) {
                ApiError::new(StatusCode::UNAUTHORIZED, "the token is no longer valid")
            } else {
                internal(e)
            }
        })?;
        Ok(Walled(tx))
    }

    pub(crate) async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, ApiError> {
        self.0.query(sql, params).await.map_err(internal)
    }

    pub(crate) async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, ApiError> {
        self.0.query_opt(sql, params).await.map_err(internal)
    }

    pub(crate) async fn commit(self) -> Result<(), ApiError> {
        self.0.commit().await.map_err(internal)
    }
}
