//! Isolate by halves: when the database refuses a batch the validator accepted, each partition is
//! written in halves until the refused event stands alone, and that event alone is quarantined.

use super::writer::Writer;
use crate::IngestError;
use chrono::Utc;
use std::time::Duration;
use store::append::{AppendOutcome, PartitionBatch};
use tracing::warn;

/// How many events in a row the database may refuse before the ingester concludes that the
/// cause is not in the events (a broken database, a rule that refuses everything) and stops.
const REFUSED_IN_A_ROW_MAX: usize = 16;

impl Writer<'_> {
    /// The database refused a batch the validator accepted (a constraint or limit the validator does
    /// not know of). Each partition is written in halves until the refused event stands alone; it is
    /// quarantined as `refused_by_database` with the database's reason, and the rest is ledgered as
    /// usual: the partition goes on, and no valid event is lost. Before an event is set aside, the
    /// monthly partitions are ensured again (a refusal can be a month that was detached meanwhile);
    /// and when the database refuses many events in a row and ledgers none between them, the fault is
    /// taken to be the database's, and the ingester stops instead of quarantining everything (the
    /// count runs across batches, per writer).
    pub(super) fn isolate(&mut self, parts: Vec<PartitionBatch>, generation: u64) -> Result<(), IngestError> {
        let mut backoff = Duration::from_millis(100);
        for part in parts {
            let PartitionBatch { claim, mut messages } = part;
            let (mut start, mut take) = (0, messages.len());
            // Whether the partitions were ensured again for the event at `start`.
            let mut ensured = false;
            while start < messages.len() {
                take = take.clamp(1, messages.len() - start);
                let mut one = vec![PartitionBatch { claim, messages: messages[start..start + take].to_vec() }];
                match self.db.append(&self.cfg.owner, &one, Utc::now()) {
                    Ok(AppendOutcome::Committed(counts)) => {
                        self.committed(&one, &counts);
                        start += take;
                        take = messages.len() - start;
                        ensured = false;
                    }
                    Ok(AppendOutcome::Fenced(fences)) => {
                        self.fenced(&mut one, &fences, generation);
                        break;
                    }
                    Err(e) => match e.refusal() {
                        Some(_) if take > 1 => take = take.div_ceil(2),
                        Some(_) if !ensured => {
                            self.db.forget_partitions();
                            ensured = true;
                        }
                        Some(why) if self.refused_in_a_row + 1 >= REFUSED_IN_A_ROW_MAX => {
                            return Err(IngestError::Other(format!(
                                "the database refused {REFUSED_IN_A_ROW_MAX} events in a row and ledgered none between \
                                 them; stopping rather than quarantining everything (partition {}, offset {}): {why}",
                                claim.partition, messages[start].offset
                            )));
                        }
                        Some(why) if messages[start].refuse(&why) => {
                            self.refused_in_a_row += 1;
                            warn!(partition = claim.partition, offset = messages[start].offset, reason = %why, "event refused by the database, quarantined");
                        }
                        // Quarantining it was refused too: nothing more can be done here.
                        Some(_) => return Err(e.into()),
                        None if e.is_transient() => {
                            if !self.wait_to_retry(&e, &mut backoff)? {
                                return Ok(());
                            }
                        }
                        None => return Err(e.into()),
                    },
                }
            }
        }
        Ok(())
    }
}
