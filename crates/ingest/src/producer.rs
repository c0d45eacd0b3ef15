//! Producing usage messages (the simulator's or anyone's) to Kafka, idempotently and in order per
//! key, and creating the topic.

use crate::IngestError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Creates the topic with `partitions` partitions unless it exists.
pub fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), IngestError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = futures_executor::block_on(admin.create_topics([&new], &opts))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(IngestError::Other(format!("creating topic {name}: {code}"))),
        }
    }
    Ok(())
}

/// The configuration of every usage producer (the simulator's and the HTTP ingest's): acks=all
/// and idempotence, so a retry inside the client neither loses nor doubles a message, and the Java
/// clients' partitioner, so that a key lands on the same partition whoever produces it.
pub fn idempotent_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("message.max.bytes", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .set("compression.type", "lz4")
        .set("partitioner", "murmur2_random");
    c
}

#[derive(Default)]
struct Delivery {
    delivered: AtomicU64,
    failed: AtomicU64,
}

struct Ctx(Arc<Delivery>);
impl ClientContext for Ctx {}
impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.0.delivered.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                tracing::error!(error = %e, "delivery failed");
                self.0.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceStats {
    pub delivered: u64,
}

/// Sends every `(key, payload)` to `topic` with acks=all and idempotence, then waits for all of
/// them to be acknowledged. Fails if any message could not be delivered.
pub fn produce(
    brokers: &str,
    topic: &str,
    messages: impl Iterator<Item = (Option<Vec<u8>>, Vec<u8>)>,
) -> Result<ProduceStats, IngestError> {
    let delivery = Arc::new(Delivery::default());
    let producer: ThreadedProducer<Ctx> = idempotent_config(brokers).create_with_context(Ctx(delivery.clone()))?;
    let mut sent = 0u64;
    for (key, payload) in messages {
        let mut record = BaseRecord::to(topic).payload(&payload);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(120))?;
    let failed = delivery.failed.load(Ordering::Relaxed);
    let delivered = delivery.delivered.load(Ordering::Relaxed);
    if failed > 0 || delivered != sent {
        return Err(IngestError::Other(format!("{failed} of {sent} messages failed, {delivered} delivered")));
    }
    Ok(ProduceStats { delivered })
}
