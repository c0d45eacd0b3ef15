//! `gpuledger serve`, `tokens ...` and `openapi`: the HTTP API, its bearer tokens and its
//! OpenAPI document.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Subcommand;

// The arguments of `gpuledger serve` (its help text is the variant's in main.rs).
#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// Answer every `GET /v1/usage` from the database (no response cache).
    #[arg(long)]
    no_usage_cache: bool,
    /// Serve Prometheus `/metrics` here (its own listener, never the API's); without it, not at all.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Seconds a client has to send a request's headers (also the idle time of a kept-alive connection).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_secs: u64,
    /// Seconds a request may take, body and work included (then 503).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86400))]
    request_timeout_secs: u64,
    /// Connections open at once; further ones wait in the listen queue.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Seconds `POST /v1/events` waits for Kafka to acknowledge a batch (then 503).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    produce_timeout_secs: u64,
    /// Events per second each producer token may post (it may send two seconds' worth at once).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    producer_events_per_second: u64,
    /// Milliseconds an accepted event may wait for others to share its Kafka batch (librdkafka's
    /// `linger.ms`). 0: every request waits for its own acknowledgement, so a longer linger slows
    /// each client down; events still share batches while earlier ones are in flight.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
    producer_linger_ms: u64,
}

#[derive(Subcommand)]
pub enum TokensCmd {
    /// A new token; prints its id and the secret, which is stored only as a hash.
    Create {
        /// tenant, finance, auditor, admin or producer.
        #[arg(long)]
        role: String,
        /// The tenant of a tenant token; the tenants a producer token may report for (repeated).
        #[arg(long)]
        tenant: Vec<String>,
        /// The CloudEvents `source` of a producer token's events.
        #[arg(long)]
        source: Option<String>,
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

/// Serves until SIGTERM or Ctrl-C, on two unprivileged logins (`api_url` for everything behind
/// the tenant wall, `finance_url` for finance's work across tenants); refuses privileged ones.
/// `POST /v1/events` produces to `topic` on `brokers`.
pub fn serve(args: ServeArgs, api_url: &str, finance_url: &str, brokers: &str, topic: &str) -> Result<()> {
    let ServeArgs {
        listen,
        pool_size,
        no_usage_cache,
        metrics_listen,
        header_timeout_secs,
        request_timeout_secs,
        max_connections,
        produce_timeout_secs,
        producer_events_per_second,
        producer_linger_ms,
    } = args;
    let mut api_db = store::connect(api_url).context("connecting to PostgreSQL as gpuledger_api")?;
    store::roles::refuse_privileged_api(&mut api_db)?;
    let mut finance_db = store::connect(finance_url).context("connecting to PostgreSQL as gpuledger_finance")?;
    store::roles::refuse_privileged(&mut finance_db)?;
    drop((api_db, finance_db));
    let state = api::state(api_url, finance_url, brokers, pool_size)?.with_events(api::EventIngest {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        produce_timeout: std::time::Duration::from_secs(produce_timeout_secs),
        events_per_second: producer_events_per_second,
        linger: std::time::Duration::from_millis(producer_linger_ms),
    })?;
    let limits = api::Limits {
        header_read_timeout: std::time::Duration::from_secs(header_timeout_secs),
        request_timeout: std::time::Duration::from_secs(request_timeout_secs),
        max_connections: usize::try_from(max_connections)?,
    };
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(api::serve(
        listen,
        metrics_listen,
        state,
        !no_usage_cache,
        limits,
    ))
}

pub fn tokens(db: &mut postgres::Client, cmd: TokensCmd) -> Result<()> {
    match cmd {
        TokensCmd::Create { role, tenant, source, label, days } => {
            if !(1..=3650).contains(&days) {
                bail!("--days must be 1..=3650");
            }
            let valid_for = chrono::Duration::days(days);
            let (id, token) = match (role.as_str(), source) {
                ("producer", Some(source)) => {
                    store::tokens::create_producer_token(db, &source, &tenant, &label, valid_for, Utc::now())?
                }
                ("producer", None) => bail!("a producer token names its --source"),
                (_, Some(_)) => bail!("only a producer token names a --source"),
                (_, None) if tenant.len() > 1 => bail!("a tenant token names one --tenant"),
                (_, None) => store::tokens::create_token(
                    db,
                    &role,
                    tenant.first().map(String::as_str),
                    &label,
                    valid_for,
                    Utc::now(),
                )?,
            };
            println!("token id: {id}");
            println!("token:    {token}");
            eprintln!("the token is shown only now; it is stored as a hash");
        }
        TokensCmd::Revoke { id, reason } => {
            store::tokens::revoke_token(db, id, &reason, Utc::now())?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub fn openapi() {
    print!("{}", api::openapi_document());
}
