//! `gpuledger audit ...`: the auditors' commands: verify the whole log, seal a checkpoint,
//! export the raw log with its GDPdU description and checksums, replay every projection.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use domain::audit::{
    csv_header, gdpdu_index, short_fingerprint, Receipt, TableSpec, CSV_DELIMITER, EVENT_COLUMNS, GDPDU_DTD_NAME,
    STREAM_COLUMNS,
};
use sha2::{Digest, Sha256};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::Path;
use std::path::PathBuf;
use store::audit::{Cut, ExportRange, ExportRow, ReplayOptions};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Check every hash chain from its first row to its head, heads, positions, sequence numbers
    /// and offset counters, and every sealed checkpoint against the rows; exit 1 on any break.
    Verify {
        /// A checkpoint fingerprint kept outside the database (short or full form); it must
        /// still be in the log and consistent. May be given several times.
        #[arg(long)]
        receipt: Vec<String>,
    },
    /// Seal a checkpoint of every stream's head now (at most one per UTC day unless --force);
    /// prints the fingerprint to keep outside the database.
    Checkpoint {
        #[arg(long)]
        force: bool,
    },
    /// Write the raw log for auditors: ledger_events.csv/.jsonl, ledger_streams.csv, index.xml
    /// (GDPdU) and SHA256SUMS.
    Export {
        #[arg(long)]
        out: PathBuf,
        /// First sequence number (inclusive).
        #[arg(long)]
        from_seq: Option<i64>,
        /// Last sequence number (inclusive).
        #[arg(long)]
        to_seq: Option<i64>,
        /// Rows that occurred at or after this instant (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Rows that occurred before this instant (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
    /// Rebuild every projection from the log alone into a scratch schema (hourly usage, the
    /// invoices with each close replayed, the budget report) and compare with the live ones;
    /// prints a SHA-256 per output; exit 1 on any difference.
    Replay {
        /// What the ledger knew at this instant: rows recorded at or before it (RFC 3339).
        #[arg(long, conflicts_with = "until_seq")]
        as_of: Option<DateTime<Utc>>,
        /// What the ledger knew up to this sequence number (inclusive).
        #[arg(long)]
        until_seq: Option<i64>,
        /// The scratch schema (default replay_<pid>); it must not exist.
        #[arg(long)]
        schema: Option<String>,
        /// Keep the scratch schema instead of dropping it.
        #[arg(long)]
        keep: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Show progress on stderr even when it is not a terminal.
        #[arg(long)]
        progress: bool,
        /// How many differences to list (all are counted).
        #[arg(long, default_value_t = 20)]
        max_differences: usize,
    },
}

/// Runs an audit command on its login: `verify` and `export` on the auditor's (read-only),
/// `checkpoint` on finance's (it appends the checkpoint to the ledger's local stream), and
/// `replay` on the owner's, the one login that may make its scratch schema (a read-only login
/// that could create schemas could also shadow other logins' tables through their search path).
pub fn audit(owner_url: &str, cmd: AuditCmd) -> Result<()> {
    use crate::logins::{connect, AUDITOR, FINANCE};
    match cmd {
        AuditCmd::Verify { receipt } => verify(&mut connect(&AUDITOR, owner_url)?, &receipt),
        AuditCmd::Checkpoint { force } => {
            let db = &mut connect(&FINANCE, owner_url)?;
            let sealed = store::audit::seal_checkpoint(db, Utc::now(), force)?;
            let cp = &sealed.checkpoint;
            let what = if sealed.new { "sealed" } else { "already sealed today" };
            println!(
                "checkpoint #{} {what} at {} (seq {}), {} streams",
                cp.number,
                cp.sealed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                sealed.seq,
                cp.heads.len()
            );
            println!("receipt:     {}", short_fingerprint(&cp.fingerprint));
            println!("fingerprint: {}", hex::encode(cp.fingerprint));
            eprintln!(
                "keep the receipt outside the database; check it with: gpuledger audit verify --receipt <receipt>"
            );
            Ok(())
        }
        AuditCmd::Export { out, from_seq, to_seq, since, until } => {
            let range = ExportRange { from_seq, to_seq, since, until };
            export(&mut connect(&AUDITOR, owner_url)?, &out, &range)
        }
        AuditCmd::Replay { as_of, until_seq, schema, keep, json, progress, max_differences } => {
            let cut = match (as_of, until_seq) {
                (Some(t), _) => Cut::AsOf(t),
                (None, Some(n)) => Cut::UntilSeq(n),
                (None, None) => Cut::Now,
            };
            let opts = ReplayOptions { cut, schema, keep, differences_max: max_differences };
            replay(&mut store::connect(owner_url).context("connecting to PostgreSQL")?, &opts, json, progress)
        }
    }
}

/// Progress on stderr: an indicatif bar on a terminal, plain lines when asked for elsewhere.
enum Meter {
    Bar(indicatif::ProgressBar),
    Lines,
    Off,
}

impl Meter {
    fn new(forced: bool) -> Meter {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} replay [{elapsed_precise}] {bar:30} {human_pos}/{human_len} events (est.) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            Meter::Bar(bar)
        } else if forced {
            Meter::Lines
        } else {
            Meter::Off
        }
    }

    fn update(&self, p: &store::replay::Progress) {
        match self {
            Meter::Bar(b) => {
                b.set_length(p.total);
                b.set_position(p.done);
                b.set_message(p.stage.clone());
            }
            Meter::Lines => eprintln!("replay: {} ({} of about {} events)", p.stage, p.done, p.total),
            Meter::Off => {}
        }
    }

    fn finish(&self) {
        if let Meter::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

fn hex32(h: &[u8; 32]) -> String {
    hex::encode(h)
}

fn replay(db: &mut postgres::Client, opts: &ReplayOptions, json: bool, progress: bool) -> Result<()> {
    let meter = Meter::new(progress);
    let started = std::time::Instant::now();
    let report = store::audit::replay(db, opts, &mut |p| meter.update(&p));
    meter.finish();
    let r = report?;
    let took = started.elapsed();
    let millis = took.as_millis().max(1);
    let per_second = u128::from(r.usage_events) * 1000 / millis;
    let total = r.differences_total();
    if json {
        let output = |p: &store::audit::ProjectionOutput| {
            serde_json::json!({
                "rows": p.rows, "sha256": hex32(&p.sha256), "compared": p.compared, "differences": p.differences,
            })
        };
        let v = serde_json::json!({
            "cut": r.cut.to_string(),
            "cut_seq": r.cut_seq,
            "cut_at": r.cut_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            "as_of_date": r.as_of_date.to_string(),
            "schema": r.schema,
            "kept": r.kept,
            "usage_events": r.usage_events,
            "local_rows": r.local_rows,
            "closes": r.closes,
            "millis": millis,
            "usage_events_per_second": per_second,
            "outputs": {
                "usage_hourly": output(&r.hourly),
                "invoices": output(&r.invoices),
                "budget_report": output(&r.budget),
            },
            "output_sha256": hex32(&r.combined_sha256),
            "differences_total": total,
            "differences": r.differences.iter().map(|d| serde_json::json!({
                "projection": d.projection, "key": d.key, "replayed": d.replayed, "live": d.live,
            })).collect::<Vec<_>>(),
            "replayed_totals": r.replayed_totals.iter().map(|((t, s), g)| serde_json::json!({
                "tenant_id": t, "gpu_sku": s, "gpu_seconds": g.normalize().to_string(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let schema = if r.kept { format!("kept in schema {}", r.schema) } else { "scratch schema dropped".into() };
        println!(
            "replay: {} (last seq {}, recorded {}), budget as of {}; {schema}",
            r.cut,
            r.cut_seq.map_or("-".into(), |s| s.to_string()),
            r.cut_at.map_or("-".into(), |t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            r.as_of_date
        );
        println!(
            "  {} usage events folded ({per_second} /s), {} rows of the local streams, {} closes replayed, {millis} ms",
            r.usage_events, r.local_rows, r.closes
        );
        for (p, against) in [
            (&r.hourly, "the live usage_hourly"),
            (&r.invoices, "the issued documents and the invoices table"),
            (&r.budget, "the live budget report"),
        ] {
            let compared = if p.compared {
                format!("{} differences with {against}", p.differences)
            } else {
                "not compared: the live projection holds what is known now, not at the cut".into()
            };
            println!("  {:<14} {:>9} rows  sha256 {}  {compared}", p.name, p.rows, hex32(&p.sha256));
        }
        println!("  output sha256 {}", hex32(&r.combined_sha256));
        if !r.cut.is_now() {
            println!("  replayed GPU-seconds per tenant and SKU (what the ledger knew at the cut):");
            for ((t, s), g) in &r.replayed_totals {
                println!("    {t} {s} {}", g.normalize());
            }
        }
        for d in &r.differences {
            println!("DIFFERENCE {} {}: replayed {}; live {}", d.projection, d.key, d.replayed, d.live);
        }
    }
    if total > 0 {
        bail!(
            "replay differs from the live projections: {total} difference(s), the first {} listed",
            r.differences.len()
        );
    }
    if !json && r.cut.is_now() {
        println!("replay: equal to the live projections");
    } else if !json {
        println!("replay: every document issued inside the cut is byte-identical to its replay");
    }
    Ok(())
}

fn verify(db: &mut postgres::Client, receipts: &[String]) -> Result<()> {
    let receipts: Vec<Receipt> =
        receipts.iter().map(|r| Receipt::parse(r)).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
    let report = store::audit::verify_log(db, &receipts)?;
    println!(
        "audit: {} streams, {} rows, {} checkpoints",
        report.streams.len(),
        report.rows(),
        report.checkpoints.len()
    );
    for c in &report.streams {
        let s = &c.stream;
        match &c.broken {
            None => println!(
                "  stream {} {}: {} rows, intact to head position {}",
                s.stream_id,
                s.name(),
                c.rows,
                s.head_pos
            ),
            Some(b) => println!(
                "  stream {} {}: {} rows, BROKEN at {} position {}: {}",
                s.stream_id,
                s.name(),
                c.rows,
                b.seq.map_or_else(|| "(no row)".into(), |q| format!("seq {q}")),
                b.stream_pos,
                b.reason
            ),
        }
    }
    for c in &report.checkpoints {
        let (number, receipt) = c.checkpoint.as_ref().map_or(("?".to_string(), "-".to_string()), |cp| {
            (cp.number.to_string(), short_fingerprint(&cp.fingerprint))
        });
        match &c.broken {
            None => println!("  checkpoint #{number} (seq {}, receipt {receipt}): consistent with the rows", c.seq),
            Some(b) => println!("  checkpoint #{number} (seq {}, receipt {receipt}): BROKEN: {}", c.seq, b.reason),
        }
    }
    for r in &report.receipts {
        match r.found {
            Some((number, seq)) => println!("  receipt {}: checkpoint #{number} (seq {seq}) is in the log", r.receipt),
            None => println!("  receipt {}: NOT in the log", r.receipt),
        }
    }
    if let Some(d) = &report.seq_duplicates {
        println!("  sequence numbers: BROKEN: {}", d.reason);
    }
    let breaks = report.breaks();
    match breaks.first() {
        None => {
            println!("audit: intact");
            Ok(())
        }
        Some(b) => {
            println!(
                "FIRST BREAK: {} in stream {} ({}) at position {}: {}",
                b.seq.map_or_else(|| "no row to name".into(), |q| format!("seq {q}")),
                b.stream_id,
                b.stream,
                b.stream_pos,
                b.reason
            );
            bail!("audit failed: {} break(s); the first is listed above", breaks.len())
        }
    }
}

fn csv_writer(path: &Path) -> Result<csv::Writer<BufWriter<std::fs::File>>> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(csv::WriterBuilder::new()
        .delimiter(CSV_DELIMITER)
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(BufWriter::new(file)))
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn event_record(r: &ExportRow) -> Result<Vec<String>> {
    Ok(vec![
        r.seq.to_string(),
        r.stream_id.to_string(),
        r.topic.clone(),
        r.partition.to_string(),
        r.stream_pos.to_string(),
        opt(r.src_offset),
        r.event_id.to_string(),
        r.tenant_id.clone(),
        r.kind.clone(),
        r.version.to_string(),
        r.occurred_at.format("%d.%m.%Y").to_string(),
        ts(&r.occurred_at),
        ts(&r.recorded_at),
        hex::encode(&r.prev_hash),
        hex::encode(&r.hash),
        String::from_utf8(r.payload.clone()).context("payload is not UTF-8")?,
    ])
}

fn event_json(r: &ExportRow) -> Result<serde_json::Value> {
    // Read as I-JSON, as every reader of event JSON: a repeated name is refused, not resolved.
    let payload: serde_json::Value = domain::ijson::from_slice(&r.payload)?;
    // serde_json (without preserve_order) writes object keys sorted, like the payload's canonical form.
    Ok(serde_json::json!({
        "seq": r.seq,
        "stream_id": r.stream_id,
        "stream_topic": r.topic,
        "stream_partition": r.partition,
        "stream_pos": r.stream_pos,
        "src_offset": r.src_offset,
        "event_id": r.event_id,
        "tenant_id": r.tenant_id,
        "kind": r.kind,
        "version": r.version,
        "occurred_at": ts(&r.occurred_at),
        "recorded_at": ts(&r.recorded_at),
        "prev_hash": hex::encode(&r.prev_hash),
        "hash": hex::encode(&r.hash),
        "payload": payload,
    }))
}

/// The DTD `index.xml` names, shipped in every export (docs/gdpdu/ says where it comes from).
const GDPDU_DTD: &str = include_str!("../../../docs/gdpdu/gdpdu-01-09-2004.dtd");

fn export(db: &mut postgres::Client, out: &Path, range: &ExportRange) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut typed = crate::audit_tables::TypedTables::create(out, csv_writer)?;
    let written = write_events(db, out, range, &mut typed)?;
    write_streams(out, &written.streams)?;
    let typed_specs = typed.finish(db)?;
    std::fs::write(out.join("index.xml"), export_index(range, &written, &typed_specs))?;
    std::fs::write(out.join(GDPDU_DTD_NAME), GDPDU_DTD)?;

    let mut sums = String::new();
    let typed_files = typed_specs.iter().map(|t| t.url);
    for name in ["ledger_events.csv", "ledger_events.jsonl", "ledger_streams.csv", "index.xml", GDPDU_DTD_NAME]
        .into_iter()
        .chain(typed_files)
    {
        sums.push_str(&format!("{}  {name}\n", sha256_file(&out.join(name))?));
    }
    std::fs::write(out.join("SHA256SUMS"), sums)?;
    let (rows, n, dir) = (written.rows, written.streams.len(), out.display());
    println!("export: {rows} rows of {n} streams to {dir} (check with: cd {dir} && sha256sum -c SHA256SUMS)");
    Ok(())
}

/// What the export of the ledger's rows wrote: the streams as they stood, the number of rows,
/// and the first and last day they occurred on.
struct WrittenEvents {
    streams: Vec<store::read::StreamInfo>,
    rows: u64,
    days: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
}

/// ledger_events.csv and .jsonl, and each row into the typed tables too.
fn write_events(
    db: &mut postgres::Client,
    out: &Path,
    range: &ExportRange,
    typed: &mut crate::audit_tables::TypedTables,
) -> Result<WrittenEvents> {
    let mut csv = csv_writer(&out.join("ledger_events.csv"))?;
    csv.write_record(EVENT_COLUMNS.iter().map(|c| c.0))?;
    let jsonl_path = out.join("ledger_events.jsonl");
    let mut jsonl = BufWriter::new(
        std::fs::File::create(&jsonl_path).with_context(|| format!("creating {}", jsonl_path.display()))?,
    );
    let mut days: Option<(chrono::NaiveDate, chrono::NaiveDate)> = None;
    let mut failed: Option<anyhow::Error> = None;
    let (streams, rows) = store::audit::export_rows(db, range, |r| {
        let day = r.occurred_at.date_naive();
        days = Some(days.map_or((day, day), |(a, b)| (a.min(day), b.max(day))));
        let written = event_record(r)
            .and_then(|rec| Ok(csv.write_record(&rec)?))
            .and_then(|()| event_json(r))
            .and_then(|v| {
                serde_json::to_writer(&mut jsonl, &v)?;
                Ok(jsonl.write_all(b"\n")?)
            })
            .and_then(|()| typed.row(r));
        written.map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            failed = Some(e);
            io
        })
    })
    .map_err(|e| failed.take().unwrap_or_else(|| e.into()))?;
    csv.flush()?;
    jsonl.flush()?;
    Ok(WrittenEvents { streams, rows, days })
}

/// ledger_streams.csv: every stream with its head and offset counters.
fn write_streams(out: &Path, streams: &[store::read::StreamInfo]) -> Result<()> {
    let mut sw = csv_writer(&out.join("ledger_streams.csv"))?;
    sw.write_record(STREAM_COLUMNS.iter().map(|c| c.0))?;
    for s in streams {
        sw.write_record([
            s.stream_id.to_string(),
            s.topic.clone(),
            s.partition.to_string(),
            s.head_pos.to_string(),
            hex::encode(&s.head_hash),
            opt(s.next_offset),
            s.ledgered.to_string(),
            s.duplicates.to_string(),
            s.quarantined.to_string(),
        ])?;
    }
    sw.flush()?;
    Ok(())
}

/// index.xml: the GDPdU description of the two raw tables and the typed ones.
fn export_index(range: &ExportRange, written: &WrittenEvents, typed_specs: &[TableSpec<'static>]) -> String {
    let range_text =
        if range.from_seq.is_none() && range.to_seq.is_none() && range.since.is_none() && range.until.is_none() {
            "the whole log".to_string()
        } else {
            format!(
                "seq {}..{}, occurred_at [{}, {})",
                opt(range.from_seq),
                opt(range.to_seq),
                range.since.as_ref().map(ts).unwrap_or_default(),
                range.until.as_ref().map(ts).unwrap_or_default()
            )
        };
    gdpdu_index(
        "gpuledger",
        "-",
        &format!("raw ledger export, {} rows, {range_text}; chain formula in docs/audit.md", written.rows),
        "gpuledger audit export",
        &[
            TableSpec {
                url: "ledger_events.csv",
                name: "ledger_events",
                description: "every ledger event in the range, in seq order, with its chain hashes",
                columns: EVENT_COLUMNS,
                key_columns: 1,
                header_bytes: csv_header(EVENT_COLUMNS).len(),
                validity: written.days,
            },
            TableSpec {
                url: "ledger_streams.csv",
                name: "ledger_streams",
                description:
                    "every stream (Kafka partition or local stream) with its head and offset counters at export time",
                columns: STREAM_COLUMNS,
                key_columns: 1,
                header_bytes: csv_header(STREAM_COLUMNS).len(),
                validity: None,
            },
        ]
        .into_iter()
        .chain(typed_specs.iter().cloned())
        .collect::<Vec<_>>(),
    )
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
