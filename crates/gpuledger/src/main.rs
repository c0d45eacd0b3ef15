//! The `gpuledger` command: the only place that reads the environment, parses arguments and
//! prints. Everything it does is a call into the domain, store and ingest crates.

mod audit_cli;
mod billing_cli;
mod budget_cli;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use domain::simulate::{FleetSpec, Simulator};
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "gpuledger", version, about = "Metering and billing ledger for GPU time")]
struct Cli {
    /// PostgreSQL connection URL.
    #[arg(
        long,
        env = "GPULEDGER_DATABASE_URL",
        default_value = "postgres://gpuledger@127.0.0.1:55432/gpuledger",
        global = true
    )]
    database_url: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = "GPULEDGER_KAFKA_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    brokers: String,
    /// Usage topic.
    #[arg(long, env = "GPULEDGER_TOPIC", default_value = domain::usage::TOPIC, global = true)]
    topic: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the SQL migrations in migrations/ (idempotent).
    Migrate,
    /// Consume usage events from Kafka into the ledger, exactly once.
    Ingest {
        #[arg(long, default_value = "gpuledger-ingest")]
        group: String,
        /// Static group membership id: a restarted ingester with the same id takes over at once.
        #[arg(long)]
        instance_id: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        batch_max: usize,
        #[arg(long, default_value_t = 200)]
        linger_ms: u64,
        /// Writer threads, each with its own PostgreSQL connection (1 to 8).
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// Exit after this many seconds without a message (default: run until SIGTERM).
        #[arg(long)]
        idle_exit_secs: Option<u64>,
        /// Also send every quarantined message to this topic (the quarantine table stays the record).
        #[arg(long)]
        dead_letter_topic: Option<String>,
    },
    /// Generate a seeded fleet's usage and produce it to Kafka; write the exact expected totals.
    Produce {
        #[command(flatten)]
        fleet: FleetArgs,
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Where to write the generator's exact totals (JSON).
        #[arg(long)]
        totals: Option<PathBuf>,
        /// Write the messages as JSON lines to this file instead of producing them.
        #[arg(long)]
        to_file: Option<PathBuf>,
    },
    /// Per-tenant GPU-hours by SKU from the hourly projection.
    Report {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// What happened to every consumed offset, per partition.
    Status,
    /// Compare the ledger's GPU-seconds per tenant and SKU with a generator's totals file, exactly.
    Check {
        #[arg(long)]
        totals: PathBuf,
    },
    /// Baselines for docs/benchmarks.md (see scripts/bench.sh).
    Bench {
        #[command(subcommand)]
        which: BenchKind,
    },
    /// Reference data for billing: seller, price lists, billing profiles, contracts, usage adjustments.
    Reference {
        #[command(subcommand)]
        cmd: billing_cli::ReferenceCmd,
    },
    /// Close a month, list and export invoices and credit notes, verify them by replay.
    Invoices {
        #[command(subcommand)]
        cmd: billing_cli::InvoicesCmd,
    },
    /// The investment budget: load master data and bookings, report, export the SAP journal.
    Budget {
        #[command(subcommand)]
        cmd: budget_cli::BudgetCmd,
    },
    /// Serve the HTTP API (tenants, finance, auditors; see schemas/openapi.json).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 16)]
        pool_size: usize,
        /// Answer every `GET /v1/usage` from the database (no response cache).
        #[arg(long)]
        no_usage_cache: bool,
    },
    /// API tokens: create (the secret is shown once) and revoke.
    Tokens {
        #[command(subcommand)]
        cmd: TokensCmd,
    },
    /// Print the OpenAPI 3.1 document of the API (the committed copy is schemas/openapi.json).
    Openapi,
    /// Walk every hash chain and rebuild the hourly projection from the log; compare with the live one.
    Verify,
    /// Auditors: verify the whole log and its sealed checkpoints, seal a checkpoint, export the log.
    Audit {
        #[command(subcommand)]
        cmd: audit_cli::AuditCmd,
    },
}

/// The simulated fleet, for `produce` and `bench`.
#[derive(clap::Args, Clone)]
struct FleetArgs {
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 16)]
    gpus: u32,
    #[arg(long, default_value_t = 5)]
    tenants: u32,
    /// First minute, RFC 3339 UTC.
    #[arg(long, default_value = "2026-10-01T00:00:00Z")]
    start: DateTime<Utc>,
    /// Length of the period in minutes (one month of October: 44640).
    #[arg(long, default_value_t = 44_640)]
    minutes: u32,
    #[arg(long, default_value_t = 0)]
    duplicates_ppm: u32,
    #[arg(long, default_value_t = 0)]
    conflicts_ppm: u32,
    #[arg(long, default_value_t = 0)]
    overlaps_ppm: u32,
    #[arg(long, default_value_t = 0)]
    poison_ppm: u32,
    /// Stop after this many messages.
    #[arg(long)]
    limit: Option<u64>,
    /// The producers' event ids: UUIDv7 (time-ordered, recommended) or UUIDv4 (random).
    #[arg(long, value_enum, default_value_t = IdKind::V7)]
    event_ids: IdKind,
}

#[derive(Clone, Copy, ValueEnum)]
enum IdKind {
    V7,
    V4,
}

impl FleetArgs {
    /// The generator and how many messages to take from it.
    fn simulator(&self) -> Result<(Simulator, usize)> {
        if self.gpus == 0 || self.tenants == 0 || self.tenants > 1000 || self.gpus > 100_000 {
            bail!("--gpus must be 1..=100000 and --tenants 1..=1000");
        }
        let spec = FleetSpec {
            seed: self.seed,
            gpus: self.gpus,
            tenants: self.tenants,
            start: self.start,
            minutes: self.minutes,
            duplicates_ppm: self.duplicates_ppm,
            conflicts_ppm: self.conflicts_ppm,
            overlaps_ppm: self.overlaps_ppm,
            poison_ppm: self.poison_ppm,
            event_ids: match self.event_ids {
                IdKind::V7 => domain::simulate::EventIds::V7,
                IdKind::V4 => domain::simulate::EventIds::V4,
            },
        };
        let limit = self.limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Ok((Simulator::new(spec), limit))
    }
}

#[derive(Subcommand)]
enum TokensCmd {
    /// A new token; prints its id and the secret, which is stored only as a hash.
    Create {
        /// tenant, finance, auditor or admin.
        #[arg(long)]
        role: String,
        /// The tenant of a tenant token.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        /// Days until it expires.
        #[arg(long, default_value_t = 90)]
        days: i64,
    },
    /// Revoke a token by its id.
    Revoke {
        id: uuid::Uuid,
        #[arg(long, default_value = "revoked")]
        reason: String,
    },
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

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Migrate => {
            let mut db = store::connect(&cli.database_url).context("connecting to PostgreSQL")?;
            let applied = store::migrate(&mut db).context("migrating")?;
            if applied.is_empty() {
                println!("migrations: up to date");
            } else {
                println!("migrations applied: {}", applied.join(", "));
            }
        }
        Command::Ingest { group, instance_id, batch_max, linger_ms, writers, idle_exit_secs, dead_letter_topic } => {
            let stop = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
            signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
            if batch_max == 0 || batch_max > 100_000 {
                bail!("--batch-max must be between 1 and 100000");
            }
            if !(1..=ingest::WRITERS_MAX).contains(&writers) {
                bail!("--writers must be between 1 and {}", ingest::WRITERS_MAX);
            }
            let cfg = ingest::IngestConfig {
                brokers: cli.brokers,
                group,
                topic: cli.topic,
                database_url: cli.database_url,
                owner: format!("{}:{}", hostname(), uuid::Uuid::new_v4()),
                instance_id,
                batch_max,
                linger: Duration::from_millis(linger_ms),
                writers,
                idle_exit: idle_exit_secs.map(Duration::from_secs),
                dead_letter_topic,
                stop,
            };
            let stats = ingest::consume(&cfg).context("ingesting")?;
            let events = stats.ledgered + stats.duplicates + stats.quarantined;
            println!(
                "ingest: {} ledgered, {} duplicates, {} quarantined in {} batches; {} messages in {} ms from first message to last commit = {} messages/s; peak RSS {} MiB",
                stats.ledgered,
                stats.duplicates,
                stats.quarantined,
                stats.batches,
                events,
                stats.active_ms,
                (events as u128 * 1000) / (stats.active_ms.max(1) as u128),
                peak_rss_kib() / 1024
            );
        }
        Command::Produce { fleet, partitions, totals, to_file } => {
            let (mut sim, limit) = fleet.simulator()?;
            let t = Instant::now();
            let sent = if let Some(path) = to_file {
                let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
                let mut n = 0u64;
                for m in sim.by_ref().take(limit) {
                    out.write_all(&m.payload)?;
                    out.write_all(b"\n")?;
                    n += 1;
                }
                n
            } else {
                ingest::ensure_topic(&cli.brokers, &cli.topic, partitions).context("creating the topic")?;
                let messages = sim.by_ref().take(limit).map(|m| (m.key, m.payload));
                ingest::produce(&cli.brokers, &cli.topic, messages).context("producing")?.delivered
            };
            let secs = t.elapsed().as_secs_f64(); // float-ok: a duration for the log line
            eprintln!("produce: {sent} messages in {secs:.1}s");
            if let Some(path) = totals {
                std::fs::write(&path, serde_json::to_vec_pretty(&sim.totals.to_json())?)?;
            }
            println!(
                "produce: {} messages ({} good, {} duplicates, {} to quarantine)",
                sim.totals.messages,
                sim.totals.good,
                sim.totals.duplicates,
                sim.totals.quarantined()
            );
        }
        Command::Report { format } => {
            let mut db = store::connect(&cli.database_url)?;
            let totals = store::read::totals_by_tenant_sku(&mut db)?;
            print_report(&totals, format)?;
        }
        Command::Status => {
            let mut db = store::connect(&cli.database_url)?;
            let stats = store::read::stream_stats(&mut db, &cli.topic)?;
            println!(
                "{:>9} {:>12} {:>12} {:>10} {:>11} {:>6}",
                "partition", "next_offset", "ledgered", "duplicates", "quarantined", "epoch"
            );
            for s in stats {
                println!(
                    "{:>9} {:>12} {:>12} {:>10} {:>11} {:>6}",
                    s.partition,
                    s.next_offset.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                    s.ledgered,
                    s.duplicates,
                    s.quarantined,
                    s.epoch
                );
            }
        }
        Command::Check { totals } => {
            let expected: serde_json::Value = serde_json::from_slice(&std::fs::read(&totals)?)?;
            let want = domain::simulate::Totals::gpu_seconds_from_json(&expected)
                .context("the totals file has no gpu_seconds by tenant and SKU")?;
            let mut db = store::connect(&cli.database_url)?;
            let projected = store::read::totals_by_tenant_sku(&mut db)?;
            let ledgered = store::read::ledger_totals_by_tenant_sku(&mut db)?;
            if projected != want || ledgered != want {
                bail!("the ledger's GPU-seconds differ from the generator's totals in {}", totals.display());
            }
            println!(
                "check: GPU-seconds per tenant and SKU equal the generator's totals exactly ({} tenants)",
                want.len()
            );
        }
        Command::Bench { which: BenchKind::Parse { fleet } } => bench_parse(&fleet)?,
        Command::Bench { which } => {
            let mut db = store::connect(&cli.database_url)?;
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
                    let took = store::bench::copy_rows_parallel(&cli.database_url, &streams, 10_000)?;
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
                    let spec = store::bench_close::CloseBenchSpec {
                        tenants,
                        gpus,
                        projects,
                        period,
                        seed,
                        events_per_gpu_minute,
                    };
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
                    bench_api(&cli.database_url, &cli.brokers, &mut db, &tenant, &period, clients, seconds, pool_size)?;
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
        }
        Command::Reference { cmd } => {
            let mut db = store::connect(&cli.database_url).context("connecting to PostgreSQL")?;
            billing_cli::reference(&mut db, cmd)?;
        }
        Command::Invoices { cmd } => {
            let mut db = store::connect(&cli.database_url).context("connecting to PostgreSQL")?;
            billing_cli::invoices(&mut db, cmd)?;
        }
        Command::Budget { cmd } => {
            let mut db = store::connect(&cli.database_url).context("connecting to PostgreSQL")?;
            budget_cli::budget(&mut db, cmd)?;
        }
        Command::Serve { listen, pool_size, no_usage_cache } => {
            let state = api::state(&cli.database_url, &cli.brokers, pool_size)?;
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(api::serve(
                listen,
                state,
                !no_usage_cache,
            ))?;
        }
        Command::Tokens { cmd } => {
            let mut db = store::connect(&cli.database_url).context("connecting to PostgreSQL")?;
            match cmd {
                TokensCmd::Create { role, tenant, label, days } => {
                    if !(1..=3650).contains(&days) {
                        bail!("--days must be 1..=3650");
                    }
                    let (id, token) = store::tokens::create_token(
                        &mut db,
                        &role,
                        tenant.as_deref(),
                        &label,
                        chrono::Duration::days(days),
                        Utc::now(),
                    )?;
                    println!("token id: {id}");
                    println!("token:    {token}");
                    eprintln!("the token is shown only now; it is stored as a hash");
                }
                TokensCmd::Revoke { id, reason } => {
                    store::tokens::revoke_token(&mut db, id, &reason, Utc::now())?;
                    println!("revoked {id}");
                }
            }
        }
        Command::Audit { cmd } => {
            let mut db = store::connect(&cli.database_url).context("connecting to PostgreSQL")?;
            audit_cli::audit(&mut db, cmd)?;
        }
        Command::Openapi => print!("{}", api::openapi_document()),
        Command::Verify => {
            let mut db = store::connect(&cli.database_url)?;
            let mut ok = true;
            for r in store::read::verify_chains(&mut db)? {
                match &r.result {
                    Ok(()) => println!("stream {}: {} rows, chain intact", r.stream_id, r.rows),
                    Err(b) => {
                        ok = false;
                        println!("stream {}: chain BROKEN at position {}: {}", r.stream_id, b.stream_pos, b.reason)
                    }
                }
            }
            let live = store::read::live_hourly(&mut db)?;
            let rebuilt = store::read::rebuild_hourly(&mut db)?;
            if live == rebuilt {
                println!("hourly projection: rebuilt from the log, {} rows, equal to the live one", live.rows.len());
            } else {
                ok = false;
                println!("hourly projection: rebuilt from the log DIFFERS from the live one");
            }
            if !ok {
                bail!("verification failed");
            }
        }
    }
    Ok(())
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into())
}

fn print_report(totals: &BTreeMap<String, BTreeMap<String, Decimal>>, format: Format) -> Result<()> {
    let hours =
        |s: &Decimal| (s / Decimal::from(3600)).round_dp_with_strategy(3, RoundingStrategy::MidpointAwayFromZero);
    match format {
        Format::Json => {
            let v: BTreeMap<&String, BTreeMap<&String, serde_json::Value>> = totals
                .iter()
                .map(|(t, m)| {
                    (
                        t,
                        m.iter()
                            .map(|(s, d)| (s, serde_json::json!({"gpu_seconds": d.to_string(), "gpu_hours": hours(d).to_string()})))
                            .collect(),
                    )
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            println!("{:<24} {:<18} {:>18} {:>14}", "tenant", "sku", "gpu_seconds", "gpu_hours");
            for (t, m) in totals {
                let mut sum = Decimal::ZERO;
                for (s, d) in m {
                    println!("{:<24} {:<18} {:>18} {:>14}", t, s, d.to_string(), hours(d).to_string());
                    sum += d;
                }
                println!("{:<24} {:<18} {:>18} {:>14}", t, "(all SKUs)", sum.to_string(), hours(&sum).to_string());
            }
        }
    }
    Ok(())
}
