//! `gpuledger bench ...`: the baselines of docs/benchmarks.md (see scripts/bench.sh): PostgreSQL's
//! COPY ceiling, a naive writer, validation alone, the audit replay's floors, the month close and
//! the API's latency.

use crate::fleet::FleetArgs;
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use std::time::Duration;

#[derive(Subcommand)]
pub enum BenchKind {
    /// PostgreSQL's ceiling: binary COPY of the same ledger rows into ledger_events, 10,000 per
    /// commit, by one session or several at once (each with its own stream of rows).
    Copy {
        #[command(flatten)]
        fleet: FleetArgs,
        #[arg(long, default_value_t = 1)]
        sessions: usize,
    },
    /// The ingester's validation without I/O: each generated message read and validated
    /// (`parse_usage_message`), then each valid event's canonical bytes written
    /// (`payload_bytes`); nanoseconds an event for each. Needs no database.
    Parse {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Naive baseline: one INSERT and one COMMIT per event.
    Naive {
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Audit replay: a ledger of N real usage rows written directly (chained, one Kafka-like
    /// stream) with its live hourly projection; prints the floors measured on it. Needs an empty,
    /// migrated database; then time `gpuledger audit replay` (scripts/bench-replay.sh).
    Replay {
        #[arg(long, default_value_t = 10_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1000)]
        gpus: u32,
        #[arg(long, default_value_t = 50)]
        tenants: u32,
        #[arg(long, default_value = "2026-10-01T00:00:00Z")]
        start: DateTime<Utc>,
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// Only measure the floors on the ledger already there.
        #[arg(long)]
        floors_only: bool,
    },
    /// Month close: hourly aggregates of a fleet's month written directly, then the close timed
    /// beside the bare read of the same rows. Needs an empty, migrated database.
    Close {
        #[arg(long, default_value_t = 50)]
        tenants: u32,
        #[arg(long, default_value_t = 10_000)]
        gpus: u32,
        #[arg(long, default_value_t = 3)]
        projects: u32,
        #[arg(long, default_value = "2026-09")]
        period: String,
        #[arg(long, default_value_t = 1)]
        events_per_gpu_minute: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// API latency: concurrent tenant clients asking for a month of hourly usage from a
    /// `gpuledger serve` started here, beside the same SQL run directly in PostgreSQL (the floor).
    /// Needs a database with usage (e.g. after `bench close`).
    Api {
        #[arg(long, default_value = "tenant-001")]
        tenant: String,
        #[arg(long, default_value = "2026-09")]
        period: String,
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// The server's connection pool, and the floor's.
        #[arg(long, default_value_t = 16)]
        pool_size: usize,
    },
}

impl BenchKind {
    /// Whether it writes straight into the ledger and its projection (past the claims, the commit
    /// clock and Kafka), and so needs an empty database of its own.
    fn writes_the_ledger(&self) -> bool {
        match self {
            BenchKind::Copy { .. } | BenchKind::Naive { .. } | BenchKind::Close { .. } => true,
            BenchKind::Replay { floors_only, .. } => !floors_only,
            BenchKind::Parse { .. } | BenchKind::Api { .. } => false,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_api(
    database_url: &str,
    brokers: &str,
    db: &mut postgres::Client,
    tenant: &str,
    period: &str,
    clients: usize,
    seconds: u64,
    pool_size: usize,
) -> Result<()> {
    let period = domain::billing::Period::parse(period).map_err(anyhow::Error::msg)?;
    let (from, to) = (period.start(), period.end());
    let rows: i64 = db
        .query_one(
            "SELECT count(*) FROM usage_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3",
            &[&tenant, &from, &to],
        )?
        .get(0);
    if rows == 0 {
        bail!("no usage of {tenant} in {period}: seed some first (gpuledger bench close)");
    }
    // Tokens of the tenant, at least one per client: the rate limit (100/s) is per token, as it
    // would be for real users; with fewer than 200 clients each client takes turns over several,
    // so that the server's latency is measured, not the limiter.
    let tokens: Vec<String> = (0..clients.max(200))
        .map(|_| {
            store::tokens::create_token(db, "tenant", Some(tenant), "bench api", chrono::Duration::hours(1), Utc::now())
                .map(|t| t.1)
        })
        .collect::<Result<_, _>>()?;
    // Two servers side by side: with the usage response cache (as deployed) and without it.
    let start_server = |extra: &[&str]| -> Result<(std::process::Child, std::net::SocketAddr)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let server = std::process::Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--pool-size", &pool_size.to_string()])
            .args(extra)
            .env("GPULEDGER_DATABASE_URL", database_url)
            .env("GPULEDGER_KAFKA_BROKERS", brokers)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        Ok((server, addr))
    };
    let (mut cached, cached_addr) = start_server(&[])?;
    let (mut uncached, uncached_addr) = start_server(&["--no-usage-cache"])?;
    let result = (|| -> Result<()> {
        for addr in [cached_addr, uncached_addr] {
            for _ in 0..100 {
                if std::net::TcpStream::connect(addr).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let path = format!(
            "/v1/usage?from={}&to={}&granularity=hour",
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ")
        );
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let d = std::time::Duration::from_secs(seconds);
        let warm = std::time::Duration::from_secs(3);
        println!("api bench: {tenant}, {period}: {rows} hourly rows -> 720 hourly buckets; {clients} clients; pool {pool_size}; {seconds} s each");
        let line = |what: &str, r: &api::bench::LoadReport| {
            println!(
                "{what:<40} {:>6} req/s  p50 {:>7.1?}  p99 {:>7.1?}  max {:>7.1?}  ({} requests, {} errors)",
                r.per_second(),
                r.p50,
                r.p99,
                r.max,
                r.requests,
                r.errors
            )
        };
        rt.block_on(async {
            api::bench::floor_load(database_url, pool_size, tenant, from, to, clients, warm).await?;
            let floor = api::bench::floor_load(database_url, pool_size, tenant, from, to, clients, d).await?;
            line("floor (SQL directly, pooled)", &floor);
            api::bench::http_load(uncached_addr, &path, &tokens, clients, warm).await?;
            let http = api::bench::http_load(uncached_addr, &path, &tokens, clients, d).await?;
            line("GET /v1/usage, no response cache", &http);
            api::bench::http_load(cached_addr, &path, &tokens, clients, warm).await?;
            let http = api::bench::http_load(cached_addr, &path, &tokens, clients, d).await?;
            line("GET /v1/usage (as served)", &http);
            anyhow::Ok(())
        })
    })();
    for server in [&mut cached, &mut uncached] {
        let _ = server.kill();
        let _ = server.wait();
    }
    result
}

fn bench_rows(f: &FleetArgs, streams: usize) -> Result<Vec<Vec<store::bench::LedgerRow>>> {
    let now = Utc::now();
    let (sim, limit) = f.simulator()?;
    let events: Vec<_> = sim
        .take(limit)
        .filter_map(|m| domain::usage::parse_usage_message(m.key.as_deref(), &m.payload, now).ok())
        .collect();
    Ok(store::bench::rows_for(events, streams))
}

/// Times validation and canonical encoding of a generated fleet's messages, held in memory.
fn bench_parse(fleet: &FleetArgs) -> Result<()> {
    let (sim, limit) = fleet.simulator()?;
    let messages: Vec<_> = sim.take(limit).collect();
    let n = messages.len().max(1) as u128;
    let now = Utc::now();
    let started = std::time::Instant::now();
    let events: Vec<_> = messages
        .iter()
        .filter_map(|m| domain::usage::parse_usage_message(m.key.as_deref(), &m.payload, now).ok())
        .collect();
    let parse = started.elapsed();
    let started = std::time::Instant::now();
    let bytes: usize = events.iter().map(|e| e.payload_bytes().len()).sum();
    let encode = started.elapsed();
    println!(
        "parse: {} messages ({} valid) read and validated in {} ms = {} ns a message; canonical bytes of the valid ones ({bytes} bytes) in {} ms = {} ns an event",
        messages.len(),
        events.len(),
        parse.as_millis(),
        parse.as_nanos() / n,
        encode.as_millis(),
        encode.as_nanos() / (events.len().max(1) as u128)
    );
    Ok(())
}

fn per_second(n: usize, d: Duration) -> u128 {
    (n as u128 * 1000) / d.as_millis().max(1)
}

pub fn bench(which: BenchKind, database_url: &str, brokers: &str) -> Result<()> {
    if let BenchKind::Parse { fleet } = which {
        return bench_parse(&fleet);
    }
    let mut db = store::connect(database_url)?;
    if which.writes_the_ledger() {
        store::bench::require_empty(&mut db)?;
    }
    match which {
        BenchKind::Copy { fleet, sessions } => {
            if !(1..=8).contains(&sessions) {
                bail!("--sessions must be 1 to 8");
            }
            let streams = bench_rows(&fleet, sessions)?;
            let rows: usize = streams.iter().map(Vec::len).sum();
            let took = store::bench::copy_rows_parallel(database_url, &streams, 10_000)?;
            println!(
                "copy: {rows} rows in {} ms = {} rows/s (binary COPY, {sessions} session(s) at once, 10,000 rows per commit)",
                took.as_millis(),
                per_second(rows, took)
            );
        }
        BenchKind::Close { tenants, gpus, projects, period, events_per_gpu_minute, seed } => {
            if tenants == 0 || gpus < tenants || projects == 0 || events_per_gpu_minute == 0 {
                bail!("need --gpus >= --tenants >= 1, --projects >= 1, --events-per-gpu-minute >= 1");
            }
            let period = domain::billing::Period::parse(&period).map_err(anyhow::Error::msg)?;
            let spec =
                store::bench_close::CloseBenchSpec { tenants, gpus, projects, period, seed, events_per_gpu_minute };
            let r = store::bench_close::run_close_bench(&mut db, &spec)?;
            println!(
                "close: {tenants} tenants, {gpus} GPUs, {} hourly rows standing for {} raw events; \
                 read floor {} ms, close {} ms ({} documents, gross EUR {}); seeding took {} ms",
                r.hourly_rows,
                r.raw_events,
                r.floor.as_millis(),
                r.close.as_millis(),
                r.documents,
                r.gross_total,
                r.seed.as_millis()
            );
        }
        BenchKind::Api { tenant, period, clients, seconds, pool_size } => {
            bench_api(database_url, brokers, &mut db, &tenant, &period, clients, seconds, pool_size)?;
        }
        BenchKind::Replay { events, gpus, tenants, start, seed, floors_only } => {
            if gpus == 0 || tenants == 0 || events == 0 {
                bail!("need --events, --gpus and --tenants >= 1");
            }
            if !floors_only {
                let spec = store::bench_replay::ReplayBenchSpec { events, gpus, tenants, start, seed };
                let seeded = store::bench_replay::seed_ledger(&mut db, &spec)?;
                println!(
                    "seed: {} usage events and {} hourly rows written in {} ms",
                    seeded.events,
                    seeded.hourly_rows,
                    seeded.took.as_millis()
                );
            }
            let f = store::bench_replay::floors(&mut db)?;
            let rows = usize::try_from(f.rows).unwrap_or(0);
            println!(
                "floor: count(*) of {rows} usage rows {} ms = {} rows/s; the fields the fold reads {} ms = {} rows/s",
                f.count.as_millis(),
                per_second(rows, f.count),
                f.read_fields.as_millis(),
                per_second(rows, f.read_fields)
            );
        }
        BenchKind::Parse { .. } => unreachable!("handled above, without a database"),
        BenchKind::Naive { fleet } => {
            let rows = bench_rows(&fleet, 1)?.remove(0);
            let took = store::bench::insert_one_by_one(&mut db, &rows)?;
            println!(
                "naive: {} rows in {} ms = {} rows/s (one INSERT and COMMIT per event)",
                rows.len(),
                took.as_millis(),
                per_second(rows.len(), took)
            );
        }
    }
    Ok(())
}
