//! The SKU catalogue the ingester decides with (`domain::decide` quarantines usage of a SKU it
//! does not list as `unknown_sku`): the initial catalogue and the `sku.set` events of the
//! reference stream, read again only when that stream has grown since. The HTTP ingest
//! (`POST /v1/events`) judges events with the same catalogue: [`reference_head`] and
//! [`read_catalogue`].

use crate::billing::REFERENCE_STREAM;
use crate::StoreError;
use domain::billing::catalogue::{Catalogue, SkuSet, KIND_SKU};
use postgres::GenericClient;
use serde_json::Value;
use std::sync::Arc;

/// The catalogue as of the reference stream's head it was read at.
#[derive(Debug, Default)]
pub(crate) struct CatalogueCache {
    read_at: Option<Option<i64>>,
    catalogue: Arc<Catalogue>,
}

impl CatalogueCache {
    /// The catalogue as the ledger holds it now: one look at the reference stream's head, and a
    /// read of its `sku.set` events when it moved.
    pub(crate) fn current(&mut self, tx: &mut postgres::Transaction<'_>) -> Result<Arc<Catalogue>, StoreError> {
        let head = reference_head(tx)?;
        if self.read_at == Some(head) {
            return Ok(self.catalogue.clone());
        }
        let catalogue = read_catalogue(tx, head)?;
        self.catalogue = Arc::new(catalogue);
        self.read_at = Some(head);
        Ok(self.catalogue.clone())
    }
}

/// The reference stream's head (`None`: nothing loaded yet), which moves whenever reference data
/// (and so perhaps the catalogue) changes.
pub fn reference_head(client: &mut impl GenericClient) -> Result<Option<i64>, StoreError> {
    Ok(client
        .query_opt(
            "SELECT head_pos FROM ledger_streams WHERE topic = $1 AND kafka_partition = 0",
            &[&REFERENCE_STREAM],
        )?
        .map(|r| r.get(0)))
}

/// The catalogue as of the reference stream's position `head`: the initial one and every
/// `sku.set` up to it.
pub fn read_catalogue(client: &mut impl GenericClient, head: Option<i64>) -> Result<Catalogue, StoreError> {
    let mut catalogue = Catalogue::initial();
    let Some(head) = head else { return Ok(catalogue) };
    for row in client.query(
        "SELECT e.stream_pos, e.payload FROM ledger_events e JOIN ledger_streams s USING (stream_id)
          WHERE s.topic = $1 AND s.kafka_partition = 0 AND e.stream_pos <= $2 AND e.kind = $3
          ORDER BY e.stream_pos",
        &[&REFERENCE_STREAM, &head, &KIND_SKU],
    )? {
        let payload: Value = row.get(1);
        let entry: SkuSet = serde_json::from_value(payload["data"].clone()).map_err(|e| {
            StoreError::Invariant(format!("sku.set at reference position {} does not parse: {e}", row.get::<_, i64>(0)))
        })?;
        catalogue.apply(entry);
    }
    Ok(catalogue)
}
