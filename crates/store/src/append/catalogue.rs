//! The SKU catalogue the ingester decides with (`domain::decide` quarantines usage of a SKU it
//! does not list as `unknown_sku`): the initial catalogue and the `sku.set` events of the
//! reference stream, read again only when that stream has grown since.

use crate::billing::REFERENCE_STREAM;
use crate::StoreError;
use domain::billing::catalogue::{Catalogue, SkuSet, KIND_SKU};
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
        let stream: Option<(i32, i64)> = tx
            .query_opt(
                "SELECT stream_id, head_pos FROM ledger_streams WHERE topic = $1 AND kafka_partition = 0",
                &[&REFERENCE_STREAM],
            )?
            .map(|r| (r.get(0), r.get(1)));
        let head = stream.map(|(_, h)| h);
        if self.read_at == Some(head) {
            return Ok(self.catalogue.clone());
        }
        let mut catalogue = Catalogue::initial();
        if let Some((stream_id, head)) = stream {
            for row in tx.query(
                "SELECT stream_pos, payload FROM ledger_events
                  WHERE stream_id = $1 AND stream_pos <= $2 AND kind = $3 ORDER BY stream_pos",
                &[&stream_id, &head, &KIND_SKU],
            )? {
                let payload: Value = row.get(1);
                let entry: SkuSet = serde_json::from_value(payload["data"].clone()).map_err(|e| {
                    StoreError::Invariant(format!(
                        "sku.set at reference position {} does not parse: {e}",
                        row.get::<_, i64>(0)
                    ))
                })?;
                catalogue.apply(entry);
            }
        }
        self.catalogue = Arc::new(catalogue);
        self.read_at = Some(head);
        Ok(self.catalogue.clone())
    }
}
