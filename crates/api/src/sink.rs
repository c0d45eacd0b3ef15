//! Where `POST /v1/events` sends what it accepted: the usage topic, through one idempotent
//! producer (acks=all) for the whole server. A batch counts as sent only when Kafka acknowledged
//! every message of it; a broker that is down or slow makes the batch fail after the produce
//! timeout, never wait for ever.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer as RdFutureProducer, FutureRecord, Producer};
use rdkafka::util::AsyncRuntime;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// rdkafka's futures on the server's tokio runtime (its own `tokio` feature would do the same;
/// these two functions are all it takes).
pub(crate) struct Tokio;

impl AsyncRuntime for Tokio {
    type Delay = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn spawn<T>(task: T)
    where
        T: Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task);
    }

    fn delay_for(duration: Duration) -> Self::Delay {
        Box::pin(tokio::time::sleep(duration))
    }
}

type FutureProducer = RdFutureProducer<rdkafka::client::DefaultClientContext, Tokio>;

/// How `gpuledger serve` produces accepted events.
#[derive(Debug, Clone)]
pub struct EventIngest {
    pub brokers: String,
    pub topic: String,
    /// How long a message may wait for Kafka's acknowledgement (librdkafka's
    /// `message.timeout.ms`); then the request is answered 503.
    pub produce_timeout: Duration,
    /// Each producer token's budget of events per second (the burst is twice this).
    pub events_per_second: u64,
    /// How long an event may wait for others to share its Kafka batch (librdkafka's `linger.ms`).
    pub linger: Duration,
}

/// Why a batch was not acknowledged: Kafka did not acknowledge in time, refused, or the local
/// queue is full. Try again later.
#[derive(Debug)]
pub(crate) struct Unavailable(pub(crate) String);

/// The server's producer. It is made again after a fatal error (an idempotent producer that lost
/// its sequence can send nothing more), so one bad moment does not stop the ingest for good.
pub(crate) struct EventSink {
    config: EventIngest,
    producer: Mutex<Arc<FutureProducer>>,
}

impl EventSink {
    pub(crate) fn new(config: EventIngest) -> Result<EventSink, KafkaError> {
        let producer = Mutex::new(Arc::new(Self::create(&config)?));
        Ok(EventSink { config, producer })
    }

    fn create(config: &EventIngest) -> Result<FutureProducer, KafkaError> {
        let timeout_ms = config.produce_timeout.as_millis().clamp(1, i32::MAX as u128).to_string();
        let linger_ms = config.linger.as_millis().min(1000).to_string();
        ingest::idempotent_config(&config.brokers)
            // A request waits for its events' acknowledgement, and its client for the answer:
            // lingering slows every client down (docs/benchmarks.md: 176,000 events/s at 0 ms,
            // 85,000 at 5, 33,000 at 20), while requests still share Kafka batches, since events
            // gather while earlier produce requests are in flight (idempotence allows 5).
            .set("linger.ms", &linger_ms)
            .set("message.timeout.ms", &timeout_ms)
            .create()
    }

    pub(crate) fn events_per_second(&self) -> u64 {
        self.config.events_per_second
    }

    fn current(&self) -> Result<Arc<FutureProducer>, Unavailable> {
        let mut p = self.producer.lock().expect("producer lock");
        if let Some((code, why)) = p.client().fatal_error() {
            tracing::error!(%code, %why, "the event producer failed fatally; making a new one");
            *p = Arc::new(Self::create(&self.config).map_err(|e| Unavailable(e.to_string()))?);
        }
        Ok(p.clone())
    }

    /// Sends every `(key, payload)` and waits until Kafka acknowledged each (acks=all). On an
    /// error some messages may have been written: the caller's retry is safe because the ledger
    /// counts an event id it holds as a duplicate.
    pub(crate) async fn send_all(&self, messages: &[(&str, &[u8])]) -> Result<(), Unavailable> {
        let producer = self.current()?;
        let mut pending = Vec::with_capacity(messages.len());
        for (key, payload) in messages {
            let record = FutureRecord::to(&self.config.topic).key(*key).payload(*payload);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(Unavailable("the producer's queue is full".into()));
                }
                Err((e, _)) => return Err(Unavailable(e.to_string())),
            }
        }
        let mut failed = None;
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => failed = Some(e.to_string()),
                Err(_) => failed = Some("the producer went away".into()),
            }
        }
        match failed {
            None => Ok(()),
            Some(e) => Err(Unavailable(e)),
        }
    }
}
