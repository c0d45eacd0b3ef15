//! The HTTP ingest benchmark (docs/benchmarks.md): the same usage events produced straight to
//! Kafka by the idempotent producer (`ingest::produce`, acks=all), and posted to
//! `POST /v1/events` in batches by concurrent clients, each request answered only once Kafka
//! acknowledged its events. Events per second of each, side by side in one run.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// One run of the benchmark: `events` events produced straight to one new topic, then posted in
/// batches of `batch` by `clients` clients to a `gpuledger serve` (the binary `server_bin`) that
/// produces to another; both topics have `partitions` partitions.
pub struct Run<'a> {
    pub database_url: &'a str,
    pub brokers: &'a str,
    pub server_bin: &'a std::path::Path,
    pub events: usize,
    pub batch: usize,
    pub clients: usize,
    pub partitions: i32,
}

const SOURCE: &str = "//bench/http-ingest";
const TENANTS: usize = 50;

impl Run<'_> {
    pub fn run(&self, db: &mut postgres::Client) -> anyhow::Result<()> {
        let suffix = format!("{}_{}", std::process::id(), chrono::Utc::now().timestamp());
        let (direct_topic, http_topic) = (format!("bench_direct_{suffix}"), format!("bench_http_{suffix}"));
        for t in [&direct_topic, &http_topic] {
            ::ingest::ensure_topic(self.brokers, t, self.partitions)?;
        }
        let tenants: Vec<String> = (1..=TENANTS).map(|i| format!("tenant-{i:03}")).collect();
        let tokens: Vec<String> = (0..self.clients)
            .map(|_| {
                let valid = chrono::Duration::hours(1);
                store::tokens::create_producer_token(db, SOURCE, &tenants, "bench", valid, chrono::Utc::now())
                    .map(|t| t.1)
            })
            .collect::<Result<_, _>>()?;
        let events = events(self.events, TENANTS, SOURCE);
        let bodies = Arc::new(batches(&events, self.batch));
        let bytes: usize = events.iter().map(|e| e.1.len()).sum();
        println!(
            "http ingest bench: {} events ({} bytes each on average), batches of {}, {} clients, {} partitions, {} cores",
            events.len(),
            bytes / events.len().max(1),
            self.batch,
            self.clients,
            self.partitions,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        );
        let t0 = Instant::now();
        let keyed = events.iter().map(|(t, e)| (Some(t.as_bytes().to_vec()), e.clone()));
        let delivered = ::ingest::produce(self.brokers, &direct_topic, keyed)?.delivered;
        let direct = t0.elapsed();
        let (mut server, addr) = self.serve(&http_topic)?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let warm = Arc::new(bodies.iter().take(self.clients * 2).cloned().collect::<Vec<_>>());
        let report = rt.block_on(async {
            post_all(addr, &tokens, warm, self.clients).await?;
            post_all(addr, &tokens, bodies.clone(), self.clients).await
        });
        let _ = server.kill();
        let _ = server.wait();
        let report = report?;
        anyhow::ensure!(report.refused_requests == 0, "{} requests were not answered 202", report.refused_requests);
        let posted = events.len() as u64;
        let (d, h) = (per_second(delivered, direct), per_second(posted, report.elapsed));
        println!("| what | events | seconds | events/s |");
        println!("|---|---:|---:|---:|");
        println!(
            "| produced straight to Kafka (`ingest::produce`, acks=all) | {delivered} | {:.2} | {d} |",
            direct.as_secs_f64()
        ); // float-ok: printing only
        println!(
            "| `POST /v1/events`, batches of {} | {posted} | {:.2} | {h} |",
            self.batch,
            report.elapsed.as_secs_f64()
        ); // float-ok: printing only
        println!("HTTP ingest: {}% of the direct produce", h * 100 / d.max(1));
        Ok(())
    }

    /// `gpuledger serve` producing to `topic`, once it accepts connections.
    fn serve(&self, topic: &str) -> anyhow::Result<(std::process::Child, SocketAddr)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::process::Command::new(self.server_bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--topic", topic])
            .env("GPULEDGER_DATABASE_URL", self.database_url)
            .env("GPULEDGER_KAFKA_BROKERS", self.brokers)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {} serve: {e}", self.server_bin.display()))?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok((child, addr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("gpuledger serve did not start")
    }
}
