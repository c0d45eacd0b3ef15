//! What the `gpuledger` command shares with `gpuledger-bench` (crates/bench): the simulated
//! fleet's arguments, so that `produce` and the benchmarks take the same flags for the same fleet,
//! and `main` itself.

pub mod fleet;

/// The `main` of both binaries: logs to standard error (`RUST_LOG`, else `info` with rdkafka's
/// warnings only), parses the command line, runs it, and on an error prints it with its causes
/// and exits 1.
pub fn main_with<C: clap::Parser>(run: impl FnOnce(C) -> anyhow::Result<()>) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .init();
    if let Err(e) = run(C::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
