//! The database paths outside the tenant wall besides the token lookup: the store's connection
//! for work across tenants, and the server's own telemetry.

use crate::error::{internal, ApiError};
use crate::AppState;

/// The store's own (blocking) connection as finance's login role (`gpuledger_finance`), without
/// the tenant wall: it reads and appends across tenants, but is no superuser, owns nothing and
/// cannot read the API tokens, so it cannot rewrite what was issued. Only for routes whose caller
/// [`super::authorize`] admitted (finance, auditors) and for the reference data (prices,
/// contracts, profiles) a tenant's estimate is rated with.
pub(crate) struct CrossTenant {
    database_url: String,
}

impl CrossTenant {
    pub(crate) fn new(s: &AppState) -> CrossTenant {
        CrossTenant { database_url: s.finance_url.clone() }
    }

    /// Runs a store (blocking) call on its own connection.
    pub(crate) async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let url = self.database_url;
        tokio::task::spawn_blocking(move || {
            let mut c = store::connect(&url)?;
            f(&mut c)
        })
        .await
        .map_err(internal)?
        .map_err(ApiError::from)
    }
}

/// A pooled connection as the API's role for `/readyz` and `/metrics`: it only asks whether the
/// database answers and reads the ingest counters per stream (`ledger_streams`), none of a
/// tenant's rows.
pub(crate) struct Telemetry(deadpool_postgres::Object);

/// One stream's counters, as every ingester reports them.
pub(crate) struct StreamCounts {
    pub topic: String,
    pub partition: i32,
    pub ledgered: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub next_offset: i64,
}

impl Telemetry {
    pub(crate) async fn get(s: &AppState) -> Result<Telemetry, deadpool_postgres::PoolError> {
        Ok(Telemetry(s.pool.get().await?))
    }

    pub(crate) async fn ping(&self) -> Result<(), tokio_postgres::Error> {
        self.0.query_one("SELECT 1", &[]).await.map(drop)
    }

    /// The reference stream's head: where the SKU catalogue was last changed, or later.
    pub(crate) async fn reference_head(&self) -> Result<Option<i64>, tokio_postgres::Error> {
        let row = self
            .0
            .query_opt(
                "SELECT head_pos FROM ledger_streams WHERE topic = $1 AND kafka_partition = 0",
                &[&store::billing::REFERENCE_STREAM],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(crate) async fn streams(&self) -> Result<Vec<StreamCounts>, tokio_postgres::Error> {
        let rows = self
            .0
            .query("SELECT topic, kafka_partition, ledgered, duplicates, quarantined, coalesce(next_offset, 0) FROM ledger_streams ORDER BY stream_id", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| StreamCounts {
                topic: r.get(0),
                partition: r.get(1),
                ledgered: r.get(2),
                duplicates: r.get(3),
                quarantined: r.get(4),
                next_offset: r.get(5),
            })
            .collect())
    }
}
