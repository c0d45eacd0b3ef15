//! Finance's flat exports of issued documents: CSV (one row per line, the document's header and
//! totals repeated on each) and JSON (the documents themselves).

use super::invoice::InvoiceDoc;

pub const CSV_HEADER: &[&str] = &[
    "document_number",
    "type_code",
    "issue_date",
    "due_date",
    "tenant_id",
    "buyer_name",
    "buyer_vat_id",
    "buyer_reference",
    "period",
    "currency",
    "vat_category",
    "vat_rate",
    "document_net",
    "document_vat",
    "document_gross",
    "corrects",
    "line_no",
    "line_period",
    "late",
    "charge_kind",
    "sku",
    "project",
    "tier",
    "contract_id",
    "description",
    "gpu_seconds",
    "quantity",
    "unit",
    "unit_price",
    "line_net",
];

/// Text from outside (names, references, projects) that a spreadsheet would run as a formula is
/// prefixed with an apostrophe (OWASP CSV injection). Figures we format ourselves are left as numbers.
pub fn escape_cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '|' | '%') => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// One CSV of many documents (RFC 4180, comma, CRLF, quoted where needed).
pub fn csv(docs: &[InvoiceDoc]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(CSV_HEADER).expect("write to memory");
    for d in docs {
        for l in &d.lines {
            let rate = d.vat.rate.map(|r| r.to_string()).unwrap_or_default();
            let record = [
                escape_cell(&d.number),
                d.type_code.to_string(),
                d.issue_date.to_string(),
                d.due_date.to_string(),
                escape_cell(&d.tenant_id),
                escape_cell(&d.buyer.legal_name),
                escape_cell(d.buyer.vat_id.as_deref().unwrap_or("")),
                escape_cell(&d.buyer.buyer_reference),
                d.period.to_string(),
                d.currency.clone(),
                d.vat.category.clone(),
                rate,
                d.net_total.to_string(),
                d.vat_total.to_string(),
                d.gross_total.to_string(),
                d.corrects.as_ref().map(|c| escape_cell(&c.number)).unwrap_or_default(),
                l.line_no.to_string(),
                l.period.to_string(),
                l.late.to_string(),
                serde_json::to_value(l.charge.kind).expect("kind").as_str().unwrap_or_default().to_string(),
                escape_cell(&l.charge.sku),
                escape_cell(l.charge.project.as_deref().unwrap_or("")),
                l.charge.tier.to_string(),
                escape_cell(l.charge.contract_id.as_deref().unwrap_or("")),
                escape_cell(&l.description),
                l.gpu_seconds.to_string(),
                l.quantity.to_string(),
                l.unit.clone(),
                l.unit_price.to_string(),
                l.net.to_string(),
            ];
            w.write_record(&record).expect("write to memory");
        }
    }
    w.into_inner().expect("flush to memory")
}

/// The documents as one JSON array (each the canonical document), pretty-printed, newline-terminated.
pub fn json(docs: &[InvoiceDoc]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = docs.iter().map(InvoiceDoc::to_json).collect();
    let mut out = serde_json::to_vec_pretty(&values).expect("json");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_looking_text_is_escaped() {
        assert_eq!(escape_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(escape_cell("+49 30"), "'+49 30");
        assert_eq!(escape_cell("-1+1"), "'-1+1");
        assert_eq!(escape_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(escape_cell("ACME GmbH"), "ACME GmbH");
    }
}
