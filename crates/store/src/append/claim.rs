//! Claiming partitions: a consumer that is assigned a partition bumps its stream's epoch, which
//! fences every batch an earlier owner still has in flight.

use crate::StoreError;
use postgres::Client;

/// A partition this ingester claimed: the epoch fences every older claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub stream_id: i32,
    pub partition: i32,
    pub epoch: i64,
    /// Where to resume; `None` for a partition the ledger has never seen.
    pub next_offset: Option<i64>,
}

/// Claims partitions for `owner`: bumps each stream's epoch so that any earlier owner's batch
/// in flight is refused at commit. Returns where to resume each partition.
pub fn claim_partitions(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    owner: &str,
) -> Result<Vec<Claim>, StoreError> {
    let mut tx = client.transaction()?;
    let mut claims = Vec::with_capacity(partitions.len());
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    for p in sorted {
        let row = tx.query_one(
            "INSERT INTO ledger_streams (topic, kafka_partition, owner, epoch, claimed_at)
             VALUES ($1, $2, $3, 1, now())
             ON CONFLICT (topic, kafka_partition) DO UPDATE
                SET owner = excluded.owner, epoch = ledger_streams.epoch + 1, claimed_at = now()
             RETURNING stream_id, epoch, next_offset",
            &[&topic, &p, &owner],
        )?;
        claims.push(Claim { stream_id: row.get(0), partition: p, epoch: row.get(1), next_offset: row.get(2) });
    }
    tx.commit()?;
    Ok(claims)
}
