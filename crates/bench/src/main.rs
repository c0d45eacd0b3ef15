//! The `gpuledger-bench` command: the baselines of docs/benchmarks.md (scripts/bench*.sh):
//! PostgreSQL's COPY ceiling, a naive writer, validation alone, the audit replay's floors, the
//! month close and the API's latency. Kept out of the product: `gpuledger` has no benchmark code.

use anyhow::{bail, Result};
use bench::{close, ingest, replay};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use gpuledger::fleet::FleetArgs;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "gpuledger-bench", version, about = "Baselines for docs/benchmarks.md (see scripts/bench.sh)")]
struct Cli {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "GPULEDGER_DATABASE_URL",
        default_value = "postgres://gpuledger@127.0.0.1:55432/gpuledger",
        global = true
    )]
    database_url: String,
    /// Kafka bootstrap servers (passed on to the servers `api` starts).
    #[arg(long, env = "GPULEDGER_KAFKA_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    brokers: String,
    #[command(subcommand)]
    which: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
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
    /// The collector's core: a 10,000-GPU dcgm-exporter scrape parsed bare, beside the same
    /// bytes turned into a minute's events; CPU time a scrape. Needs no database.
    Collect {
        #[arg(long, default_value_t = 10_000)]
        gpus: u32,
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
    /// Needs a database with usage (e.g. after `gpuledger-bench close`).
    Api(ApiArgs),
    /// HTTP ingest: the same usage events produced straight to Kafka, then posted in batches to
    /// `POST /v1/events` of a `gpuledger serve` started here; events per second of each.
    HttpIngest {
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Rounds of both sides, taking turns (which goes first alternates); medians at the end.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
        rounds: u64,
        /// The Kafka broker's process id, to count its CPU time (scripts/bench-http-ingest.sh
        /// passes it).
        #[arg(long)]
        broker_pid: Option<u32>,
        /// The PostgreSQL postmaster's process id, to count the CPU time of it and its backends.
        #[arg(long)]
        postgres_pid: Option<u32>,
        /// The `gpuledger` binary whose `serve` is measured (default: the one beside this binary).
        #[arg(long, env = "GPULEDGER_BIN")]
        gpuledger: Option<PathBuf>,
        /// A further argument of that `gpuledger serve` (repeatable, e.g. `--serve-arg=--producer-linger-ms=1`).
        #[arg(long = "serve-arg", allow_hyphen_values = true)]
        serve_args: Vec<String>,
    },
}

// The arguments of `gpuledger-bench api` (its help text is the variant's above).
#[derive(clap::Args)]
struct ApiArgs {
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
    /// The `gpuledger` binary whose `serve` is measured (default: the one beside this binary).
    #[arg(long, env = "GPULEDGER_BIN")]
    gpuledger: Option<PathBuf>,
}

impl BenchKind {
    /// Whether it writes straight into the ledger and its projection (past the claims, the commit
    /// clock and Kafka), and so needs an empty database of its own.
    fn writes_the_ledger(&self) -> bool {
        match self {
            BenchKind::Copy { .. } | BenchKind::Naive { .. } | BenchKind::Close { .. } => true,
            BenchKind::Replay { floors_only, .. } => !floors_only,
            BenchKind::Parse { .. }
            | BenchKind::Collect { .. }
            | BenchKind::Api { .. }
            | BenchKind::HttpIngest { .. } => false,
        }
    }
}

fn main() {
    gpuledger::main_with(run);
}

fn run(cli: Cli) -> Result<()> {
    let Cli { database_url, brokers, which } = cli;
    if let BenchKind::Parse { fleet } = which {
        return bench_parse(&fleet);
    }
    if let BenchKind::Collect { gpus } = which {
        return bench::collect::bench_collect(gpus);
    }
    let mut db = store::connect(&database_url)?;
    if which.writes_the_ledger() {
        bench::require_empty(&mut db)?;
    }
    match which {
        BenchKind::Copy { fleet, sessions } => bench_copy(&database_url, &fleet, sessions),
        BenchKind::Naive { fleet } => bench_naive(&mut db, &fleet),
        BenchKind::Close { tenants, gpus, projects, period, events_per_gpu_minute, seed } => {
            if tenants == 0 || gpus < tenants || projects == 0 || events_per_gpu_minute == 0 {
                bail!("need --gpus >= --tenants >= 1, --projects >= 1, --events-per-gpu-minute >= 1");
            }
            let period = domain::billing::Period::parse(&period).map_err(anyhow::Error::msg)?;
            let spec = close::CloseBenchSpec { tenants, gpus, projects, period, seed, events_per_gpu_minute };
            bench_close(&mut db, &spec)
        }
        BenchKind::Replay { events, gpus, tenants, start, seed, floors_only } => {
            if gpus == 0 || tenants == 0 || events == 0 {
                bail!("need --events, --gpus and --tenants >= 1");
            }
            let spec = (!floors_only).then_some(replay::ReplayBenchSpec { events, gpus, tenants, start, seed });
            bench_replay(&mut db, spec)
        }
        BenchKind::Api(args) => bench_api(&args, &database_url, &brokers, &mut db),
        BenchKind::HttpIngest {
            events,
            batch,
            clients,
            partitions,
            rounds,
            broker_pid,
            postgres_pid,
            gpuledger,
            serve_args,
        } => {
            let server_bin = match gpuledger {
                Some(path) => path,
                None => std::env::current_exe()?.with_file_name("gpuledger"),
            };
            let run = bench::http_ingest::Run {
                database_url: &database_url,
                brokers: &brokers,
                server_bin: &server_bin,
                events,
                batch,
                clients,
                partitions,
                rounds: rounds as usize,
                processes: bench::http_ingest::Processes { server: None, broker: broker_pid, postgres: postgres_pid },
                serve_args: &serve_args,
            };
            run.run(&mut db)
        }
        BenchKind::Parse { .. } | BenchKind::Collect { .. } => unreachable!("handled above, without a database"),
    }
}

fn bench_copy(database_url: &str, fleet: &FleetArgs, sessions: usize) -> Result<()> {
    if !(1..=8).contains(&sessions) {
        bail!("--sessions must be 1 to 8");
    }
    let streams = bench_rows(fleet, sessions)?;
    let rows: usize = streams.iter().map(Vec::len).sum();
    let took = ingest::copy_rows_parallel(database_url, &streams, 10_000)?;
    println!(
        "copy: {rows} rows in {} ms = {} rows/s (binary COPY, {sessions} session(s) at once, 10,000 rows per commit)",
        took.as_millis(),
        per_second(rows, took)
    );
    Ok(())
}

fn bench_naive(db: &mut postgres::Client, fleet: &FleetArgs) -> Result<()> {
    let rows = bench_rows(fleet, 1)?.remove(0);
    let took = ingest::insert_one_by_one(db, &rows)?;
    println!(
        "naive: {} rows in {} ms = {} rows/s (one INSERT and COMMIT per event)",
        rows.len(),
        took.as_millis(),
        per_second(rows.len(), took)
    );
    Ok(())
}

fn bench_close(db: &mut postgres::Client, spec: &close::CloseBenchSpec) -> Result<()> {
    let r = close::run_close_bench(db, spec)?;
    println!(
        "close: {} tenants, {} GPUs, {} hourly rows standing for {} raw events; \
         read floor {} ms, close {} ms ({} documents, gross EUR {}); seeding took {} ms",
        spec.tenants,
        spec.gpus,
        r.hourly_rows,
        r.raw_events,
        r.floor.as_millis(),
        r.close.as_millis(),
        r.documents,
        r.gross_total,
        r.seed.as_millis()
    );
    Ok(())
}

/// Seeds the ledger (unless `spec` is `None`: floors only), then measures the floors on it.
fn bench_replay(db: &mut postgres::Client, spec: Option<replay::ReplayBenchSpec>) -> Result<()> {
    if let Some(spec) = spec {
        let seeded = replay::seed_ledger(db, &spec)?;
        println!(
            "seed: {} usage events and {} hourly rows written in {} ms",
            seeded.events,
            seeded.hourly_rows,
            seeded.took.as_millis()
        );
    }
    let f = replay::floors(db)?;
    let rows = usize::try_from(f.rows).unwrap_or(0);
    println!(
        "floor: count(*) of {rows} usage rows {} ms = {} rows/s; the fields the fold reads {} ms = {} rows/s",
        f.count.as_millis(),
        per_second(rows, f.count),
        f.read_fields.as_millis(),
        per_second(rows, f.read_fields)
    );
    Ok(())
}

fn bench_api(args: &ApiArgs, database_url: &str, brokers: &str, db: &mut postgres::Client) -> Result<()> {
    let ApiArgs { tenant, period, clients, seconds, pool_size, gpuledger } = args;
    let (tenant, clients, seconds, pool_size) = (tenant.as_str(), *clients, *seconds, *pool_size);
    let period = domain::billing::Period::parse(period).map_err(anyhow::Error::msg)?;
    let (from, to) = (period.start(), period.end());
    let rows: i64 = db
        .query_one(
            "SELECT count(*) FROM usage_hourly WHERE tenant_id = $1 AND hour >= $2 AND hour < $3",
            &[&tenant, &from, &to],
        )?
        .get(0);
    if rows == 0 {
        bail!("no usage of {tenant} in {period}: seed some first (gpuledger-bench close)");
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
    let server_bin = match gpuledger {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("gpuledger"),
    };
    // Two servers side by side: with the usage response cache (as deployed) and without it.
    let start_server = |extra: &[&str]| -> Result<(std::process::Child, std::net::SocketAddr)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let server = std::process::Command::new(&server_bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--pool-size", &pool_size.to_string()])
            .args(extra)
            .env("GPULEDGER_DATABASE_URL", database_url)
            .env("GPULEDGER_KAFKA_BROKERS", brokers)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {} serve: {e}", server_bin.display()))?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        Ok((server, addr))
    };
    let (mut cached, cached_addr) = start_server(&[])?;
    let (mut uncached, uncached_addr) = start_server(&["--no-usage-cache"])?;
    println!("api bench: {tenant}, {period}: {rows} hourly rows -> 720 hourly buckets; {clients} clients; pool {pool_size}; {seconds} s each");
    let load = bench::api::Load { database_url, pool_size, tenant, from, to, clients, tokens: &tokens };
    let result = measure_api(&load, cached_addr, uncached_addr, Duration::from_secs(seconds));
    for server in [&mut cached, &mut uncached] {
        let _ = server.kill();
        let _ = server.wait();
    }
    result
}

/// The floor, the server without its usage cache and the server as deployed, each warmed up for
/// three seconds first, then measured for `duration`.
fn measure_api(
    load: &bench::api::Load<'_>,
    cached: std::net::SocketAddr,
    uncached: std::net::SocketAddr,
    duration: Duration,
) -> Result<()> {
    for addr in [cached, uncached] {
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let path = format!(
        "/v1/usage?from={}&to={}&granularity=hour",
        load.from.format("%Y-%m-%dT%H:%M:%SZ"),
        load.to.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let warm = Duration::from_secs(3);
    let line = |what: &str, r: &bench::api::LoadReport| {
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
        load.floor(warm).await?;
        line("floor (SQL directly, pooled)", &load.floor(duration).await?);
        load.http(uncached, &path, warm).await?;
        line("GET /v1/usage, no response cache", &load.http(uncached, &path, duration).await?);
        load.http(cached, &path, warm).await?;
        line("GET /v1/usage (as served)", &load.http(cached, &path, duration).await?);
        anyhow::Ok(())
    })
}

fn bench_rows(f: &FleetArgs, streams: usize) -> Result<Vec<Vec<ingest::LedgerRow>>> {
    let now = Utc::now();
    let (sim, limit) = f.simulator()?;
    let events: Vec<_> = sim
        .take(limit)
        .filter_map(|m| domain::usage::parse_usage_message(m.key.as_deref(), &m.payload, now).ok())
        .collect();
    Ok(ingest::rows_for(events, streams))
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
