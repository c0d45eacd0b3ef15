//! `dcgm-playback`: `serve` plays a recorded sequence of dcgm-exporter scrapes back over HTTP,
//! one per `GET /metrics`, 404 after the last (the library's doc says why); `record` writes the
//! demo's recording and its expected totals (fixtures/dcgm/demo/).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

#[derive(Parser)]
#[command(name = "dcgm-playback", about = "Recorded dcgm-exporter scrapes served over HTTP, one per GET")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the *.prom files of a directory, in name order, one per GET /metrics; 404 after the last.
    Serve {
        /// The recording: a directory of *.prom files, each one scrape's body.
        #[arg(long)]
        dir: PathBuf,
        /// Address to listen on; port 0 picks a free port (see --port-file).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Write the port listened on to this file once listening (for scripts).
        #[arg(long)]
        port_file: Option<PathBuf>,
    },
    /// Write the demo's recording (scrapes/NNN.prom) and its expected totals (expected.json).
    Record {
        #[arg(long, default_value = "fixtures/dcgm/demo")]
        out: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve { dir, listen, port_file } => serve(dir, &listen, port_file),
        Command::Record { out } => {
            playback::recording::write(&out).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} scrapes and expected.json to {}", playback::recording::SCRAPES, out.display());
            Ok(())
        }
    }
}

fn serve(dir: PathBuf, listen: &str, port_file: Option<PathBuf>) -> Result<()> {
    let scrapes = playback::read_recording(&dir)?;
    let listener = TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    if let Some(f) = port_file {
        // Written whole, then renamed: a script polling for the file never reads half a port.
        let tmp = f.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", addr.port()))?;
        std::fs::rename(&tmp, &f).with_context(|| format!("writing {}", f.display()))?;
    }
    eprintln!("dcgm-playback: {} scrapes from {} on http://{addr}/metrics", scrapes.len(), dir.display());
    playback::serve(&listener, &scrapes, &AtomicUsize::new(0));
    Ok(())
}
