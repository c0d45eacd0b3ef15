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

struct Ctx {
    topic: String,
    owner: String,
    database_url: String,
    claim_db: Mutex<Option<Client>>,
    claims: Mutex<HashMap<i32, Claim>>,
    generation: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Ctx {
    fn claim(&self, partitions: &[i32]) -> Result<Vec<Claim>, store::StoreError> {
        let mut guard = self.claim_db.lock().expect("claim db lock");
        if guard.is_none() {
            *guard = Some(store::connect(&self.database_url)?);
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
                let mut map = self.claims.lock().expect("claims lock");
                map.clear();
                for c in &claims {
                    let offset = c.next_offset.map(Offset::Offset).unwrap_or(Offset::Beginning);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, c.partition, offset) {
                        warn!(error = %e, partition = c.partition, "setting start offset failed");
                    }
                    map.insert(c.partition, *c);
                }
                self.generation.fetch_add(1, Ordering::SeqCst);
                info!(?partitions, epochs = ?claims.iter().map(|c| c.epoch).collect::<Vec<_>>(), "partitions assigned and claimed");
                if let Err(e) = consumer.assign(tpl) {
                    warn!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.claims.lock().expect("claims lock").clear();
                self.generation.fetch_add(1, Ordering::SeqCst);
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

/// Runs the ingester until `stop` is set (or it has been idle for `idle_exit`).
pub fn consume(cfg: &IngestConfig) -> Result<IngestStats, IngestError> {
    let mut stats = IngestStats::default();
    let Some(mut db) = connect_until_up(&cfg.database_url, &cfg.stop, &mut stats) else {
        return Ok(stats);
    };
    store::check_durability(&mut db)?;

    let ctx = Ctx {
        topic: cfg.topic.clone(),
        owner: cfg.owner.clone(),
        database_url: cfg.database_url.clone(),
        claim_db: Mutex::new(None),
        claims: Mutex::new(HashMap::new()),
        generation: AtomicU64::new(0),
        stop: cfg.stop.clone(),
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
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
    let mut buf: BTreeMap<i32, Vec<InMessage>> = BTreeMap::new();
    let mut buffered = 0usize;
    let mut buf_generation = consumer.context().generation.load(Ordering::SeqCst);
    let mut batch_started: Option<Instant> = None;
    let mut last_message = Instant::now();
    let mut first_message: Option<Instant> = None;
    let mut last_log = Instant::now();
    info!(topic = %cfg.topic, group = %cfg.group, owner = %cfg.owner, "ingester started");

    loop {
        if cfg.stop.load(Ordering::Relaxed) {
            break;
        }
        let polled = consumer.poll(Duration::from_millis(20));
        let generation = consumer.context().generation.load(Ordering::SeqCst);
        if generation != buf_generation {
            // A rebalance happened inside poll: whatever was buffered belongs to an old claim.
            buf.clear();
            buffered = 0;
            batch_started = None;
            buf_generation = generation;
        }
        match polled {
            Some(Ok(msg)) => {
                last_message = Instant::now();
                first_message.get_or_insert(last_message);
                let key = msg.key().map(<[u8]>::to_vec);
                let payload = msg.payload().map(<[u8]>::to_vec).unwrap_or_default();
                let verdict = parse_usage_message(key.as_deref(), &payload, Utc::now());
                buf.entry(msg.partition()).or_default().push(InMessage::new(msg.offset(), key, payload, verdict));
                buffered += 1;
                batch_started.get_or_insert_with(Instant::now);
            }
            Some(Err(e)) => warn!(error = %e, "kafka consumer error"),
            None => {}
        }
        let due = batch_started.is_some_and(|t| t.elapsed() >= cfg.linger);
        if buffered >= cfg.batch_max || (buffered > 0 && due) {
            let batch = std::mem::take(&mut buf);
            buffered = 0;
            batch_started = None;
            commit(cfg, &consumer, &mut db, &mut cache, batch, &mut stats, dlq.as_ref())?;
            if let Some(first) = first_message {
                stats.active_ms = first.elapsed().as_millis() as u64;
            }
        }
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
        if let Some(idle) = cfg.idle_exit {
            if buffered == 0 && last_message.elapsed() >= idle {
                info!("idle, exiting");
                break;
            }
        }
    }
    info!(?stats, "ingester stopped");
    Ok(stats)
}

fn commit(
    cfg: &IngestConfig,
    consumer: &BaseConsumer<Ctx>,
    db: &mut Client,
    cache: &mut PartitionCache,
    batch: BTreeMap<i32, Vec<InMessage>>,
    stats: &mut IngestStats,
    dlq: Option<&ThreadedProducer<DefaultProducerContext>>,
) -> Result<(), IngestError> {
    let claims = consumer.context().claims.lock().expect("claims lock").clone();
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
                    dead_letter(p, topic, &cfg.topic, &parts);
                }
                return Ok(());
            }
            Ok(AppendOutcome::Fenced(fences)) => {
                stats.fenced += 1;
                for f in &fences {
                    warn!(partition = f.partition, still_owned = f.still_owned, next_offset = ?f.next_offset, "batch fenced");
                    parts.retain(|b| b.claim.partition != f.partition);
                    if let (true, Some(n)) = (f.still_owned, f.next_offset) {
                        seek(consumer, &cfg.topic, f.partition, n)?;
                    }
                }
            }
            Err(e) if e.is_transient() => {
                stats.db_retries += 1;
                warn!(error = %e, cause = ?std::error::Error::source(&e), "database write failed, retrying the same batch");
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

fn seek(consumer: &BaseConsumer<Ctx>, topic: &str, partition: i32, offset: i64) -> Result<(), IngestError> {
    let mut last = None;
    for _ in 0..50 {
        match consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = Some(e);
                let _ = consumer.poll(Duration::from_millis(100));
            }
        }
    }
    Err(IngestError::Other(format!("cannot seek partition {partition} to {offset}: {last:?}")))
}

fn dead_letter(
    producer: &ThreadedProducer<DefaultProducerContext>,
    dlq_topic: &str,
    topic: &str,
    parts: &[PartitionBatch],
) {
    for b in parts {
        for m in &b.messages {
            if let Err(r) = &m.verdict {
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "gpuledger.reason", value: Some(r.code.as_str()) })
                    .insert(Header {
                        key: "gpuledger.source",
                        value: Some(&format!("{topic}/{}/{}", b.claim.partition, m.offset)),
                    });
                let mut rec = BaseRecord::to(dlq_topic).payload(&m.payload).headers(headers);
                if let Some(k) = &m.key {
                    rec = rec.key(k);
                }
                if let Err((e, _)) = producer.send(rec) {
                    warn!(error = %e, "dead-letter send failed (the quarantine table holds the message)");
                }
            }
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}
