//! Claims on assignment: the state the poller (which runs the rebalance callbacks) shares with
//! the writers, and the rebalance callback that claims each assigned partition in the database
//! (bumping its epoch) and starts it from the ledger's next offset.

use super::retry::cause;
use postgres::Client;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::append::{claim_partitions, Claim};
use tracing::{info, warn};

/// What the poller (which runs the rebalance callbacks) and the writers all see.
#[derive(Default)]
pub(super) struct Shared {
    pub claims: Mutex<HashMap<i32, Claim>>,
    /// Bumped on every assignment and revocation: batches read under an older one are dropped.
    pub generation: AtomicU64,
    /// Whether the group has given us an assignment (possibly empty) that is not revoked yet.
    pub assigned: AtomicBool,
    /// Set when claiming partitions failed in a way retrying cannot cure; the poller stops on it.
    pub fatal: Mutex<Option<String>>,
    /// Batches handed to writers and not finished yet (the idle exit waits for them: a fenced
    /// batch asks the poller to seek, and its messages are read again).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// When the first message was polled and the last batch committed (for `active_ms`).
    pub first_polled: Mutex<Option<Instant>>,
    pub last_commit: Mutex<Option<Instant>>,
}

pub(super) struct Ctx {
    pub topic: String,
    pub owner: String,
    pub database_url: String,
    pub claim_db: Mutex<Option<Client>>,
    pub shared: Arc<Shared>,
    pub stop: Arc<AtomicBool>,
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

    /// Claims the assigned partitions (retrying while the database is away), sets each one's
    /// start at the ledger's next offset and assigns them.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
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
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
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
