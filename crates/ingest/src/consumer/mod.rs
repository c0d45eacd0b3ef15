//! The exactly-once ingester.
//!
//! Kafka only delivers; PostgreSQL decides. Offsets live in `ledger_streams`, written in the same
//! transaction as the events and the quarantine. On assignment the ingester claims each partition
//! in the database (bumping its epoch) and starts from the stored offset; a batch commits only if
//! the claim is still current and the batch starts exactly at the stored offset, so a consumer
//! that lost its partition (rebalance, long pause, zombie) cannot commit a stale batch.
//!
//! One thread polls and validates (pure); `writers` threads, each with its own PostgreSQL
//! connection and its own share of the assigned partitions, write batches side by side (see
//! `store::append::append_batch` for how their commits are ordered). A database outage stops a
//! writer where it is and it retries the same batch until the database answers. Bad input is never
//! an error here: the validator turns it into a quarantine row.
//!
//! The steps, one module each: `claims` (the rebalance callback and what the threads share),
//! `poller` (polling, dealing out, seeking, idling), `writer` (validate and commit a batch,
//! count, dead-letter), `isolate` (a refused batch written in halves), `retry` (outages).

mod claims;
mod isolate;
mod poller;
mod retry;
mod writer;

use crate::IngestError;
use claims::{Ctx, Shared};
use poller::{Batch, Seek};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{DefaultProducerContext, ThreadedProducer};
use retry::connections_until_up;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::append::LedgerWriter;
use tracing::info;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub brokers: String,
    pub group: String,
    pub topic: String,
    pub database_url: String,
    /// Unique per process: the owner written into the claims.
    pub owner: String,
    /// Static group membership: a restarted process with the same id takes over at once.
    pub instance_id: Option<String>,
    pub batch_max: usize,
    pub linger: Duration,
    /// Writer threads, each with its own database connection; partitions are shared out among
    /// them at every assignment.
    pub writers: usize,
    /// Exit after this long without a message (for the demo and tests); run forever if `None`.
    pub idle_exit: Option<Duration>,
    pub dead_letter_topic: Option<String>,
    pub stop: Arc<AtomicBool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub batches: u64,
    pub ledgered: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub fenced: u64,
    pub db_retries: u64,
    /// Milliseconds from the first message polled to the last batch committed.
    pub active_ms: u64,
}

impl std::ops::AddAssign for IngestStats {
    /// Adds another writer's counts; `active_ms` is the process's, set apart.
    fn add_assign(&mut self, o: IngestStats) {
        self.batches += o.batches;
        self.ledgered += o.ledgered;
        self.duplicates += o.duplicates;
        self.quarantined += o.quarantined;
        self.fenced += o.fenced;
        self.db_retries += o.db_retries;
    }
}

/// Most writer threads (and database connections) one ingester opens.
pub const WRITERS_MAX: usize = 8;

/// Runs the ingester until `stop` is set (or it has been idle for `idle_exit`).
///
/// Two threads: the poller polls Kafka (and so runs the rebalance callbacks), validates and
/// builds batches; the writer commits them. A channel of one batch between them bounds memory and
/// lets validation of the next batch overlap with the database work of this one.
pub fn consume(cfg: &IngestConfig) -> Result<IngestStats, IngestError> {
    let writers = cfg.writers.clamp(1, WRITERS_MAX);
    let mut stats = IngestStats::default();
    let mut dbs = Vec::with_capacity(writers);
    // One commit log for all writers: each checks the others' commits in memory at commit time.
    let commits = Arc::new(store::append::CommitLog::default());
    for _ in 0..writers {
        let Some((db, check)) = connections_until_up(&cfg.database_url, &cfg.stop, &mut stats)? else {
            return Ok(stats);
        };
        dbs.push(LedgerWriter::new(db, check).with_commit_log(commits.clone()));
    }
    // As the writer role: in production the login role is only a member of it.
    store::check_migrated(&mut dbs[0].db)?;
    store::check_durability(&mut dbs[0].db)?;
    if let Some(dlq) = &cfg.dead_letter_topic {
        crate::producer::ensure_topic(&cfg.brokers, dlq, 1)?;
    }

    let shared = Arc::new(Shared::default());
    let ctx = Ctx {
        topic: cfg.topic.clone(),
        owner: cfg.owner.clone(),
        database_url: cfg.database_url.clone(),
        claim_db: Mutex::new(None),
        shared: shared.clone(),
        stop: cfg.stop.clone(),
    };
    let consumer: BaseConsumer<Ctx> = consumer_config(cfg).create_with_context(ctx)?;
    consumer.subscribe(&[&cfg.topic])?;
    info!(topic = %cfg.topic, group = %cfg.group, owner = %cfg.owner, writers, "ingester started");

    let dlq: Option<ThreadedProducer<DefaultProducerContext>> = match &cfg.dead_letter_topic {
        Some(_) => Some(
            ClientConfig::new()
                .set("bootstrap.servers", &cfg.brokers)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .create()?,
        ),
        None => None,
    };
    let result = run_threads(cfg, &consumer, &shared, dbs, dlq.as_ref(), stats.db_retries);
    match &result {
        Ok(stats) => info!(?stats, "ingester stopped"),
        Err(e) => tracing::error!(error = %e, "ingester stopped on an error"),
    }
    result
}

/// The consumer's settings: offsets are never stored in Kafka, and never reset.
fn consumer_config(cfg: &IngestConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A partition the ledger has never seen is assigned at Offset::Beginning explicitly; a
        // stored offset Kafka no longer has (retention, truncation) is an error, never a reset.
        .set("auto.offset.reset", "error")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "300000")
        // The prefetch queue bounds memory (16 MiB of messages); when it is full librdkafka
        // waits fetch.queue.backoff.ms before fetching again, 1 s by default, which starved the
        // writers every few batches. 20 ms keeps them fed at the same bound.
        .set("queued.min.messages", "20000")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.queue.backoff.ms", "20")
        .set("fetch.max.bytes", "8388608")
        .set("partition.assignment.strategy", "range");
    if let Some(id) = &cfg.instance_id {
        config.set("group.instance.id", id);
    }
    config
}

/// Runs the writer threads beside the poller (this thread) until the poller stops; the writers'
/// counts added up, with the retries spent opening their connections (`db_retries`).
fn run_threads(
    cfg: &IngestConfig,
    consumer: &BaseConsumer<Ctx>,
    shared: &Shared,
    dbs: Vec<LedgerWriter>,
    dlq: Option<&ThreadedProducer<DefaultProducerContext>>,
    db_retries: u64,
) -> Result<IngestStats, IngestError> {
    let writers = dbs.len();
    let (seek_tx, seek_rx) = std::sync::mpsc::channel::<Seek>();
    let writer_failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(writers);
        let mut handles = Vec::with_capacity(writers);
        for (i, mut db) in dbs.into_iter().enumerate() {
            // A channel of one batch per writer: back-pressure instead of an unbounded queue.
            let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Batch>(1);
            senders.push(batch_tx);
            let (seeks, failed) = (seek_tx.clone(), &writer_failed);
            handles.push(scope.spawn(move || {
                let r = writer::write_batches(cfg, i, shared, &mut db, batch_rx, seeks, dlq);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                r
            }));
        }
        drop(seek_tx);
        let polled = poller::poll_batches(cfg, consumer, shared, senders, seek_rx, &writer_failed);
        let mut total = IngestStats { db_retries, ..IngestStats::default() };
        let mut written = Ok(());
        for h in handles {
            match h.join().unwrap_or_else(|_| Err(IngestError::Other("a writer thread panicked".into()))) {
                Ok(s) => total += s,
                Err(e) => written = written.and(Err(e)),
            }
        }
        let first = *shared.first_polled.lock().expect("first lock");
        let last = *shared.last_commit.lock().expect("last lock");
        if let (Some(f), Some(l)) = (first, last) {
            total.active_ms = l.saturating_duration_since(f).as_millis() as u64;
        }
        polled.and(written).map(|()| total)
    })
}
