//! The tenant wall: the one way the API reads tenants' rows.

use super::{Caller, Role};
use crate::error::{internal, ApiError};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// A transaction behind the wall, for an authenticated caller: as `gpuledger_api` (no BYPASSRLS)
/// with a statement timeout, the caller's tenant (or the all-tenants scope of finance and
/// auditors) set for row-level security, so even a handler bug cannot read another tenant's rows.
pub(crate) struct Walled<'a>(deadpool_postgres::Transaction<'a>);

impl<'a> Walled<'a> {
    pub(super) async fn open(
        client: &'a mut deadpool_postgres::Object,
        caller: &Caller,
    ) -> Result<Walled<'a>, ApiError> {
        let tx = client.transaction().await.map_err(internal)?;
        tx.batch_execute("SET LOCAL ROLE gpuledger_api; SET LOCAL statement_timeout = '5s'").await.map_err(internal)?;
        let (tenant, scope) = match caller.role {
            Role::Tenant => (caller.tenant.clone().unwrap_or_default(), "tenant"),
            _ => (String::new(), "all"),
        };
        tx.execute(
            "SELECT set_config('gpuledger.tenant', $1, true), set_config('gpuledger.scope', $2, true)",
            &[&tenant, &scope],
        )
        .await
        .map_err(internal)?;
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
