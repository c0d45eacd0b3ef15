//! The writer threads: each takes the batches the poller deals it, validates them (pure) and
//! commits each in one transaction (`store::append`), counts what was written, hands fenced
//! partitions back to the poller to seek, and dead-letters what was quarantined.

use super::claims::Shared;
use super::poller::{Batch, RawMessage, Seek};
use super::retry::cause;
use super::{IngestConfig, IngestStats};
use crate::IngestError;
use chrono::Utc;
use domain::usage::parse_usage_message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use store::append::{AppendOutcome, InMessage, LedgerWriter, PartitionBatch};
use tracing::{info, warn};

/// Counts a batch as finished when the writer is done with it, however it ends.
struct Finished<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) fn write_batches(
    cfg: &IngestConfig,
    writer: usize,
    shared: &Shared,
    db: &mut LedgerWriter,
    batches: std::sync::mpsc::Receiver<Batch>,
    seeks: std::sync::mpsc::Sender<Seek>,
    dlq: Option<&ThreadedProducer<DefaultProducerContext>>,
) -> Result<IngestStats, IngestError> {
    let mut w = Writer { cfg, db, dlq, seeks: &seeks, stats: IngestStats::default(), refused_in_a_row: 0 };
    let mut last_log = Instant::now();
    // Ends when the poller drops its sender (stop, idle, error) after the last batch.
    let mut waited = Instant::now();
    for batch in batches {
        let _finished = Finished(&shared.in_flight);
        tracing::debug!(writer, waited = ?waited.elapsed(), messages = batch.parts.values().map(Vec::len).sum::<usize>(), "batch received");
        if batch.generation != shared.generation.load(Ordering::SeqCst) {
            continue; // read under a claim that is gone; the new claim restarts from the ledger
        }
        w.commit(shared, batch.parts, batch.generation)?;
        *shared.last_commit.lock().expect("last lock") = Some(Instant::now());
        waited = Instant::now();
        if last_log.elapsed() >= Duration::from_secs(5) {
            let stats = &w.stats;
            info!(
                writer,
                batches = stats.batches,
                ledgered = stats.ledgered,
                duplicates = stats.duplicates,
                quarantined = stats.quarantined,
                fenced = stats.fenced,
                db_retries = stats.db_retries,
                "progress"
            );
            last_log = Instant::now();
        }
    }
    Ok(w.stats)
}

/// One writer thread's state while it commits batches.
pub(super) struct Writer<'a> {
    pub cfg: &'a IngestConfig,
    pub db: &'a mut LedgerWriter,
    dlq: Option<&'a ThreadedProducer<DefaultProducerContext>>,
    /// Where to ask the poller for a seek (a fenced partition still ours).
    seeks: &'a std::sync::mpsc::Sender<Seek>,
    pub stats: IngestStats,
    /// Events the database refused since it last ledgered one for this writer (see `isolate`).
    pub refused_in_a_row: usize,
}

impl Writer<'_> {
    fn commit(
        &mut self,
        shared: &Shared,
        batch: BTreeMap<i32, Vec<RawMessage>>,
        generation: u64,
    ) -> Result<(), IngestError> {
        let claims = shared.claims.lock().expect("claims lock").clone();
        // The clock for "too far in the future", read once per batch.
        let now = Utc::now();
        let mut parts: Vec<PartitionBatch> = batch
            .into_iter()
            .filter_map(|(p, raw)| {
                let claim = claims.get(&p)?;
                let messages = raw
                    .into_iter()
                    .map(|m| {
                        let verdict = parse_usage_message(m.key.as_deref(), &m.payload, now);
                        InMessage::new(m.offset, m.key, m.payload, verdict)
                    })
                    .collect();
                Some(PartitionBatch { claim: *claim, messages })
            })
            .collect();
        let mut backoff = Duration::from_millis(100);
        while !parts.is_empty() {
            match self.db.append(&self.cfg.owner, &parts, Utc::now()) {
                Ok(AppendOutcome::Committed(counts)) => {
                    self.committed(&parts, &counts);
                    return Ok(());
                }
                Ok(AppendOutcome::Fenced(fences)) => self.fenced(&mut parts, &fences, generation),
                Err(e) if e.refusal().is_some() => {
                    warn!(error = %e, cause = %cause(&e), "the database refused the batch; looking for the events it refuses");
                    return self.isolate(parts, generation);
                }
                Err(e) if e.is_transient() => {
                    if !self.wait_to_retry(&e, &mut backoff)? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Adds a committed batch to the counts and dead-letters what it quarantined; a batch that
    /// ledgered anything ends a run of refused events.
    pub(super) fn committed(&mut self, parts: &[PartitionBatch], counts: &store::append::BatchCounts) {
        if counts.ledgered > 0 {
            self.refused_in_a_row = 0;
        }
        let stats = &mut self.stats;
        stats.batches += 1;
        stats.ledgered += counts.ledgered;
        stats.duplicates += counts.duplicates;
        stats.quarantined += counts.quarantined;
        if let (Some(p), Some(topic)) = (self.dlq, self.cfg.dead_letter_topic.as_deref()) {
            dead_letter(p, topic, &self.cfg.topic, parts, &counts.quarantined_at);
        }
    }

    /// Drops the fenced partitions from the batch; where we still own one, the poller seeks it to the
    /// ledger's next offset.
    pub(super) fn fenced(&mut self, parts: &mut Vec<PartitionBatch>, fences: &[store::append::Fence], generation: u64) {
        self.stats.fenced += 1;
        for f in fences {
            warn!(partition = f.partition, still_owned = f.still_owned, next_offset = ?f.next_offset, "batch fenced");
            parts.retain(|b| b.claim.partition != f.partition);
            if let (true, Some(n)) = (f.still_owned, f.next_offset) {
                let _ = self.seeks.send(Seek { generation, partition: f.partition, offset: n });
            }
        }
    }
}

/// Best effort, after the commit: the quarantine table is the record, the topic a convenience.
fn dead_letter(
    producer: &ThreadedProducer<DefaultProducerContext>,
    dlq_topic: &str,
    topic: &str,
    parts: &[PartitionBatch],
    quarantined: &[(i32, i64, domain::usage::RejectionCode)],
) {
    for (partition, offset, code) in quarantined {
        let Some(m) = parts
            .iter()
            .find(|b| b.claim.partition == *partition)
            .and_then(|b| b.messages.iter().find(|m| m.offset == *offset))
        else {
            continue;
        };
        let source = format!("{topic}/{partition}/{offset}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "gpuledger.reason", value: Some(code.as_str()) })
            .insert(Header { key: "gpuledger.source", value: Some(&source) });
        let mut rec = BaseRecord::to(dlq_topic).payload(&m.payload).headers(headers);
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Err((e, _)) = producer.send(rec) {
            warn!(error = %e, "dead-letter send failed (the quarantine table holds the message)");
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}
