//! The poller: one thread polls Kafka (and so runs the rebalance callbacks), keeps each
//! partition's messages contiguous from the ledger's next offset, deals the partitions out to the
//! writers, hands each writer its batch when it is full or has lingered, seeks where a writer
//! asks, and decides when the ingester is idle.

use super::claims::{Ctx, Shared};
use super::IngestConfig;
use crate::IngestError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::Offset;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// The writer asks the poller to move a partition to the ledger's next offset.
pub(super) struct Seek {
    pub generation: u64,
    pub partition: i32,
    pub offset: i64,
}

/// A message as polled: validated by the writer that takes it, so that validation runs on as many
/// threads as there are writers.
pub(super) struct RawMessage {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A batch handed from the poller to a writer.
pub(super) struct Batch {
    pub generation: u64,
    pub parts: BTreeMap<i32, Vec<RawMessage>>,
}

/// How much longer than `idle_exit` the ingester waits for the group to assign partitions.
const UNASSIGNED_GRACE: Duration = Duration::from_secs(60);

/// One writer's share of the polled messages, not yet sent.
#[derive(Default)]
struct Pending {
    parts: BTreeMap<i32, Vec<RawMessage>>,
    messages: usize,
    started: Option<Instant>,
}

pub(super) fn poll_batches(
    cfg: &IngestConfig,
    consumer: &BaseConsumer<Ctx>,
    shared: &Shared,
    batches: Vec<SyncSender<Batch>>,
    seeks: Receiver<Seek>,
    writer_failed: &AtomicBool,
) -> Result<(), IngestError> {
    let mut poller = Poller::new(cfg, shared, batches.len());
    loop {
        if cfg.stop.load(Ordering::Relaxed) || writer_failed.load(Ordering::SeqCst) {
            break;
        }
        if let Some(why) = shared.fatal.lock().expect("fatal lock").take() {
            return Err(IngestError::Other(why));
        }
        poller.apply_seeks(consumer, &seeks);
        let polled = consumer.poll(Duration::from_millis(20));
        // One clock read per message or empty poll, for the linger and idle checks below.
        let now = Instant::now();
        poller.follow_rebalance(now);
        match polled {
            // A message before the partition's position was delivered before a seek took effect.
            Some(Ok(msg)) if !poller.take(&msg, now)? => continue,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                use rdkafka::error::RDKafkaErrorCode::{AutoOffsetReset, OffsetOutOfRange};
                if matches!(e.rdkafka_error_code(), Some(AutoOffsetReset | OffsetOutOfRange)) {
                    return Err(IngestError::Other(format!(
                        "the ledger's next offset is not in Kafka any more (retention or truncation): {e}"
                    )));
                }
                warn!(error = %e, "kafka consumer error")
            }
            None => {}
        }
        if !poller.send_due(&batches, now) {
            return Ok(());
        }
        if let Some(idle) = cfg.idle_exit {
            if poller.idle_done(idle, now, &seeks) {
                break;
            }
        }
    }
    Ok(())
}

/// The poller's state between polls.
struct Poller<'a> {
    cfg: &'a IngestConfig,
    shared: &'a Shared,
    writers: usize,
    pending: Vec<Pending>,
    buf_generation: u64,
    last_message: Instant,
    /// Where each partition must continue after an assignment or a seek: the ledger's next offset.
    expect: FxHashMap<i32, i64>,
    /// Which writer takes each partition: the claimed partitions in order, dealt out in turn.
    writer_of: FxHashMap<i32, usize>,
    seen_any: bool,
    stashed_seek: Option<Seek>,
}

impl<'a> Poller<'a> {
    fn new(cfg: &'a IngestConfig, shared: &'a Shared, writers: usize) -> Self {
        Poller {
            cfg,
            shared,
            writers,
            pending: (0..writers).map(|_| Pending::default()).collect(),
            buf_generation: shared.generation.load(Ordering::SeqCst),
            last_message: Instant::now(),
            expect: FxHashMap::default(),
            writer_of: FxHashMap::default(),
            seen_any: false,
            stashed_seek: None,
        }
    }

    /// A writer found our position in a partition behind or ahead of the ledger's.
    fn apply_seeks(&mut self, consumer: &BaseConsumer<Ctx>, seeks: &Receiver<Seek>) {
        while let Some(request) = self.stashed_seek.take().or_else(|| seeks.try_recv().ok()) {
            self.last_message = Instant::now(); // the messages from there on are still to be read
            if request.generation != self.shared.generation.load(Ordering::SeqCst) {
                continue; // asked under an assignment that is gone; the new claim set the position
            }
            for p in &mut self.pending {
                if let Some(v) = p.parts.remove(&request.partition) {
                    p.messages -= v.len();
                }
            }
            if seek(consumer, &self.cfg.topic, request.partition, request.offset) {
                self.expect.insert(request.partition, request.offset);
            }
        }
    }

    /// After a rebalance inside poll: drops what was buffered and deals the new claims out.
    fn follow_rebalance(&mut self, now: Instant) {
        let generation = self.shared.generation.load(Ordering::SeqCst);
        if generation == self.buf_generation {
            return;
        }
        // A rebalance happened inside poll: whatever was buffered belongs to an old claim.
        self.pending.iter_mut().for_each(|p| *p = Pending::default());
        self.buf_generation = generation;
        // Idle time counts from the assignment: joining the group (on a fresh broker, creating
        // its offsets topic first) can take longer than the idle limit.
        self.last_message = now;
        let claims = self.shared.claims.lock().expect("claims lock");
        self.expect = claims.values().filter_map(|c| c.next_offset.map(|n| (c.partition, n))).collect();
        let mut partitions: Vec<i32> = claims.keys().copied().collect();
        partitions.sort_unstable();
        let writers = self.writers;
        self.writer_of = partitions.into_iter().enumerate().map(|(i, p)| (p, i % writers)).collect();
    }

    /// Adds a polled message to its writer's share. False: it lies before the partition's
    /// position (delivered before a seek took effect) and is skipped.
    fn take(&mut self, msg: &BorrowedMessage<'_>, now: Instant) -> Result<bool, IngestError> {
        self.last_message = now;
        if !self.seen_any {
            self.seen_any = true;
            *self.shared.first_polled.lock().expect("first lock") = Some(self.last_message);
        }
        let (partition, offset) = (msg.partition(), msg.offset());
        let w = self.writer_of.get(&partition).copied().unwrap_or(0);
        let p = &mut self.pending[w];
        let part = p.parts.entry(partition).or_default();
        let next = part.last().map(|last| last.offset + 1).or_else(|| self.expect.get(&partition).copied());
        match next {
            Some(n) if offset < n => return Ok(false),
            Some(n) if offset > n => {
                // Offsets n..offset are missing (transaction markers, compaction, data
                // loss): nothing we could commit would account for them. Stop loudly
                // rather than skip or spin.
                return Err(IngestError::Other(format!(
                    "partition {partition}: the ledger continues at offset {n} but Kafka delivered {offset}; \
                     the offsets in between are missing (transactional producer, compaction or data loss)"
                )));
            }
            _ => {}
        }
        self.expect.remove(&partition);
        let key = msg.key().map(<[u8]>::to_vec);
        let payload = msg.payload().map(<[u8]>::to_vec).unwrap_or_default();
        part.push(RawMessage { offset, key, payload });
        p.messages += 1;
        p.started.get_or_insert(now);
        Ok(true)
    }

    /// Hands each writer its share when it is full or has lingered. False: a writer is gone.
    fn send_due(&mut self, batches: &[SyncSender<Batch>], now: Instant) -> bool {
        for (w, p) in self.pending.iter_mut().enumerate() {
            let due = p.started.is_some_and(|t| now.duration_since(t) >= self.cfg.linger);
            if p.messages < self.cfg.batch_max && !(p.messages > 0 && due) {
                continue;
            }
            let batch = Batch { generation: self.buf_generation, parts: std::mem::take(&mut p.parts) };
            let messages = std::mem::take(&mut p.messages);
            let started = p.started.take();
            // A busy writer: keep polling for the others until this one has a whole batch waiting.
            self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
            let sent = if messages >= self.cfg.batch_max {
                batches[w].send(batch).map_err(|_| ())
            } else {
                match batches[w].try_send(batch) {
                    Ok(()) => Ok(()),
                    Err(std::sync::mpsc::TrySendError::Full(batch)) => {
                        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        p.parts = batch.parts;
                        p.messages = messages;
                        p.started = started;
                        continue;
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(()),
                }
            };
            if sent.is_err() {
                return false;
            }
        }
        true
    }

    /// Whether the ingester has been idle for `idle` with nothing left to write (or has waited
    /// that long and `UNASSIGNED_GRACE` more without an assignment).
    fn idle_done(&mut self, idle: Duration, now: Instant, seeks: &Receiver<Seek>) -> bool {
        let quiet = now.duration_since(self.last_message);
        if self.shared.assigned.load(Ordering::SeqCst) {
            let drained =
                self.pending.iter().all(|p| p.messages == 0) && self.shared.in_flight.load(Ordering::SeqCst) == 0;
            if drained && quiet >= idle {
                // A writer may have asked for a seek just before finishing its batch.
                if let Ok(request) = seeks.try_recv() {
                    self.stashed_seek = Some(request);
                    return false;
                }
                info!("idle, exiting");
                return true;
            }
        } else if quiet >= idle + UNASSIGNED_GRACE {
            warn!(waited = ?quiet, "no partitions assigned by the group, exiting as idle");
            return true;
        }
        false
    }
}

/// Seeks a partition; a failure is not fatal (the next batch is fenced and asks again).
fn seek(consumer: &BaseConsumer<Ctx>, topic: &str, partition: i32, offset: i64) -> bool {
    for attempt in 0..3 {
        match consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
            Ok(()) => return true,
            Err(e) => {
                warn!(error = %e, partition, offset, attempt, "seek failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    false
}
