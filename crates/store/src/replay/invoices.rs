//! The invoices index of a replay: the documents the replayed closes issued, written to
//! `{schema}.invoices` and hashed in log order, beside the live index (rows whose document is
//! inside the cut), and the documents in the ledger that no replayed close issued.

use super::closes::Billing;
use super::compare::{sha, ts, Difference, ProjectionOutput};
use super::cut::Cut;
use super::invariant;
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::billing::invoice::InvoiceDoc;
use postgres::types::ToSql;
use postgres::Transaction;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// An index row's fields as compared (number first; the live side's event id says when its
/// ledger row holds another).
type IndexRows = BTreeMap<String, Vec<String>>;

/// The replayed invoices index against the live one; `close_differences` (from replaying the
/// closes) come first in the differences returned.
pub(super) fn replay_index(
    tx: &mut Transaction<'_>,
    schema: &str,
    cut: &Cut,
    billing: &Billing,
    replayed: &[(usize, InvoiceDoc)],
    close_differences: Vec<Difference>,
) -> Result<(ProjectionOutput, Vec<Difference>), StoreError> {
    let (replayed_index, sha256) = write_replayed(tx, schema, billing, replayed)?;
    let live_index = live(tx, cut, billing)?;
    let mut invoice_differences = close_differences;
    for number in replayed_index.keys().chain(live_index.keys()).collect::<BTreeSet<_>>() {
        let (a, b) = (replayed_index.get(number), live_index.get(number));
        if a != b {
            let show = |v: Option<&Vec<String>>| v.map_or_else(|| "(none)".to_string(), |f| f[1..].join(" "));
            invoice_differences.push(Difference {
                projection: "invoices",
                key: format!("invoice {number}"),
                replayed: show(a),
                live: show(b),
            });
        }
    }
    // Documents in the ledger (inside the cut) that no replayed close issued.
    for number in billing.stored_json.keys().filter(|n| !replayed_index.contains_key(*n)) {
        invoice_differences.push(Difference {
            projection: "invoices",
            key: format!("document {number}"),
            replayed: "(not issued by any replayed close)".into(),
            live: "in the ledger".into(),
        });
    }
    let invoices = ProjectionOutput {
        name: "invoices",
        rows: replayed.len() as u64,
        sha256,
        compared: true,
        differences: invoice_differences.len() as u64,
    };
    Ok((invoices, invoice_differences))
}

/// Writes the replayed documents to `{schema}.invoices`; their index rows by number and the hash
/// of the index in the order the closes issued them.
fn write_replayed(
    tx: &mut Transaction<'_>,
    schema: &str,
    billing: &Billing,
    replayed: &[(usize, InvoiceDoc)],
) -> Result<(IndexRows, [u8; 32]), StoreError> {
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.invoices (number text COLLATE \"C\" PRIMARY KEY, type_code smallint NOT NULL,
             tenant_id text COLLATE \"C\" NOT NULL, period text NOT NULL, close_period text NOT NULL,
             issued_at timestamptz NOT NULL, net_total numeric(18, 2) NOT NULL, vat_total numeric(18, 2) NOT NULL,
             gross_total numeric(18, 2) NOT NULL, event_id uuid NOT NULL, document bytea NOT NULL,
             document_sha256 bytea NOT NULL)"
    ))?;
    let insert_invoice = tx.prepare(&format!(
        "INSERT INTO {schema}.invoices VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))?;
    let mut inv_sha = sha();
    let mut replayed_index: IndexRows = BTreeMap::new();
    for (k, d) in replayed {
        let bytes = d.canonical_bytes();
        let doc_sha: [u8; 32] = Sha256::digest(&bytes).into();
        let close_period = billing.closes[*k].2.period.to_string();
        let event_id = Uuid::new_v5(&billing.closes[*k].1, d.number.as_bytes());
        let type_code = i16::try_from(d.type_code).map_err(|_| invariant("type code out of range"))?;
        let (net_total, vat_total, gross_total) = (d.net_total.amount(), d.vat_total.amount(), d.gross_total.amount());
        let params: [&(dyn ToSql + Sync); 12] = [
            &d.number,
            &type_code,
            &d.tenant_id,
            &d.period.to_string(),
            &close_period,
            &d.issued_at,
            &net_total,
            &vat_total,
            &gross_total,
            &event_id,
            &bytes,
            &doc_sha.as_slice(),
        ];
        tx.execute(&insert_invoice, &params)?;
        let fields = vec![
            d.number.clone(),
            d.type_code.to_string(),
            d.tenant_id.clone(),
            d.period.to_string(),
            close_period,
            ts(&d.issued_at),
            d.net_total.to_string(),
            d.vat_total.to_string(),
            d.gross_total.to_string(),
            event_id.to_string(),
        ];
        let mut line: Vec<&str> = fields.iter().map(String::as_str).collect();
        let hex_sha = hex::encode(doc_sha);
        line.push(&hex_sha);
        inv_sha.line(&line);
        replayed_index.insert(d.number.clone(), fields);
    }
    Ok((replayed_index, inv_sha.done()))
}

/// The live invoices index: rows of the closes inside the cut (all of them, wherever they
/// point, when it is the whole log).
fn live(tx: &mut Transaction<'_>, cut: &Cut, billing: &Billing) -> Result<IndexRows, StoreError> {
    let mut live_index: IndexRows = BTreeMap::new();
    for r in tx.query(
        "SELECT i.number, i.type_code, i.tenant_id, i.period, i.close_period, i.issued_at, i.net_total, i.vat_total,
                i.gross_total, i.event_id, i.stream_id, i.stream_pos, e.event_id
           FROM invoices i LEFT JOIN ledger_events e ON e.stream_id = i.stream_id AND e.stream_pos = i.stream_pos",
        &[],
    )? {
        let (sid, pos): (i32, i64) = (r.get(10), r.get(11));
        let row_event: Option<Uuid> = r.get(12);
        let index_event: Uuid = r.get(9);
        // Documents of the closes inside the cut (all of them, wherever they point, when it is the whole log).
        if !(cut.is_now() || (Some(sid) == billing.stream_id && pos <= billing.last_close_pos)) {
            continue;
        }
        let number: String = r.get(0);
        let event = if row_event == Some(index_event) {
            index_event.to_string()
        } else {
            format!("{index_event} (its ledger row holds {})", row_event.map_or("nothing".into(), |u| u.to_string()))
        };
        let issued_at: DateTime<Utc> = r.get(5);
        let fields = vec![
            number.clone(),
            r.get::<_, i16>(1).to_string(),
            r.get(2),
            r.get(3),
            r.get(4),
            ts(&issued_at),
            r.get::<_, Decimal>(6).to_string(),
            r.get::<_, Decimal>(7).to_string(),
            r.get::<_, Decimal>(8).to_string(),
            event,
        ];
        live_index.insert(number, fields);
    }
    Ok(live_index)
}
