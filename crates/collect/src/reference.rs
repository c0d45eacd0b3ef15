//! The ledger's reference data as the collector meters with it: the namespace map (whom a
//! namespace's time is billed to) and the SKU map (the SKU catalogue's model names, with the
//! collector's `--sku-model` overrides first). Read again only when the reference stream's head
//! moved (as the ingester and the HTTP ingest keep their catalogue), so a `reference load` of a
//! `namespace.map` or of an `sku.set` naming a new model takes effect from the next round.

use domain::billing::namespace_map::NamespaceMap;
use domain::meter::sku_map::SkuMap;
use postgres::Client;
use std::collections::BTreeMap;

pub struct ReferenceCache {
    overrides: BTreeMap<String, String>,
    /// The reference stream's head the data below was read at (`None`: not read yet).
    read_at: Option<Option<i64>>,
    namespaces: NamespaceMap,
    skus: SkuMap,
}

impl ReferenceCache {
    pub fn new(overrides: BTreeMap<String, String>) -> Self {
        ReferenceCache { overrides, read_at: None, namespaces: NamespaceMap::default(), skus: SkuMap::default() }
    }

    /// The namespace map and the SKU map as the ledger holds them now. The head is looked at
    /// before the data is read, so a load between the two is read again next round, never missed.
    pub fn current(&mut self, db: &mut Client) -> Result<(&NamespaceMap, &SkuMap), crate::CollectError> {
        let head = store::append::reference_head(db)?;
        if self.read_at != Some(head) {
            let state = store::billing::reference_state(db)?;
            if self.read_at.is_some() {
                tracing::info!(reference_head = ?head, "reference data changed; namespace map and SKU catalogue read again");
            }
            self.skus = SkuMap::new(state.catalogue, self.overrides.clone());
            self.namespaces = state.namespaces;
            self.read_at = Some(head);
        }
        Ok((&self.namespaces, &self.skus))
    }
}
