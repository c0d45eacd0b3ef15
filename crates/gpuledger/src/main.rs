//! The `gpuledger` command: the only place that reads the environment, parses arguments and
//! prints. Everything it does is a call into the domain, store and ingest crates; each subcommand
//! (or family of them) has its own module, and `run` only dispatches.

mod audit_cli;
mod audit_tables;
mod billing_cli;
mod budget_cli;
mod collect_cli;
mod coverage_cli;
mod ingest_cli;
mod ledger_cli;
mod logins;
mod produce_cli;
mod serve_cli;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "gpuledger", version, about = "Metering and billing ledger for GPU time")]
struct Cli {
    /// PostgreSQL connection URL of the tables' owner (`migrate`, `audit replay`). The other
    /// commands log in as their own roles (GPULEDGER_INGEST_DATABASE_URL, ..._API_..., ..._FINANCE_...,
    /// ..._AUDITOR_..., ..._TOKENS_...; by default this URL with the user gpuledger_ingest,
    /// gpuledger_api, gpuledger_finance, gpuledger_auditor, gpuledger_tokens).
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
    Ingest(ingest_cli::IngestArgs),
    /// Meter the fleet: scrape dcgm-exporter and produce usage events (`collect dcgm`).
    Collect {
        #[command(subcommand)]
        cmd: collect_cli::CollectCmd,
    },
    /// The collector's coverage per SKU and Berlin day: capacity, metered, idle, unmetered, unmapped, unbillable.
    Coverage(coverage_cli::CoverageArgs),
    /// Generate a seeded fleet's usage and produce it to Kafka; write the exact expected totals.
    Produce(produce_cli::ProduceArgs),
    /// Per-tenant GPU-hours by SKU from the hourly projection.
    Report {
        #[arg(long, value_enum, default_value_t = ledger_cli::Format::Table)]
        format: ledger_cli::Format,
    },
    /// What happened to every consumed offset, per partition.
    Status,
    /// Compare the ledger's GPU-seconds per tenant and SKU with a generator's totals file, exactly
    /// (with several, their sum: e.g. the simulator's and a recorded scrape sequence's).
    Check {
        #[arg(long, required = true)]
        totals: Vec<PathBuf>,
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
    Serve(serve_cli::ServeArgs),
    /// API tokens: create (the secret is shown once) and revoke.
    Tokens {
        #[command(subcommand)]
        cmd: serve_cli::TokensCmd,
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

fn main() {
    gpuledger::main_with(run);
}

fn run(cli: Cli) -> Result<()> {
    let Cli { database_url, brokers, topic, command } = cli;
    match command {
        Command::Migrate => ledger_cli::migrate(&database_url),
        Command::Ingest(args) => ingest_cli::ingest(args, logins::url(&logins::INGEST, &database_url)?, brokers, topic),
        Command::Collect { cmd } => {
            collect_cli::collect(cmd, &logins::url(&logins::INGEST, &database_url)?, brokers, topic)
        }
        Command::Produce(args) => produce_cli::produce(args, &brokers, &topic),
        Command::Report { format } => ledger_cli::report(&mut auditor(&database_url)?, format),
        Command::Status => ledger_cli::status(&mut auditor(&database_url)?, &topic),
        Command::Check { totals } => ledger_cli::check(&mut auditor(&database_url)?, &totals),
        Command::Verify => ledger_cli::verify(&mut auditor(&database_url)?),
        Command::Reference { cmd } => billing_cli::reference(&mut connect_finance(&database_url)?, cmd),
        Command::Coverage(args) => coverage_cli::coverage(&mut connect_finance(&database_url)?, args),
        Command::Invoices { cmd } => billing_cli::invoices(&mut connect_finance(&database_url)?, cmd),
        Command::Budget { cmd } => budget_cli::budget(&mut connect_finance(&database_url)?, cmd),
        Command::Audit { cmd } => audit_cli::audit(&database_url, cmd),
        Command::Serve(args) => serve_cli::serve(
            args,
            &logins::url(&logins::API, &database_url)?,
            &logins::url(&logins::FINANCE, &database_url)?,
            &brokers,
            &topic,
        ),
        Command::Tokens { cmd } => serve_cli::tokens(&mut logins::connect(&logins::TOKENS, &database_url)?, cmd),
        Command::Openapi => {
            serve_cli::openapi();
            Ok(())
        }
    }
}

/// The connection of the finance commands (loads, closes, exports, budget): finance's own
/// unprivileged login, refused if it is privileged.
fn connect_finance(owner_url: &str) -> Result<postgres::Client> {
    logins::connect(&logins::FINANCE, owner_url)
}

/// The connection of the read-only reports (`status`, `check`, `verify`, `report`): the
/// auditor's login, refused if it may change anything.
fn auditor(owner_url: &str) -> Result<postgres::Client> {
    logins::connect(&logins::AUDITOR, owner_url)
}
