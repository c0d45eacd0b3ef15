//! The exactly-once ingester.
//!
//! Kafka only delivers; PostgreSQL decides. Offsets live in `ledger_streams`, written in the same
//! transaction as the events and the quarantine. On assignment the ingester claims each partition
//! in the database (bumping its epoch) and starts from the stored offset; a batch commits only if
//! the claim is still current and the batch starts exactly at the stored offset, so a consumer
//! that lost its partition (rebalance, long pause, zombie) cannot commit a stale batch.
//!
//! One thread polls, validates (pure), and writes; a database outage stops it where it is and it
//! retries the same batch until the database answers. Bad input is never an error here: the
//! validator turns it into a quarantine row.

use crate::IngestError;
use chrono::Utc;
use domain::usage::parse_usage_message;
use postgres::Client;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::append::{append_batch, claim_partitions, AppendOutcome, Claim, InMessage, PartitionBatch, PartitionCache};
use tracing::{info, warn};

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

/// What the poller (which runs the rebalance callbacks) and the writer both see.
#[derive(Default)]
struct Shared {
    claims: Mutex<HashMap<i32, Claim>>,
    /// Bumped on every assignment and revocation: batches read under an older one are dropped.
    generation: AtomicU64,
}

struct Ctx {
    topic: String,
    owner: String,
    database_url: String,
    claim_db: Mutex<Option<Client>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn claim(&self, partitions: &[i32]) -> Result<Vec<Claim>, store::StoreError> {
        let mut guard = self.claim_db.lock().expect("claim db lock");
        if guard.is_none() {
            let mut c = store::connect(&self.database_url)?;
            // Same rights as the writer, and never hang the polling thread for long.
            c.batch_execute("SET ROLE gpuledger_writer; SET statement_timeout = '30s'")
                .map_err(store::StoreError::from)?;
            *guard = Some(c);
        }
        let result = claim_partitions(guard.as_mut().expect("just set"), &self.topic, partitions, &self.owner);
        if result.is_err() {
            *guard = None;
        }
        result
    }
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements_for_topic(&self.topic).iter().map(|e| e.partition()).collect();
                let mut backoff = Duration::from_millis(100);
                let claims = loop {
                    match self.claim(&partitions) {
                        Ok(c) => break c,
                        Err(e) => {
                            warn!(error = %e, ?partitions, "claiming partitions failed, retrying");
                            if self.stop.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                let mut map = self.shared.claims.lock().expect("claims lock");
                map.clear();
                for c in &claims {
                    let offset = c.next_offset.map(Offset::Offset).unwrap_or(Offset::Beginning);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, c.partition, offset) {
                        warn!(error = %e, partition = c.partition, "setting start offset failed");
                    }
                    map.insert(c.partition, *c);
                }
                self.shared.generation.fetch_add(1, Ordering::SeqCst);
                info!(?partitions, epochs = ?claims.iter().map(|c| c.epoch).collect::<Vec<_>>(), "partitions assigned and claimed");
                if let Err(e) = consumer.assign(tpl) {
                    warn!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.shared.claims.lock().expect("claims lock").clear();
                self.shared.generation.fetch_add(1, Ordering::SeqCst);
                info!("partitions revoked");
                if let Err(e) = consumer.unassign() {
                    warn!(error = %e, "unassign failed");
                }
            }
            other => warn!(error = ?other, "rebalance error"),
        }
    }
}

fn connect_until_up(url: &str, stop: &AtomicBool, stats: &mut IngestStats) -> Option<Client> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let opened = store::connect(url).and_then(|mut c| {
            c.batch_execute("SET ROLE gpuledger_writer").map_err(store::StoreError::from)?;
            Ok(c)
        });
        match opened {
            Ok(c) => return Some(c),
            Err(e) => {
                stats.db_retries += 1;
                warn!(error = %e, "database unavailable, waiting");
                if stop.load(Ordering::Relaxed) {
                    return None;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The writer asks the poller to move a partition to the ledger's next offset.
struct Seek {
    generation: u64,
    partition: i32,
    offset: i64,
}

/// A batch handed from the poller to the writer.
struct Batch {
    generation: u64,
    first_polled: Instant,
    parts: BTreeMap<i32, Vec<InMessage>>,
}

/// Runs the ingester until `stop` is set (or it has been idle for `idle_exit`).
///
/// Two threads: the poller polls Kafka (and so runs the rebalance callbacks), validates and
/// builds batches; the writer commits them. A channel of one batch between them bounds memory and
/// lets validation of the next batch overlap with the database work of this one.
pub fn consume(cfg: &IngestConfig) -> Result<IngestStats, IngestError> {
    let mut stats = IngestStats::default();
    let Some(mut db) = connect_until_up(&cfg.database_url, &cfg.stop, &mut stats) else {
        return Ok(stats);
    };
    store::check_durability(&mut db)?;
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
        .set("queued.min.messages", "20000")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.max.bytes", "8388608")
        .set("partition.assignment.strategy", "range");
    if let Some(id) = &cfg.instance_id {
        config.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<Ctx> = config.create_with_context(ctx)?;
    consumer.subscribe(&[&cfg.topic])?;
    info!(topic = %cfg.topic, group = %cfg.group, owner = %cfg.owner, "ingester started");

    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Batch>(1);
    let (seek_tx, seek_rx) = std::sync::mpsc::channel::<Seek>();
    let writer_failed = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let r = write_batches(cfg, &shared, &mut db, batch_rx, seek_tx, stats);
            if r.is_err() {
                writer_failed.store(true, Ordering::SeqCst);
            }
            r
        });
        let polled = poll_batches(cfg, &consumer, &shared, batch_tx, seek_rx, &writer_failed);
        let written = writer.join().unwrap_or_else(|_| Err(IngestError::Other("the writer thread panicked".into())));
        polled.and(written)
    });
    match &result {
        Ok(stats) => info!(?stats, "ingester stopped"),
        Err(e) => tracing::error!(error = %e, "ingester stopped on an error"),
    }
    result
}

fn poll_batches(
    cfg: &IngestConfig,
    consumer: &BaseConsumer<Ctx>,
    shared: &Shared,
    batches: std::sync::mpsc::SyncSender<Batch>,
    seeks: std::sync::mpsc::Receiver<Seek>,
    writer_failed: &AtomicBool,
) -> Result<(), IngestError> {
    let mut buf: BTreeMap<i32, Vec<InMessage>> = BTreeMap::new();
    let mut buffered = 0usize;
    let mut buf_generation = shared.generation.load(Ordering::SeqCst);
    let mut batch_started: Option<Instant> = None;
    let mut last_message = Instant::now();
    // Where each partition must continue after an assignment or a seek: the ledger's next offset.
    let mut expect: HashMap<i32, i64> = HashMap::new();
    loop {
        if cfg.stop.load(Ordering::Relaxed) || writer_failed.load(Ordering::SeqCst) {
            break;
        }
        // The writer found our position in a partition behind or ahead of the ledger's.
        while let Ok(request) = seeks.try_recv() {
            if request.generation != shared.generation.load(Ordering::SeqCst) {
                continue; // asked under an assignment that is gone; the new claim set the position
            }
            if let Some(v) = buf.remove(&request.partition) {
                buffered -= v.len();
            }
            if seek(consumer, &cfg.topic, request.partition, request.offset) {
                expect.insert(request.partition, request.offset);
            }
        }
        let polled = consumer.poll(Duration::from_millis(20));
        let generation = shared.generation.load(Ordering::SeqCst);
        if generation != buf_generation {
            // A rebalance happened inside poll: whatever was buffered belongs to an old claim.
            buf.clear();
            buffered = 0;
            batch_started = None;
            buf_generation = generation;
            expect = shared
                .claims
                .lock()
                .expect("claims lock")
                .values()
                .filter_map(|c| c.next_offset.map(|n| (c.partition, n)))
                .collect();
        }
        match polled {
            Some(Ok(msg)) => {
                last_message = Instant::now();
                let (partition, offset) = (msg.partition(), msg.offset());
                let part = buf.entry(partition).or_default();
                let next = part.last().map(|last| last.offset + 1).or_else(|| expect.get(&partition).copied());
                match next {
                    Some(n) if offset < n => continue, // delivered before a seek took effect
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
                expect.remove(&partition);
                let key = msg.key().map(<[u8]>::to_vec);
                let payload = msg.payload().map(<[u8]>::to_vec).unwrap_or_default();
                let verdict = parse_usage_message(key.as_deref(), &payload, Utc::now());
                part.push(InMessage::new(offset, key, payload, verdict));
                buffered += 1;
                batch_started.get_or_insert(last_message);
            }
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
        let due = batch_started.is_some_and(|t| t.elapsed() >= cfg.linger);
        if buffered >= cfg.batch_max || (buffered > 0 && due) {
            let batch = Batch {
                generation: buf_generation,
                first_polled: batch_started.take().unwrap_or_else(Instant::now),
                parts: std::mem::take(&mut buf),
            };
            buffered = 0;
            // Blocks while the writer is busy: back-pressure instead of an unbounded queue.
            if batches.send(batch).is_err() {
                break;
            }
        }
        if let Some(idle) = cfg.idle_exit {
            if buffered == 0 && last_message.elapsed() >= idle {
                info!("idle, exiting");
                break;
            }
        }
    }
    Ok(())
}

fn write_batches(
    cfg: &IngestConfig,
    shared: &Shared,
    db: &mut Client,
    batches: std::sync::mpsc::Receiver<Batch>,
    seeks: std::sync::mpsc::Sender<Seek>,
    mut stats: IngestStats,
) -> Result<IngestStats, IngestError> {
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
    let mut cache = PartitionCache::default();
    let mut first: Option<Instant> = None;
    let mut last_log = Instant::now();
    // Ends when the poller drops its sender (stop, idle, error) after the last batch.
    for batch in batches {
        if batch.generation != shared.generation.load(Ordering::SeqCst) {
            continue; // read under a claim that is gone; the new claim restarts from the ledger
        }
        let first = *first.get_or_insert(batch.first_polled);
        commit(cfg, shared, db, &mut cache, batch.parts, &mut stats, dlq.as_ref(), &seeks, batch.generation)?;
        stats.active_ms = first.elapsed().as_millis() as u64;
        if last_log.elapsed() >= Duration::from_secs(5) {
            info!(
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
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn commit(
    cfg: &IngestConfig,
    shared: &Shared,
    db: &mut Client,
    cache: &mut PartitionCache,
    batch: BTreeMap<i32, Vec<InMessage>>,
    stats: &mut IngestStats,
    dlq: Option<&ThreadedProducer<DefaultProducerContext>>,
    seeks: &std::sync::mpsc::Sender<Seek>,
    generation: u64,
) -> Result<(), IngestError> {
    let claims = shared.claims.lock().expect("claims lock").clone();
    let mut parts: Vec<PartitionBatch> = batch
        .into_iter()
        .filter_map(|(p, messages)| claims.get(&p).map(|c| PartitionBatch { claim: *c, messages }))
        .collect();
    let mut backoff = Duration::from_millis(100);
    while !parts.is_empty() {
        match append_batch(db, cache, &cfg.owner, &parts, Utc::now()) {
            Ok(AppendOutcome::Committed(counts)) => {
                stats.batches += 1;
                stats.ledgered += counts.ledgered;
                stats.duplicates += counts.duplicates;
                stats.quarantined += counts.quarantined;
                if let (Some(p), Some(topic)) = (dlq, cfg.dead_letter_topic.as_deref()) {
                    dead_letter(p, topic, &cfg.topic, &parts, &counts.quarantined_at);
                }
                return Ok(());
            }
            Ok(AppendOutcome::Fenced(fences)) => {
                stats.fenced += 1;
                for f in &fences {
                    warn!(partition = f.partition, still_owned = f.still_owned, next_offset = ?f.next_offset, "batch fenced");
                    parts.retain(|b| b.claim.partition != f.partition);
                    if let (true, Some(n)) = (f.still_owned, f.next_offset) {
                        let _ = seeks.send(Seek { generation, partition: f.partition, offset: n });
                    }
                }
            }
            Err(e) if e.is_transient() => {
                stats.db_retries += 1;
                warn!(error = %e, cause = ?std::error::Error::source(&e), "database write failed, retrying the same batch");
                if cfg.stop.load(Ordering::Relaxed) {
                    // Shutting down: leave the batch uncommitted; its offsets were not advanced,
                    // so the next owner reads it again.
                    return Ok(());
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                if db.is_closed() {
                    match connect_until_up(&cfg.database_url, &cfg.stop, stats) {
                        Some(c) => *db = c,
                        None => return Ok(()),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
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
        if let Some(k) = &m.key {
            rec = rec.key(k);
        }
        if let Err((e, _)) = producer.send(rec) {
            warn!(error = %e, "dead-letter send failed (the quarantine table holds the message)");
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}
