//! Step 1 of an append: the batch's stream rows are locked in a fixed order and its fences
//! checked (owner, epoch, next offset); a batch that skips an offset is a broken invariant.

use super::{Fence, PartitionBatch};
use crate::StoreError;
use std::collections::HashMap;

/// Each stream's chain head and its position, by stream id.
pub(super) type Heads = HashMap<i32, (Vec<u8>, i64)>;

/// The batch's streams, locked: their heads, or the fences that refuse the batch.
pub(super) enum Locked {
    Heads(Heads),
    Fenced(Vec<Fence>),
}

/// Locks the stream rows of `ordered` (in partition order, as `claim_partitions` does, so that
/// stream rows are always locked in the same order) and checks that each is still `owner`'s at
/// the claimed epoch and that the batch starts at the stored next offset.
pub(super) fn lock_streams(
    tx: &mut postgres::Transaction<'_>,
    owner: &str,
    ordered: &[&PartitionBatch],
) -> Result<Locked, StoreError> {
    // One statement; the rows are locked in the order they are returned.
    let ids: Vec<i32> = ordered.iter().map(|b| b.claim.stream_id).collect();
    let rows = tx.query(
        "SELECT stream_id, owner, epoch, next_offset, head_hash, head_pos FROM ledger_streams
          WHERE stream_id = ANY($1) ORDER BY kafka_partition FOR UPDATE",
        &[&ids],
    )?;
    let mut heads = Heads::new();
    let mut fences = Vec::new();
    for b in ordered {
        let row = rows
            .iter()
            .find(|r| r.get::<_, i32>(0) == b.claim.stream_id)
            .ok_or_else(|| StoreError::Invariant(format!("stream {} has no row", b.claim.stream_id)))?;
        let row_owner: Option<String> = row.get(1);
        let epoch: i64 = row.get(2);
        let next_offset: Option<i64> = row.get(3);
        let owned = row_owner.as_deref() == Some(owner) && epoch == b.claim.epoch;
        let first = b.messages[0].offset;
        let in_place = next_offset.is_none_or(|n| n == first);
        if !owned || !in_place {
            fences.push(Fence { partition: b.claim.partition, still_owned: owned, next_offset });
        }
        heads.insert(b.claim.stream_id, (row.get(4), row.get(5)));
    }
    Ok(if fences.is_empty() { Locked::Heads(heads) } else { Locked::Fenced(fences) })
}

/// Every partition's run of offsets is contiguous; anything else is a bug upstream.
pub(super) fn check_contiguous(ordered: &[&PartitionBatch]) -> Result<(), StoreError> {
    for b in ordered {
        for w in b.messages.windows(2) {
            if w[1].offset != w[0].offset + 1 {
                return Err(StoreError::Invariant(format!(
                    "partition {} batch skips from offset {} to {}",
                    b.claim.partition, w[0].offset, w[1].offset
                )));
            }
        }
    }
    Ok(())
}
