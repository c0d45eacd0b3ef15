//! The HTTP ingest benchmark (docs/benchmarks.md): the same usage events produced straight to
//! Kafka by the idempotent producer (`ingest::produce`, acks=all), and posted to
//! `POST /v1/events` in batches by concurrent clients, each request answered only once Kafka
//! acknowledged its events. Events per second of each, side by side in one run, in rounds that
//! take turns, with the CPU time each process spent (this harness, the server, the broker,
//! PostgreSQL), since on a small machine they all share the same cores.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod cpu;
mod run;
pub use cpu::{CpuTicks, Processes};
pub use run::Run;

/// `n` valid usage events of `source`, spread over `tenants` tenants (`tenant-001`, ...), each on
/// a GPU and minute of its own: (tenant, the event's JSON bytes).
pub fn events(n: usize, tenants: usize, source: &str) -> Vec<(String, Vec<u8>)> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").expect("start").to_utc();
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (0..n)
        .map(|i| {
            let tenant = format!("tenant-{:03}", i % tenants.max(1) + 1);
            let gpu = uuid::Uuid::from_u128(i as u128 / 1440 + 1);
            let from = start + chrono::Duration::minutes((i % 1440) as i64);
            let to = from + chrono::Duration::minutes(1);
            let event = serde_json::json!({
                "specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "source": source,
                "type": domain::usage::EVENT_TYPE, "time": at(to), "datacontenttype": "application/json",
                "data": {"tenant_id": tenant, "gpu_sku": "nvidia-h100-sxm", "gpu_id": format!("GPU-{gpu}"),
                    "node": "fra1-r00-n000", "project": "bench", "interval_start": at(from),
                    "interval_end": at(to), "gpu_seconds": "60"}
            });
            (tenant, serde_json::to_vec(&event).expect("json"))
        })
        .collect()
}

/// The bodies of `application/cloudevents-batch+json` requests of `batch` events each.
pub fn batches(events: &[(String, Vec<u8>)], batch: usize) -> Vec<Bytes> {
    events
        .chunks(batch.max(1))
        .map(|c| {
            let mut body = Vec::with_capacity(c.iter().map(|e| e.1.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, (_, e)) in c.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(e);
            }
            body.push(b']');
            Bytes::from(body)
        })
        .collect()
}

/// What a run of posts gave: requests answered 202 and others, and the time all took.
#[derive(Debug, Clone, Copy)]
pub struct PostReport {
    pub accepted_requests: u64,
    pub refused_requests: u64,
    pub elapsed: Duration,
}

/// Posts every body once, by `clients` concurrent clients each on its own keep-alive connection
/// (a closed loop: a client sends its next batch when the previous one is answered), taking the
/// next body from a shared queue; client `i` uses token `i % tokens.len()`.
pub async fn post_all(
    addr: SocketAddr,
    tokens: &[String],
    bodies: Arc<Vec<Bytes>>,
    clients: usize,
) -> anyhow::Result<PostReport> {
    anyhow::ensure!(clients >= 1 && !tokens.is_empty(), "at least one client and one token");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (bodies, next) = (bodies.clone(), next.clone());
        let auth = format!("Bearer {}", tokens[i % tokens.len()]);
        tasks.push(tokio::spawn(async move {
            let (mut accepted, mut refused) = (0u64, 0u64);
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(k) else { break };
                let req = hyper::Request::post("/v1/events")
                    .header(hyper::header::HOST, "localhost")
                    .header(hyper::header::AUTHORIZATION, auth.as_str())
                    .header(hyper::header::CONTENT_TYPE, "application/cloudevents-batch+json")
                    .body(Full::new(body.clone()))?;
                send.ready().await?;
                let res = send.send_request(req).await?;
                let status = res.status();
                res.into_body().collect().await?;
                if status == hyper::StatusCode::ACCEPTED {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
            anyhow::Ok((accepted, refused))
        }));
    }
    let (mut accepted_requests, mut refused_requests) = (0, 0);
    for t in tasks {
        let (a, r) = t.await??;
        accepted_requests += a;
        refused_requests += r;
    }
    Ok(PostReport { accepted_requests, refused_requests, elapsed: start.elapsed() })
}

/// Events per second over `elapsed` (integer arithmetic).
pub fn per_second(events: u64, elapsed: Duration) -> u64 {
    events * 1000 / (elapsed.as_millis().max(1) as u64)
}
