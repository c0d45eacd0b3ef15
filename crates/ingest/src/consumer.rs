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
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::append::{claim_partitions, AppendOutcome, Claim, InMessage, LedgerWriter, PartitionBatch};
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

/// What the poller (which runs the rebalance callbacks) and the writers all see.
#[derive(Default)]
struct Shared {
    claims: Mutex<HashMap<i32, Claim>>,
    /// Bumped on every assignment and revocation: batches read under an older one are dropped.
    generation: AtomicU64,
    /// Whether the group has given us an assignment (possibly empty) that is not revoked yet.
    assigned: AtomicBool,
    /// Set when claiming partitions failed in a way retrying cannot cure; the poller stops on it.
    fatal: Mutex<Option<String>>,
    /// Batches handed to writers and not finished yet (the idle exit waits for them: a fenced
    /// batch asks the poller to seek, and its messages are read again).
    in_flight: std::sync::atomic::AtomicUsize,
    /// When the first message was polled and the last batch committed (for `active_ms`).
    first_polled: Mutex<Option<Instant>>,
    last_commit: Mutex<Option<Instant>>,
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
                        Err(e) if !e.is_transient() => {
                            let why = format!("claiming partitions {partitions:?} failed: {e} ({})", cause(&e));
                            tracing::error!("{why}");
                            *self.shared.fatal.lock().expect("fatal lock") = Some(why);
                            return;
                        }
                        Err(e) => {
                            warn!(error = %e, cause = %cause(&e), ?partitions, "claiming partitions failed, retrying");
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
                self.shared.assigned.store(true, Ordering::SeqCst);
                self.shared.generation.fetch_add(1, Ordering::SeqCst);
                info!(?partitions, epochs = ?claims.iter().map(|c| c.epoch).collect::<Vec<_>>(), "partitions assigned and claimed");
                if let Err(e) = consumer.assign(tpl) {
                    warn!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.shared.claims.lock().expect("claims lock").clear();
                self.shared.assigned.store(false, Ordering::SeqCst);
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

/// What lies under an error (the server's message under "database error"), for the log.
fn cause(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(c) = next {
        parts.push(c.to_string());
        next = c.source();
    }
    parts.join(": ")
}

/// Opens a connection as the writer role, waiting while the database is down or restarting.
/// `Ok(None)`: stopped while waiting. An error that waiting cannot cure (wrong password, no such
/// database or role) is returned, not retried forever.
fn connect_until_up(url: &str, stop: &AtomicBool, stats: &mut IngestStats) -> Result<Option<Client>, IngestError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let opened = store::connect(url).and_then(|mut c| {
            c.batch_execute("SET ROLE gpuledger_writer").map_err(store::StoreError::from)?;
            Ok(c)
        });
        match opened {
            Ok(c) => return Ok(Some(c)),
            Err(e) if e.is_transient() => {
                stats.db_retries += 1;
                warn!(error = %e, cause = %cause(&e), "database unavailable, waiting");
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                let why = cause(&e);
                return Err(IngestError::Other(format!(
                    "cannot use the database as the ledger's writer (has `gpuledger migrate` run?): {e} ({why})"
                )));
            }
        }
    }
}

/// A writer's two connections (see `store::append::LedgerWriter`), retried until both open.
fn connections_until_up(
    url: &str,
    stop: &AtomicBool,
    stats: &mut IngestStats,
) -> Result<Option<(Client, Client)>, IngestError> {
    let Some(db) = connect_until_up(url, stop, stats)? else { return Ok(None) };
    let Some(check) = connect_until_up(url, stop, stats)? else { return Ok(None) };
    Ok(Some((db, check)))
}

/// The writer asks the poller to move a partition to the ledger's next offset.
struct Seek {
    generation: u64,
    partition: i32,
    offset: i64,
}

/// A message as polled: validated by the writer that takes it, so that validation runs on as many
/// threads as there are writers.
struct RawMessage {
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// A batch handed from the poller to a writer.
struct Batch {
    generation: u64,
    parts: BTreeMap<i32, Vec<RawMessage>>,
}

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
    let consumer: BaseConsumer<Ctx> = config.create_with_context(ctx)?;
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
    let (seek_tx, seek_rx) = std::sync::mpsc::channel::<Seek>();
    let writer_failed = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(writers);
        let mut handles = Vec::with_capacity(writers);
        for (i, mut db) in dbs.into_iter().enumerate() {
            // A channel of one batch per writer: back-pressure instead of an unbounded queue.
            let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Batch>(1);
            senders.push(batch_tx);
            let (shared, seeks, failed, dlq) = (&shared, seek_tx.clone(), &writer_failed, dlq.as_ref());
            handles.push(scope.spawn(move || {
                let r = write_batches(cfg, i, shared, &mut db, batch_rx, seeks, dlq);
                if r.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                r
            }));
        }
        drop(seek_tx);
        let polled = poll_batches(cfg, &consumer, &shared, senders, seek_rx, &writer_failed);
        let mut total = IngestStats { db_retries: stats.db_retries, ..IngestStats::default() };
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
    });
    match &result {
        Ok(stats) => info!(?stats, "ingester stopped"),
        Err(e) => tracing::error!(error = %e, "ingester stopped on an error"),
    }
    result
}

/// Most writer threads (and database connections) one ingester opens.
pub const WRITERS_MAX: usize = 8;

/// One writer's share of the polled messages, not yet sent.
#[derive(Default)]
struct Pending {
    parts: BTreeMap<i32, Vec<RawMessage>>,
    messages: usize,
    started: Option<Instant>,
}

fn poll_batches(
    cfg: &IngestConfig,
    consumer: &BaseConsumer<Ctx>,
    shared: &Shared,
    batches: Vec<std::sync::mpsc::SyncSender<Batch>>,
    seeks: std::sync::mpsc::Receiver<Seek>,
    writer_failed: &AtomicBool,
) -> Result<(), IngestError> {
    let writers = batches.len();
    let mut pending: Vec<Pending> = (0..writers).map(|_| Pending::default()).collect();
    let mut buf_generation = shared.generation.load(Ordering::SeqCst);
    let mut last_message = Instant::now();
    // Where each partition must continue after an assignment or a seek: the ledger's next offset.
    let mut expect: FxHashMap<i32, i64> = FxHashMap::default();
    // Which writer takes each partition: the claimed partitions in order, dealt out in turn.
    let mut writer_of: FxHashMap<i32, usize> = FxHashMap::default();
    let mut seen_any = false;
    let mut stashed_seek: Option<Seek> = None;
    loop {
        if cfg.stop.load(Ordering::Relaxed) || writer_failed.load(Ordering::SeqCst) {
            break;
        }
        if let Some(why) = shared.fatal.lock().expect("fatal lock").take() {
            return Err(IngestError::Other(why));
        }
        // A writer found our position in a partition behind or ahead of the ledger's.
        while let Some(request) = stashed_seek.take().or_else(|| seeks.try_recv().ok()) {
            last_message = Instant::now(); // the messages from there on are still to be read
            if request.generation != shared.generation.load(Ordering::SeqCst) {
                continue; // asked under an assignment that is gone; the new claim set the position
            }
            for p in &mut pending {
                if let Some(v) = p.parts.remove(&request.partition) {
                    p.messages -= v.len();
                }
            }
            if seek(consumer, &cfg.topic, request.partition, request.offset) {
                expect.insert(request.partition, request.offset);
            }
        }
        let polled = consumer.poll(Duration::from_millis(20));
        // One clock read per message or empty poll, for the linger and idle checks below.
        let now = Instant::now();
        let generation = shared.generation.load(Ordering::SeqCst);
        if generation != buf_generation {
            // A rebalance happened inside poll: whatever was buffered belongs to an old claim.
            pending.iter_mut().for_each(|p| *p = Pending::default());
            buf_generation = generation;
            // Idle time counts from the assignment: joining the group (on a fresh broker, creating
            // its offsets topic first) can take longer than the idle limit.
            last_message = now;
            let claims = shared.claims.lock().expect("claims lock");
            expect = claims.values().filter_map(|c| c.next_offset.map(|n| (c.partition, n))).collect();
            let mut partitions: Vec<i32> = claims.keys().copied().collect();
            partitions.sort_unstable();
            writer_of = partitions.into_iter().enumerate().map(|(i, p)| (p, i % writers)).collect();
        }
        match polled {
            Some(Ok(msg)) => {
                last_message = now;
                if !seen_any {
                    seen_any = true;
                    *shared.first_polled.lock().expect("first lock") = Some(last_message);
                }
                let (partition, offset) = (msg.partition(), msg.offset());
                let w = writer_of.get(&partition).copied().unwrap_or(0);
                let p = &mut pending[w];
                let part = p.parts.entry(partition).or_default();
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
                part.push(RawMessage { offset, key, payload });
                p.messages += 1;
                p.started.get_or_insert(now);
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
        for (w, p) in pending.iter_mut().enumerate() {
            let due = p.started.is_some_and(|t| now.duration_since(t) >= cfg.linger);
            if p.messages < cfg.batch_max && !(p.messages > 0 && due) {
                continue;
            }
            let batch = Batch { generation: buf_generation, parts: std::mem::take(&mut p.parts) };
            let messages = std::mem::take(&mut p.messages);
            let started = p.started.take();
            // A busy writer: keep polling for the others until this one has a whole batch waiting.
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            let sent = if messages >= cfg.batch_max {
                batches[w].send(batch).map_err(|_| ())
            } else {
                match batches[w].try_send(batch) {
                    Ok(()) => Ok(()),
                    Err(std::sync::mpsc::TrySendError::Full(batch)) => {
                        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                        p.parts = batch.parts;
                        p.messages = messages;
                        p.started = started;
                        continue;
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(()),
                }
            };
            if sent.is_err() {
                return Ok(());
            }
        }
        if let Some(idle) = cfg.idle_exit {
            let quiet = now.duration_since(last_message);
            if shared.assigned.load(Ordering::SeqCst) {
                let drained = pending.iter().all(|p| p.messages == 0) && shared.in_flight.load(Ordering::SeqCst) == 0;
                if drained && quiet >= idle {
                    // A writer may have asked for a seek just before finishing its batch.
                    if let Ok(request) = seeks.try_recv() {
                        stashed_seek = Some(request);
                        continue;
                    }
                    info!("idle, exiting");
                    break;
                }
            } else if quiet >= idle + UNASSIGNED_GRACE {
                warn!(waited = ?quiet, "no partitions assigned by the group, exiting as idle");
                break;
            }
        }
    }
    Ok(())
}

/// Counts a batch as finished when the writer is done with it, however it ends.
struct Finished<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How much longer than `idle_exit` the ingester waits for the group to assign partitions.
const UNASSIGNED_GRACE: Duration = Duration::from_secs(60);

fn write_batches(
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
struct Writer<'a> {
    cfg: &'a IngestConfig,
    db: &'a mut LedgerWriter,
    dlq: Option<&'a ThreadedProducer<DefaultProducerContext>>,
    /// Where to ask the poller for a seek (a fenced partition still ours).
    seeks: &'a std::sync::mpsc::Sender<Seek>,
    stats: IngestStats,
    /// Events the database refused since it last ledgered one for this writer (see `isolate`).
    refused_in_a_row: usize,
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
    fn committed(&mut self, parts: &[PartitionBatch], counts: &store::append::BatchCounts) {
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
    fn fenced(&mut self, parts: &mut Vec<PartitionBatch>, fences: &[store::append::Fence], generation: u64) {
        self.stats.fenced += 1;
        for f in fences {
            warn!(partition = f.partition, still_owned = f.still_owned, next_offset = ?f.next_offset, "batch fenced");
            parts.retain(|b| b.claim.partition != f.partition);
            if let (true, Some(n)) = (f.still_owned, f.next_offset) {
                let _ = self.seeks.send(Seek { generation, partition: f.partition, offset: n });
            }
        }
    }

    /// Waits before the same batch is tried again after a transient error, reconnecting if the
    /// connection is gone. False: the ingester is stopping (the batch stays uncommitted; its offsets
    /// were not advanced, so the next owner reads it again).
    fn wait_to_retry(&mut self, e: &store::StoreError, backoff: &mut Duration) -> Result<bool, IngestError> {
        self.stats.db_retries += 1;
        warn!(error = %e, cause = %cause(e), "database write failed, retrying the same batch");
        if self.cfg.stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        std::thread::sleep(*backoff);
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
        if self.db.is_closed() {
            match connections_until_up(&self.cfg.database_url, &self.cfg.stop, &mut self.stats)? {
                Some((db, check)) => self.db.reconnect(db, check),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The database refused a batch the validator accepted (a constraint or limit the validator does
    /// not know of). Each partition is written in halves until the refused event stands alone; it is
    /// quarantined as `refused_by_database` with the database's reason, and the rest is ledgered as
    /// usual: the partition goes on, and no valid event is lost. Before an event is set aside, the
    /// monthly partitions are ensured again (a refusal can be a month that was detached meanwhile);
    /// and when the database refuses many events in a row and ledgers none between them, the fault is
    /// taken to be the database's, and the ingester stops instead of quarantining everything (the
    /// count runs across batches, per writer).
    fn isolate(&mut self, parts: Vec<PartitionBatch>, generation: u64) -> Result<(), IngestError> {
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

/// How many events in a row the database may refuse before the ingester concludes that the
/// cause is not in the events (a broken database, a rule that refuses everything) and stops.
const REFUSED_IN_A_ROW_MAX: usize = 16;

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
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Err((e, _)) = producer.send(rec) {
            warn!(error = %e, "dead-letter send failed (the quarantine table holds the message)");
        }
    }
    let _ = producer.flush(Duration::from_secs(5));
}
