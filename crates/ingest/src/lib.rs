//! The Kafka adapter: `consume` runs the exactly-once ingester (consumer group → one PostgreSQL
//! transaction per batch, offsets stored in the ledger, fenced by claim epochs), `produce` sends
//! the simulator's messages, and `ensure_topic` creates the topic.

pub mod consumer;
pub mod producer;

pub use consumer::{consume, IngestConfig, IngestStats, WRITERS_MAX};
pub use producer::{ensure_topic, idempotent_config, produce, ProduceStats};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka error")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("store error")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Other(String),
}
