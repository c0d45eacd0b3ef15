//! One run of the HTTP ingest benchmark: the direct produce and the HTTP posts of the same events
//! take turns for a number of rounds (which goes first alternates), each timed with the CPU time
//! every process spent on it; medians and the ratio at the end.

use super::cpu::{micros_per_event, CpuTicks, Processes, TICKS_PER_SECOND};
use super::{batches, events, per_second, post_all};
use hyper::body::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `events` events produced straight to one new topic, and posted in batches of `batch` by
/// `clients` clients to a `gpuledger serve` (the binary `server_bin`) that produces to another;
/// both topics have `partitions` partitions. `rounds` rounds of both; `processes` names the
/// broker and PostgreSQL whose CPU time is counted (the server's is counted always).
pub struct Run<'a> {
    pub database_url: &'a str,
    pub brokers: &'a str,
    pub server_bin: &'a std::path::Path,
    pub events: usize,
    pub batch: usize,
    pub clients: usize,
    pub partitions: i32,
    pub rounds: usize,
    pub processes: Processes,
    /// Further arguments of `gpuledger serve` (e.g. `--producer-linger-ms 1`).
    pub serve_args: &'a [String],
}

const SOURCE: &str = "//bench/http-ingest";
const TENANTS: usize = 50;

/// What one side of one round gave.
#[derive(Debug, Clone, Copy)]
struct Measured {
    per_second: u64,
    elapsed: Duration,
    cpu: CpuTicks,
}

/// The inputs of the HTTP side: the server's address, the clients' tokens, the request bodies.
struct Http {
    addr: SocketAddr,
    tokens: Vec<String>,
    bodies: Arc<Vec<Bytes>>,
    topic: String,
}

impl Run<'_> {
    pub fn run(&self, db: &mut postgres::Client) -> anyhow::Result<()> {
        anyhow::ensure!(self.rounds >= 1 && self.events >= 1, "at least one round of at least one event");
        let suffix = format!("{}_{}", std::process::id(), chrono::Utc::now().timestamp());
        let (direct_topic, http_topic) = (format!("bench_direct_{suffix}"), format!("bench_http_{suffix}"));
        for t in [&direct_topic, &http_topic] {
            ::ingest::ensure_topic(self.brokers, t, self.partitions)?;
        }
        let events = events(self.events, TENANTS, SOURCE);
        let bytes: usize = events.iter().map(|e| e.1.len()).sum();
        println!(
            "http ingest bench: {} events ({} bytes each on average), batches of {}, {} clients, {} partitions, {} rounds, {} cores, server {} {}",
            events.len(),
            bytes / events.len().max(1),
            self.batch,
            self.clients,
            self.partitions,
            self.rounds,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            self.server_bin.display(),
            self.serve_args.join(" ")
        );
        let (mut server, addr) = self.serve(&http_topic)?;
        let http =
            Http { addr, tokens: self.tokens(db)?, bodies: Arc::new(batches(&events, self.batch)), topic: http_topic };
        let processes = Processes { server: Some(server.id()), ..self.processes };
        let result = self.rounds(&events, &direct_topic, &http, &processes);
        let _ = server.kill();
        let _ = server.wait();
        let (direct, posted) = result?;
        self.summary(&direct, &posted);
        Ok(())
    }

    /// A producer token per client, for every tenant of the events.
    fn tokens(&self, db: &mut postgres::Client) -> anyhow::Result<Vec<String>> {
        let tenants: Vec<String> = (1..=TENANTS).map(|i| format!("tenant-{i:03}")).collect();
        (0..self.clients)
            .map(|_| {
                let valid = chrono::Duration::hours(1);
                store::tokens::create_producer_token(db, SOURCE, &tenants, "bench", valid, chrono::Utc::now())
                    .map(|t| t.1)
                    .map_err(Into::into)
            })
            .collect()
    }

    /// Every round, the two sides one after the other (which first alternates); prints a row each.
    fn rounds(
        &self,
        events: &[(String, Vec<u8>)],
        direct_topic: &str,
        http: &Http,
        processes: &Processes,
    ) -> anyhow::Result<(Vec<Measured>, Vec<Measured>)> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let warm = Arc::new(http.bodies.iter().take(self.clients * 2).cloned().collect::<Vec<_>>());
        rt.block_on(post_all(http.addr, &http.tokens, warm, self.clients))?;
        println!("| round | what | events | seconds | events/s | CPU s: harness · server · broker · PostgreSQL | CPU µs per event |");
        println!("|---:|---|---:|---:|---:|---|---:|");
        let (mut direct, mut posted) = (Vec::new(), Vec::new());
        for round in 1..=self.rounds {
            for side in if round % 2 == 1 { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    let m = self.direct(events, direct_topic, processes)?;
                    print_row(round, "produced straight to Kafka (`ingest::produce`, acks=all)", events.len(), &m);
                    direct.push(m);
                } else {
                    let m = self.post(&rt, http, processes)?;
                    let what = format!("`POST /v1/events` to {}, batches of {}", http.topic, self.batch);
                    print_row(round, &what, events.len(), &m);
                    posted.push(m);
                }
            }
        }
        Ok((direct, posted))
    }

    /// The events produced straight to Kafka, timed until every one is acknowledged.
    fn direct(&self, events: &[(String, Vec<u8>)], topic: &str, p: &Processes) -> anyhow::Result<Measured> {
        let keyed: Vec<_> = events.iter().map(|(t, e)| (Some(t.as_bytes().to_vec()), e.clone())).collect();
        let (cpu0, t0) = (CpuTicks::now(p), Instant::now());
        let delivered = ::ingest::produce(self.brokers, topic, keyed.into_iter())?.delivered;
        let (elapsed, cpu) = (t0.elapsed(), CpuTicks::now(p).since(&cpu0));
        anyhow::ensure!(delivered == events.len() as u64, "{delivered} of {} delivered", events.len());
        Ok(Measured { per_second: per_second(delivered, elapsed), elapsed, cpu })
    }

    /// The events posted by the clients, timed from the first request to the last 202.
    fn post(&self, rt: &tokio::runtime::Runtime, http: &Http, p: &Processes) -> anyhow::Result<Measured> {
        let cpu0 = CpuTicks::now(p);
        let report = rt.block_on(post_all(http.addr, &http.tokens, http.bodies.clone(), self.clients))?;
        let cpu = CpuTicks::now(p).since(&cpu0);
        anyhow::ensure!(report.refused_requests == 0, "{} requests were not answered 202", report.refused_requests);
        let posted = self.events as u64;
        Ok(Measured { per_second: per_second(posted, report.elapsed), elapsed: report.elapsed, cpu })
    }

    fn summary(&self, direct: &[Measured], posted: &[Measured]) {
        let (d, h) = (median(direct), median(posted));
        let n = self.events as u64;
        println!(
            "median events/s: direct {} · HTTP {}; HTTP ingest: {}% of the direct produce",
            d.per_second,
            h.per_second,
            h.per_second * 100 / d.per_second.max(1)
        );
        for (what, m) in [("direct", d), ("HTTP", h)] {
            println!(
                "CPU µs per event ({what}, median round): harness {} · server {} · broker {} · PostgreSQL {} · all {}",
                micros_per_event(m.cpu.harness, n),
                micros_per_event(m.cpu.server, n),
                micros_per_event(m.cpu.broker, n),
                micros_per_event(m.cpu.postgres, n),
                micros_per_event(m.cpu.total(), n)
            );
        }
    }

    /// `gpuledger serve` producing to `topic`, once it accepts connections.
    fn serve(&self, topic: &str) -> anyhow::Result<(std::process::Child, SocketAddr)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::process::Command::new(self.server_bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--topic", topic])
            .args(self.serve_args)
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

/// The round whose events/s is the median (the lower middle one of an even count).
fn median(runs: &[Measured]) -> Measured {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|m| m.per_second);
    sorted[(sorted.len().max(1) - 1) / 2]
}

fn print_row(round: usize, what: &str, events: usize, m: &Measured) {
    let s = |t: u64| format!("{}.{:02}", t / TICKS_PER_SECOND, t % TICKS_PER_SECOND * 100 / TICKS_PER_SECOND);
    let c = &m.cpu;
    println!(
        "| {round} | {what} | {events} | {:.2} | {} | {} · {} · {} · {} | {} |",
        m.elapsed.as_secs_f64(), // float-ok: printing only
        m.per_second,
        s(c.harness),
        s(c.server),
        s(c.broker),
        s(c.postgres),
        micros_per_event(c.total(), events as u64)
    );
}
