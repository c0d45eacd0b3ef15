//! Sealed checkpoints and the auditors' export format: a checkpoint is the head (position, row
//! sequence number, hash) of every stream plus the previous checkpoint's fingerprint, hashed
//! together, so that a fingerprint kept outside the database pins every stream's prefix; and the
//! GDPdU / GoBD description (`index.xml`) of the exported log.

use crate::chain::GENESIS;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The local stream that holds the checkpoints (itself hash-chained like every stream).
pub const AUDIT_STREAM: &str = "gpuledger.audit";
/// The event type of a sealed checkpoint.
pub const KIND_CHECKPOINT: &str = "audit.checkpoint.sealed";
pub const CHECKPOINT_VERSION: i16 = 1;
/// Domain separation of the checkpoint hash from the row hash (`gpuledger.chain.v1`).
const CHECKPOINT_DOMAIN: &[u8] = b"gpuledger.checkpoint.v1";

/// One stream's head as a checkpoint records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    pub stream_id: i32,
    pub topic: String,
    pub partition: i32,
    /// The position of the stream's last row (0: the stream is empty).
    pub head_pos: i64,
    /// The global sequence number of that row (none for an empty stream).
    pub head_seq: Option<i64>,
    /// The hash of that row (`GENESIS` for an empty stream).
    #[serde(with = "hex32")]
    pub head_hash: [u8; 32],
}

/// The data of a `audit.checkpoint.sealed` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// 1, 2, 3, ... in the audit stream.
    pub number: i64,
    /// The fingerprint of checkpoint `number - 1` (`GENESIS` for the first).
    #[serde(with = "hex32")]
    pub prev: [u8; 32],
    /// Every stream, ordered by `stream_id`.
    pub heads: Vec<StreamHead>,
    pub sealed_at: DateTime<Utc>,
    /// The UTC day it was sealed for (at most one per day unless forced).
    pub sealed_on: NaiveDate,
    /// `fingerprint(number, prev, heads)`, recorded so that a receipt can be found by it.
    #[serde(with = "hex32")]
    pub fingerprint: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("stream {0} appears twice in the checkpoint")]
    DuplicateStream(i32),
    #[error("stream {stream_id} has head position {head_pos}, a negative position")]
    NegativePosition { stream_id: i32, head_pos: i64 },
    #[error("a receipt is 32 to 64 hex digits (separators ' ', '-', ':' allowed), got {0:?}")]
    BadReceipt(String),
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The fingerprint of a checkpoint: sha256 over a domain tag, the checkpoint number, the previous
/// fingerprint and every head in `stream_id` order (the order is imposed here, so callers cannot
/// get two fingerprints for one set of heads).
pub fn fingerprint(number: i64, prev: &[u8; 32], heads: &[StreamHead]) -> Result<[u8; 32], CheckpointError> {
    let mut sorted: Vec<&StreamHead> = heads.iter().collect();
    sorted.sort_by_key(|s| s.stream_id);
    for w in sorted.windows(2) {
        if w[0].stream_id == w[1].stream_id {
            return Err(CheckpointError::DuplicateStream(w[0].stream_id));
        }
    }
    let mut h = Sha256::new();
    h.update(CHECKPOINT_DOMAIN);
    h.update(number.to_be_bytes());
    h.update(prev);
    h.update((sorted.len() as u64).to_be_bytes());
    for s in sorted {
        if s.head_pos < 0 {
            return Err(CheckpointError::NegativePosition { stream_id: s.stream_id, head_pos: s.head_pos });
        }
        h.update(s.stream_id.to_be_bytes());
        put_bytes(&mut h, s.topic.as_bytes());
        h.update(s.partition.to_be_bytes());
        h.update(s.head_pos.to_be_bytes());
        h.update(s.head_seq.unwrap_or(-1).to_be_bytes());
        h.update(s.head_hash);
    }
    Ok(h.finalize().into())
}

impl Checkpoint {
    /// Seals the next checkpoint after `prev` (none: this is the first).
    pub fn seal(
        prev: Option<&Checkpoint>,
        mut heads: Vec<StreamHead>,
        sealed_at: DateTime<Utc>,
    ) -> Result<Checkpoint, CheckpointError> {
        heads.sort_by_key(|s| s.stream_id);
        let (number, prev) = match prev {
            Some(p) => (p.number + 1, p.fingerprint),
            None => (1, GENESIS),
        };
        let fingerprint = fingerprint(number, &prev, &heads)?;
        Ok(Checkpoint { number, prev, heads, sealed_at, sealed_on: sealed_at.date_naive(), fingerprint })
    }

    /// Whether the recorded fingerprint is the hash of the recorded number, prev and heads.
    pub fn is_self_consistent(&self) -> bool {
        fingerprint(self.number, &self.prev, &self.heads).is_ok_and(|f| f == self.fingerprint)
    }

    /// The event id of the checkpoint: derived from its fingerprint, so a retried seal is a duplicate.
    pub fn event_id(&self) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_OID, &[CHECKPOINT_DOMAIN, &self.fingerprint[..]].concat())
    }
}

/// The short form of a fingerprint to write down: its first 16 bytes in groups of 4 hex digits.
pub fn short_fingerprint(fp: &[u8; 32]) -> String {
    let hex = hex::encode(&fp[..16]);
    hex.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or("")).collect::<Vec<_>>().join("-")
}

/// A receipt as typed by a person: the short or the full fingerprint, separators ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(Vec<u8>);

impl Receipt {
    pub fn parse(text: &str) -> Result<Receipt, CheckpointError> {
        let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-' | ':')).collect();
        let bad = || CheckpointError::BadReceipt(text.to_string());
        if !(32..=64).contains(&digits.len()) || !digits.len().is_multiple_of(2) {
            return Err(bad());
        }
        hex::decode(digits.to_ascii_lowercase()).map(Receipt).map_err(|_| bad())
    }

    /// Whether this receipt names the fingerprint `fp` (it is a prefix of it).
    pub fn matches(&self, fp: &[u8; 32]) -> bool {
        fp.starts_with(&self.0)
    }
}

impl std::fmt::Display for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

/// Serde of a 32-byte hash as 64 lowercase hex digits.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

/// The type of a column in a GDPdU description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// An integer.
    Numeric,
    AlphaNumeric,
    /// A date in `DD.MM.YYYY`.
    Date,
    /// A signed decimal with this many digits after the table's decimal symbol (`,`): amounts
    /// in EUR (2), unit prices (4), GPU-seconds and GPU-hours (6).
    Decimal(u32),
}

/// The DTD `index.xml` names, shipped beside it in every export: the GDPdU description standard
/// of 1 September 2004 (docs/gdpdu/, with its source).
pub const GDPDU_DTD_NAME: &str = "gdpdu-01-09-2004.dtd";

/// One column of an exported table: name, type, description.
pub type Column = (&'static str, ColumnType, &'static str);

/// The columns of `ledger_events.csv`, in file order.
pub const EVENT_COLUMNS: &[Column] = &[
    ("seq", ColumnType::Numeric, "global sequence number of the row (primary key)"),
    ("stream_id", ColumnType::Numeric, "stream the row is chained in (ledger_streams.csv)"),
    ("stream_topic", ColumnType::AlphaNumeric, "Kafka topic or local stream name"),
    ("stream_partition", ColumnType::Numeric, "Kafka partition (0 for local streams)"),
    ("stream_pos", ColumnType::Numeric, "position in the stream, 1, 2, 3, ..."),
    ("src_offset", ColumnType::Numeric, "Kafka offset of the message (empty for local streams)"),
    ("event_id", ColumnType::AlphaNumeric, "event id chosen by the producer (UUID)"),
    ("tenant_id", ColumnType::AlphaNumeric, "tenant ('-' for events of no tenant)"),
    ("kind", ColumnType::AlphaNumeric, "event type"),
    ("version", ColumnType::Numeric, "event type version"),
    ("occurred_on", ColumnType::Date, "UTC date of occurred_at"),
    ("occurred_at", ColumnType::AlphaNumeric, "when it happened, RFC 3339 UTC, microseconds"),
    ("recorded_at", ColumnType::AlphaNumeric, "when it was written to the ledger, RFC 3339 UTC, microseconds"),
    ("prev_hash", ColumnType::AlphaNumeric, "hash of the preceding row of the stream, hex (zeros for the first)"),
    ("hash", ColumnType::AlphaNumeric, "sha256 chain hash of this row, hex"),
    ("payload", ColumnType::AlphaNumeric, "the event's data as canonical JSON (sorted keys, no spaces)"),
];

/// The columns of `ledger_streams.csv`, in file order.
pub const STREAM_COLUMNS: &[Column] = &[
    ("stream_id", ColumnType::Numeric, "stream id (primary key)"),
    ("topic", ColumnType::AlphaNumeric, "Kafka topic or local stream name"),
    ("partition", ColumnType::Numeric, "Kafka partition (0 for local streams)"),
    ("head_pos", ColumnType::Numeric, "position of the stream's last row"),
    ("head_hash", ColumnType::AlphaNumeric, "hash of the stream's last row, hex"),
    ("next_offset", ColumnType::Numeric, "next Kafka offset to consume (empty for local streams)"),
    ("ledgered", ColumnType::Numeric, "messages written as ledger rows"),
    ("duplicates", ColumnType::Numeric, "messages that repeated a ledgered event"),
    ("quarantined", ColumnType::Numeric, "messages refused into the quarantine"),
];

/// One CSV file of an export as `index.xml` describes it.
#[derive(Debug, Clone)]
pub struct TableSpec<'a> {
    pub url: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub columns: &'a [Column],
    /// How many leading columns make the primary key (VariablePrimaryKey).
    pub key_columns: usize,
    /// Length in bytes of the header line (with its CRLF) that readers skip.
    pub header_bytes: usize,
    /// The validity range, inclusive, in days (none: no Validity element).
    pub validity: Option<(NaiveDate, NaiveDate)>,
}

/// The CSV conventions of an export: `;` between columns, CRLF after records, `"` around text.
pub const CSV_DELIMITER: u8 = b';';

/// The header line of a CSV file with these columns, as written (CRLF included).
pub fn csv_header(columns: &[Column]) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
    format!("{}\r\n", names.join(";"))
}

/// The GDPdU description (`index.xml`, "Beschreibungsstandard", DTD `gdpdu-01-09-2004.dtd`) of
/// the exported tables: variable-length UTF-8 CSV, the header line skipped by its byte count.
pub fn gdpdu_index(supplier: &str, location: &str, comment: &str, media: &str, tables: &[TableSpec<'_>]) -> String {
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!("<!DOCTYPE DataSet SYSTEM \"{GDPDU_DTD_NAME}\">\n"));
    x.push_str("<DataSet>\n  <Version>1.0</Version>\n");
    x.push_str(&format!(
        "  <DataSupplier>\n    <Name>{}</Name>\n    <Location>{}</Location>\n    <Comment>{}</Comment>\n  </DataSupplier>\n",
        crate::billing::ubl::escape(supplier),
        crate::billing::ubl::escape(location),
        crate::billing::ubl::escape(comment)
    ));
    x.push_str(&format!("  <Media>\n    <Name>{}</Name>\n", crate::billing::ubl::escape(media)));
    for t in tables {
        x.push_str("    <Table>\n");
        x.push_str(&format!("      <URL>{}</URL>\n", crate::billing::ubl::escape(t.url)));
        x.push_str(&format!("      <Name>{}</Name>\n", crate::billing::ubl::escape(t.name)));
        x.push_str(&format!("      <Description>{}</Description>\n", crate::billing::ubl::escape(t.description)));
        if let Some((from, to)) = t.validity {
            x.push_str(&format!(
                "      <Validity>\n        <Range>\n          <From>{}</From>\n          <To>{}</To>\n        </Range>\n        <Format>DD.MM.YYYY</Format>\n      </Validity>\n",
                from.format("%d.%m.%Y"),
                to.format("%d.%m.%Y")
            ));
        }
        x.push_str("      <UTF8/>\n");
        x.push_str("      <DecimalSymbol>,</DecimalSymbol>\n      <DigitGroupingSymbol>.</DigitGroupingSymbol>\n");
        x.push_str(&format!("      <SkipNumBytes>{}</SkipNumBytes>\n", t.header_bytes));
        x.push_str("      <VariableLength>\n");
        x.push_str("        <ColumnDelimiter>;</ColumnDelimiter>\n");
        x.push_str("        <RecordDelimiter>&#13;&#10;</RecordDelimiter>\n");
        x.push_str("        <TextEncapsulator>\"</TextEncapsulator>\n");
        for (i, (name, ty, description)) in t.columns.iter().enumerate() {
            let element = if i < t.key_columns.max(1) { "VariablePrimaryKey" } else { "VariableColumn" };
            let ty = match ty {
                ColumnType::Numeric => "<Numeric/>".to_string(),
                ColumnType::AlphaNumeric => "<AlphaNumeric/>".to_string(),
                ColumnType::Date => "<Date><Format>DD.MM.YYYY</Format></Date>".to_string(),
                ColumnType::Decimal(n) => format!("<Numeric><Accuracy>{n}</Accuracy></Numeric>"),
            };
            x.push_str(&format!(
                "        <{element}>\n          <Name>{}</Name>\n          <Description>{}</Description>\n          {ty}\n        </{element}>\n",
                crate::billing::ubl::escape(name),
                crate::billing::ubl::escape(description)
            ));
        }
        x.push_str("      </VariableLength>\n    </Table>\n");
    }
    x.push_str("  </Media>\n</DataSet>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn head(stream_id: i32, head_pos: i64, byte: u8) -> StreamHead {
        StreamHead {
            stream_id,
            topic: format!("t{stream_id}"),
            partition: 0,
            head_pos,
            head_seq: (head_pos > 0).then_some(head_pos * 10),
            head_hash: [byte; 32],
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 17, 0, 0).unwrap()
    }

    #[test]
    fn checkpoints_chain_by_fingerprint() {
        let first = Checkpoint::seal(None, vec![head(2, 5, 1), head(1, 3, 2)], at()).unwrap();
        assert_eq!(first.number, 1);
        assert_eq!(first.prev, GENESIS);
        assert_eq!(first.heads.iter().map(|h| h.stream_id).collect::<Vec<_>>(), vec![1, 2], "sorted");
        assert!(first.is_self_consistent());
        let second = Checkpoint::seal(Some(&first), vec![head(1, 3, 2), head(2, 6, 3)], at()).unwrap();
        assert_eq!((second.number, second.prev), (2, first.fingerprint));
        assert_ne!(second.fingerprint, first.fingerprint);
        assert_eq!(first.sealed_on, NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
    }

    #[test]
    fn a_checkpoint_survives_its_json_and_detects_edits() {
        let cp = Checkpoint::seal(None, vec![head(1, 3, 2), head(4, 0, 0)], at()).unwrap();
        let json = serde_json::to_value(&cp).unwrap();
        let back: Checkpoint = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, cp);
        assert!(back.is_self_consistent());
        let mut edited = json;
        edited["heads"][0]["head_pos"] = serde_json::json!(2);
        let edited: Checkpoint = serde_json::from_value(edited).unwrap();
        assert!(!edited.is_self_consistent());
    }

    #[test]
    fn duplicate_streams_and_negative_positions_are_refused() {
        assert_eq!(fingerprint(1, &GENESIS, &[head(1, 1, 1), head(1, 2, 1)]), Err(CheckpointError::DuplicateStream(1)));
        assert!(matches!(
            fingerprint(1, &GENESIS, &[head(1, -1, 1)]),
            Err(CheckpointError::NegativePosition { stream_id: 1, head_pos: -1 })
        ));
    }

    #[test]
    fn receipts_in_short_or_full_form() {
        let fp: [u8; 32] = core::array::from_fn(|i| i as u8 * 7);
        let short = short_fingerprint(&fp);
        assert_eq!(short.len(), 32 + 7, "8 groups of 4 hex digits");
        assert!(Receipt::parse(&short).unwrap().matches(&fp));
        assert!(Receipt::parse(&hex::encode(fp).to_uppercase()).unwrap().matches(&fp));
        let mut other = fp;
        other[3] ^= 1;
        assert!(!Receipt::parse(&short).unwrap().matches(&other));
        for bad in ["", "abc", "zz", &"0".repeat(30), &"0".repeat(66), &"0".repeat(33)] {
            assert!(Receipt::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_index_names_every_column_in_order() {
        let x = gdpdu_index(
            "A & B",
            "Berlin",
            "c",
            "export",
            &[TableSpec {
                url: "ledger_events.csv",
                name: "ledger_events",
                description: "d",
                columns: EVENT_COLUMNS,
                key_columns: 1,
                header_bytes: csv_header(EVENT_COLUMNS).len(),
                validity: None,
            }],
        );
        assert!(x.contains("<Name>A &amp; B</Name>"));
        let mut at = 0;
        for (name, _, _) in EVENT_COLUMNS {
            let needle = format!("<Name>{name}</Name>");
            at += x[at..].find(&needle).unwrap_or_else(|| panic!("{name} missing or out of order"));
        }
        assert!(x.contains(&format!("<SkipNumBytes>{}</SkipNumBytes>", csv_header(EVENT_COLUMNS).len())));
    }

    proptest! {
        /// Any change to one head (position, sequence number, hash, name) or to the previous
        /// fingerprint changes the fingerprint; the order the heads come in does not.
        #[test]
        fn fingerprint_covers_every_head(
            n in 1usize..8,
            pick in 0usize..8,
            field in 0u8..5,
            seed in any::<u64>(),
        ) {
            let heads: Vec<StreamHead> = (0..n)
                .map(|i| head(i as i32 + 1, (seed % 1000) as i64 + i as i64, (seed >> (i * 8)) as u8))
                .collect();
            let base = fingerprint(3, &GENESIS, &heads).unwrap();
            let mut reversed = heads.clone();
            reversed.reverse();
            prop_assert_eq!(fingerprint(3, &GENESIS, &reversed).unwrap(), base);
            let mut changed = heads.clone();
            let h = &mut changed[pick % n];
            let mut prev = GENESIS;
            match field {
                0 => h.head_pos += 1,
                1 => h.head_seq = Some(h.head_seq.unwrap_or(0) + 1),
                2 => h.head_hash[31] ^= 1,
                3 => h.topic.push('x'),
                _ => prev[0] = 1,
            }
            prop_assert_ne!(fingerprint(3, &prev, &changed).unwrap(), base);
        }
    }
}
