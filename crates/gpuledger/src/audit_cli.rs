//! `gpuledger audit ...`: the auditors' commands: verify the whole log, seal a checkpoint,
//! export the raw log with its GDPdU description and checksums.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use domain::audit::{
    csv_header, gdpdu_index, short_fingerprint, Receipt, TableSpec, CSV_DELIMITER, EVENT_COLUMNS, STREAM_COLUMNS,
};
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::path::PathBuf;
use store::audit::{ExportRange, ExportRow};

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
}

pub fn audit(db: &mut postgres::Client, cmd: AuditCmd) -> Result<()> {
    match cmd {
        AuditCmd::Verify { receipt } => verify(db, &receipt),
        AuditCmd::Checkpoint { force } => {
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
            export(db, &out, &range)
        }
    }
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
    let payload: serde_json::Value = serde_json::from_slice(&r.payload)?;
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

fn export(db: &mut postgres::Client, out: &Path, range: &ExportRange) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
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
        let written =
            event_record(r).and_then(|rec| Ok(csv.write_record(&rec)?)).and_then(|()| event_json(r)).and_then(|v| {
                serde_json::to_writer(&mut jsonl, &v)?;
                Ok(jsonl.write_all(b"\n")?)
            });
        written.map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            failed = Some(e);
            io
        })
    })
    .map_err(|e| failed.take().unwrap_or_else(|| e.into()))?;
    csv.flush()?;
    jsonl.flush()?;
    drop((csv, jsonl));

    let mut sw = csv_writer(&out.join("ledger_streams.csv"))?;
    sw.write_record(STREAM_COLUMNS.iter().map(|c| c.0))?;
    for s in &streams {
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
    drop(sw);

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
    let index = gdpdu_index(
        "gpuledger",
        "-",
        &format!("raw ledger export, {rows} rows, {range_text}; chain formula in docs/audit.md"),
        "gpuledger audit export",
        &[
            TableSpec {
                url: "ledger_events.csv",
                name: "ledger_events",
                description: "every ledger event in the range, in seq order, with its chain hashes",
                columns: EVENT_COLUMNS,
                header_bytes: csv_header(EVENT_COLUMNS).len(),
                validity: days,
            },
            TableSpec {
                url: "ledger_streams.csv",
                name: "ledger_streams",
                description:
                    "every stream (Kafka partition or local stream) with its head and offset counters at export time",
                columns: STREAM_COLUMNS,
                header_bytes: csv_header(STREAM_COLUMNS).len(),
                validity: None,
            },
        ],
    );
    std::fs::write(out.join("index.xml"), index)?;

    let mut sums = String::new();
    for name in ["ledger_events.csv", "ledger_events.jsonl", "ledger_streams.csv", "index.xml"] {
        sums.push_str(&format!("{}  {name}\n", sha256_file(&out.join(name))?));
    }
    std::fs::write(out.join("SHA256SUMS"), sums)?;
    let (n, dir) = (streams.len(), out.display());
    println!("export: {rows} rows of {n} streams to {dir} (check with: cd {dir} && sha256sum -c SHA256SUMS)");
    Ok(())
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
