//! FOCUS 1.2 cost-and-usage CSV per tenant and month.
//!
//! One row per document line and one tax row per document, for the documents (invoices and
//! credit notes) issued for one tenant at the close of one billing period; the caller picks them.
//!
//! How our charges map onto FOCUS (checked against the FOCUS 1.2 columns and the "Discount
//! Handling" attribute and commitment-discount examples of the specification):
//!
//! - Every line is GPU time consumed or its price: `ChargeCategory` "Usage", "Usage-Based".
//!   A list-price line is `PricingCategory` "Standard" at its tier's price.
//! - A contract is a usage-based commitment discount (`CommitmentDiscountId` = contract id,
//!   category "Usage", unit GPU-hours, type [`COMMITMENT_TYPE`]). Its commitment lines are
//!   "Committed" usage with status "Used"; its minimum top-up (the unused part, take-or-pay) is the
//!   spec's "Unused" usage row: the unused GPU-hours as commitment and pricing quantity, nothing
//!   consumed. Overage is outside the commitment ("Standard", no commitment columns), as in the
//!   spec's example of usage beyond a commitment.
//! - A contract's percentage discount is a negotiated discount, which FOCUS applies to the rows it
//!   pertains to rather than negating it in a row of its own: the invoice's discount line is split
//!   over its contract's rows of that period to the cent ([`fold_discounts`]), so the rows of a
//!   document still add up to it; `ContractedUnitPrice` is the contract rate less the discount.
//! - `ListUnitPrice` and `ListCost` come from the published price list: the price-list amount of the
//!   line's GPU-hours, tier by tier, in force at each hour, as rating recorded it on the line
//!   (`InvoiceLine::list`); the unit price is the average where tiers or price lists changed within
//!   the line. The unused part of a commitment uses no GPU and has no list price of its own; its
//!   list price is the committed rate (as in the spec's SaaS example of a monthly unused fee).
//! - Late lines on an invoice and every line of a credit note are `Correction`s, charged in the
//!   period of the usage they correct. A credit note credits: its amounts and quantities are
//!   negated, so that the rows of all documents add up to what the tenant owes. A correction's list
//!   cost is its billed cost (FOCUS allows discrepancies on corrections), and a discount difference
//!   stays a row of its own (a correction of the usage's price, with no quantity).
//! - Each document has one `Tax` row of its VAT (0.00 for reverse charge and not taxable, so that
//!   every document has one), negated for a credit note. So per `InvoiceId` the `BilledCost`s add
//!   up to the document's gross total (negated for a credit note). Its list cost is the rate on the
//!   rows' list costs.
//! - `EffectiveCost` and `ContractedCost` are the billed cost (billed in arrears, nothing to
//!   amortize).
//! - Text from outside (names, descriptions, projects, ids) is escaped against CSV injection with
//!   [`escape_cell`]; figures are written as plain decimals (a negative amount stays a number).
//!   Null is an empty field. Date-times are UTC, `YYYY-MM-DDTHH:MM:SSZ`; the periods are Berlin
//!   calendar months, so they start at 22:00 or 23:00 UTC of the day before.

use super::export::escape_cell;
use super::invoice::{InvoiceDoc, InvoiceLine};
use super::period::Period;
use super::rating::LineKind;
use crate::money::Money;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// The FOCUS columns written: the 21 mandatory columns of FOCUS 1.2, then the recommended and
/// conditional ones that apply to us.
pub const FOCUS_COLUMNS: &[&str] = &[
    // Mandatory.
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
    // Recommended and conditional.
    "ChargeFrequency",
    "InvoiceId",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "PricingCategory",
    "RegionId",
    "RegionName",
    "ServiceSubcategory",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    // Conditional: we support commitment discounts (contracts).
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
];

/// Our own columns (FOCUS custom columns are prefixed `x_`), after all FOCUS columns.
pub const CUSTOM_COLUMNS: &[&str] = &[
    "x_InvoiceLineNumber",
    "x_DocumentType",
    "x_UsagePeriod",
    "x_LateUsage",
    "x_ContractId",
    "x_ChargeKind",
    "x_GpuSeconds",
    "x_TaxCategory",
    "x_TaxRate",
    "x_CorrectedInvoiceId",
];

/// The unit of every time quantity (FOCUS units: a count of hours of a GPU).
pub const GPU_HOURS: &str = "GPU-Hours";
pub const SERVICE_NAME: &str = "GPU Compute";
pub const SERVICE_CATEGORY: &str = "Compute";
pub const SERVICE_SUBCATEGORY: &str = "Other (Compute)";
pub const REGION_ID: &str = "de-sovereign-1";
pub const REGION_NAME: &str = "Germany (sovereign)";
pub const TAX_SERVICE_NAME: &str = "Value Added Tax";
/// CommitmentDiscountType: our one kind of commitment, GPU-hours per month of one SKU.
pub const COMMITMENT_TYPE: &str = "Committed GPU-Hours";

/// All columns in order: FOCUS, then custom.
pub fn header() -> impl Iterator<Item = &'static str> {
    FOCUS_COLUMNS.iter().chain(CUSTOM_COLUMNS).copied()
}

/// One CSV row under construction: every cell null until set.
struct Row(Vec<String>);

impl Row {
    fn new() -> Row {
        Row(vec![String::new(); FOCUS_COLUMNS.len() + CUSTOM_COLUMNS.len()])
    }

    fn set(&mut self, column: &str, value: impl Into<String>) {
        let i = header().position(|c| c == column).unwrap_or_else(|| panic!("{column} is not a column"));
        self.0[i] = value.into();
    }

    /// Text from outside: escaped against CSV injection.
    fn text(&mut self, column: &str, value: &str) {
        self.set(column, escape_cell(value));
    }

    fn number(&mut self, column: &str, value: Decimal) {
        self.set(column, value.to_string());
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `d` as it counts towards what was billed: negated on a credit note, never a negative zero.
fn signed(credit: bool, d: Decimal) -> Decimal {
    let mut r = if credit { -d } else { d };
    if r.is_zero() {
        r.set_sign_positive(true);
    }
    r
}

fn kind_name(kind: LineKind) -> String {
    serde_json::to_value(kind).expect("kind").as_str().unwrap_or_default().to_string()
}

/// The columns every row of a document shares.
fn common(doc: &InvoiceDoc, billing_period: Period) -> Row {
    let mut r = Row::new();
    r.text("BillingAccountId", &doc.tenant_id);
    r.text("BillingAccountName", &doc.buyer.legal_name);
    r.text("BillingCurrency", &doc.currency);
    r.set("BillingPeriodStart", instant(billing_period.start()));
    r.set("BillingPeriodEnd", instant(billing_period.end()));
    r.text("InvoiceIssuerName", &doc.seller.legal_name);
    r.text("ProviderName", &doc.seller.legal_name);
    r.text("PublisherName", &doc.seller.legal_name);
    r.text("InvoiceId", &doc.number);
    r.set("x_DocumentType", doc.type_code.to_string());
    r.set("x_TaxCategory", escape_cell(&doc.vat.category));
    if let Some(rate) = doc.vat.rate {
        r.number("x_TaxRate", rate);
    }
    if let Some(c) = &doc.corrects {
        r.text("x_CorrectedInvoiceId", &c.number);
    }
    r
}

/// How one document line becomes a row: its share of its contract's discount (folded into it),
/// and that discount's percentage.
#[derive(Debug, Clone, Copy, Default)]
struct Fold {
    share: Money,
    percent: Option<Decimal>,
}

/// The contract discounts of an invoice's own period, folded into the rows they reduce (FOCUS
/// discount handling: a discount is applied to each row it pertains to, not negated in a
/// separate row). Each discount line's amount, as the invoice rounded it, is split over the
/// commitment, overage and minimum top-up lines of its contract and period in proportion to
/// their nets, to the cent (largest remainder), so the rows still add up to the invoice. Returns
/// the folds per line index and the indices of the discount lines folded away. Late lines and
/// credit notes are corrections and keep their discount differences as rows of their own.
fn fold_discounts(doc: &InvoiceDoc) -> (BTreeMap<usize, Fold>, BTreeSet<usize>) {
    let mut folds = BTreeMap::new();
    let mut folded = BTreeSet::new();
    if doc.is_credit_note() {
        return (folds, folded);
    }
    for (di, d) in doc.lines.iter().enumerate().filter(|(_, l)| l.charge.kind == LineKind::Discount && !l.late) {
        let targets: Vec<usize> = doc
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                !l.late
                    && l.period == d.period
                    && l.charge.contract_id == d.charge.contract_id
                    && matches!(l.charge.kind, LineKind::Commitment | LineKind::Overage | LineKind::MinimumTopUp)
            })
            .map(|(i, _)| i)
            .collect();
        let base: Decimal = targets.iter().map(|&i| doc.lines[i].net.amount()).sum();
        if base <= Decimal::ZERO {
            continue;
        }
        let total = d.net.amount();
        let cent = Decimal::new(1, 2);
        let exact: Vec<Decimal> = targets.iter().map(|&i| total * doc.lines[i].net.amount() / base).collect();
        let mut shares: Vec<Decimal> = exact.iter().map(|e| (e / cent).trunc() * cent).collect();
        // The cents left over go to the largest remainders (ties: the earlier line).
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by(|&a, &b| (exact[b] - shares[b]).abs().cmp(&(exact[a] - shares[a]).abs()).then(a.cmp(&b)));
        let left = ((total - shares.iter().sum::<Decimal>()) / cent).round();
        let step = if left.is_sign_negative() { -cent } else { cent };
        for &j in order.iter().cycle().take(left.abs().try_into().unwrap_or(0usize)) {
            shares[j] += step;
        }
        for (&i, share) in targets.iter().zip(shares) {
            folds.insert(i, Fold { share: Money::new(share).round_cents(), percent: Some(d.charge.unit_price) });
        }
        folded.insert(di);
    }
    (folds, folded)
}

/// The commitment-discount columns of a contract's commitment line ("Used") or minimum top-up
/// ("Unused"); other rows have none (an overage is outside the commitment, FOCUS's scenario of
/// usage beyond a commitment).
fn commitment_columns(r: &mut Row, line: &InvoiceLine, hours: Decimal) {
    let status = match line.charge.kind {
        LineKind::Commitment => "Used",
        LineKind::MinimumTopUp => "Unused",
        _ => return,
    };
    let Some(id) = &line.charge.contract_id else { return };
    r.text("CommitmentDiscountId", id);
    r.text("CommitmentDiscountName", &format!("Contract {id}: committed GPU-hours of {}", line.charge.sku));
    r.set("CommitmentDiscountCategory", "Usage");
    r.set("CommitmentDiscountType", COMMITMENT_TYPE);
    r.set("CommitmentDiscountStatus", status);
    r.number("CommitmentDiscountQuantity", hours);
    r.set("CommitmentDiscountUnit", GPU_HOURS);
}

/// A line's row; its `BilledCost` (with any folded discount) and `ListCost`, as they count.
fn line_row(doc: &InvoiceDoc, line: &InvoiceLine, billing_period: Period, fold: Fold) -> (Row, Decimal) {
    let credit = doc.is_credit_note();
    let correction = credit || line.late;
    let key = &line.charge;
    let mut r = common(doc, billing_period);
    let net = signed(credit, (line.net + fold.share).amount());
    for cost in ["BilledCost", "EffectiveCost", "ContractedCost"] {
        r.number(cost, net);
    }
    // The list cost from the published price list, recorded at issue; a correction's, and a line
    // issued before it was recorded, is its billed cost (FOCUS: discrepancies may exist for
    // corrections; a row without a list unit price has its billed cost as list cost).
    let list = line.list.filter(|_| !correction);
    let list_cost = list.map_or(net, |l| signed(credit, l.cost.amount()));
    r.number("ListCost", list_cost);
    // Everything is GPU time consumed, or its price: FOCUS "Usage" (a discount correction
    // corrects the price of usage). The unused part of a commitment is "Usage" too, marked
    // "Unused" in the commitment columns.
    r.set("ChargeCategory", "Usage");
    r.set("ChargeFrequency", "Usage-Based");
    if correction {
        r.set("ChargeClass", "Correction");
    }
    let mut description = line.description.clone();
    if let (Some(p), false) = (fold.percent, fold.share.is_zero()) {
        description.push_str(&format!(", less the contract's {} % discount ({} EUR)", p.normalize(), fold.share));
    }
    r.text("ChargeDescription", &description);
    r.set("ChargePeriodStart", instant(line.period.start()));
    r.set("ChargePeriodEnd", instant(line.period.end()));
    r.set("ServiceCategory", SERVICE_CATEGORY);
    r.set("ServiceSubcategory", SERVICE_SUBCATEGORY);
    r.set("ServiceName", SERVICE_NAME);
    r.set("RegionId", REGION_ID);
    r.set("RegionName", REGION_NAME);
    if key.kind != LineKind::Discount {
        let hours = signed(credit, line.quantity);
        r.number("PricingQuantity", hours);
        r.set("PricingUnit", GPU_HOURS);
        if key.kind != LineKind::MinimumTopUp {
            r.number("ConsumedQuantity", hours);
            r.set("ConsumedUnit", GPU_HOURS);
        }
        // A list-price line's unit price is its tier's list price; a contract line's list price
        // is recorded with it (old documents: none).
        let list_unit = match (list, key.kind) {
            (Some(l), _) => Some(l.unit_price),
            (None, LineKind::Usage) => Some(line.unit_price.value()),
            (None, _) => None,
        };
        if let Some(u) = list_unit {
            r.number("ListUnitPrice", u);
        }
        let contracted = match fold.percent {
            Some(p) => (line.unit_price.value() * (Decimal::ONE_HUNDRED - p) / Decimal::ONE_HUNDRED).normalize(),
            None => line.unit_price.value(),
        };
        r.number("ContractedUnitPrice", contracted);
        let category = match key.kind {
            LineKind::Commitment | LineKind::MinimumTopUp => "Committed",
            _ => "Standard",
        };
        r.set("PricingCategory", category);
        r.text("SkuId", &key.sku);
        r.text("SkuPriceId", &format!("{}:{}:{}:{}", key.sku, kind_name(key.kind), key.tier, key.unit_price));
        commitment_columns(&mut r, line, hours);
    }
    if let Some(p) = &key.project {
        r.text("SubAccountId", p);
        r.text("SubAccountName", p);
    }
    r.set("x_InvoiceLineNumber", line.line_no.to_string());
    r.set("x_UsagePeriod", line.period.to_string());
    r.set("x_LateUsage", line.late.to_string());
    if let Some(c) = &key.contract_id {
        r.text("x_ContractId", c);
    }
    r.set("x_ChargeKind", kind_name(key.kind));
    r.number("x_GpuSeconds", signed(credit, line.gpu_seconds));
    (r, list_cost)
}

/// The document's VAT row. Its list cost is the VAT rate on the rows' list costs (FOCUS: a
/// charge computed from other charges takes its list cost from theirs).
fn tax_row(doc: &InvoiceDoc, billing_period: Period, list_base: Decimal) -> Row {
    let credit = doc.is_credit_note();
    let mut r = common(doc, billing_period);
    let vat = signed(credit, doc.vat_total.amount());
    for cost in ["BilledCost", "EffectiveCost", "ContractedCost"] {
        r.number(cost, vat);
    }
    let list_vat = Money::new(list_base).percent(doc.vat.rate.unwrap_or(Decimal::ZERO)).round_cents().amount();
    r.number("ListCost", signed(credit, list_vat));
    r.set("ChargeCategory", "Tax");
    if credit {
        r.set("ChargeClass", "Correction");
    }
    r.set("ChargeFrequency", "One-Time");
    let rate = match doc.vat.rate {
        Some(rate) => format!("rate {rate} %"),
        None => "no rate".to_string(),
    };
    let mut description = format!("Value added tax, category {}, {rate}", doc.vat.category);
    if let Some(reason) = &doc.vat.exemption_reason {
        description.push_str(": ");
        description.push_str(reason);
    }
    r.text("ChargeDescription", &description);
    r.set("ChargePeriodStart", instant(doc.period.start()));
    r.set("ChargePeriodEnd", instant(doc.period.end()));
    r.set("ServiceCategory", "Other");
    r.set("ServiceSubcategory", "Other (Other)");
    r.set("ServiceName", TAX_SERVICE_NAME);
    r
}

/// The FOCUS 1.2 CSV of the documents issued for one tenant at the close of `billing_period`
/// (RFC 4180, comma, CRLF, quoted where needed): each document's lines, then its tax row.
pub fn focus_csv(docs: &[InvoiceDoc], billing_period: Period) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(header()).expect("write to memory");
    for d in docs {
        let (folds, folded) = fold_discounts(d);
        let mut list_base = Decimal::ZERO;
        for (i, l) in d.lines.iter().enumerate().filter(|(i, _)| !folded.contains(i)) {
            let (row, list_cost) = line_row(d, l, billing_period, folds.get(&i).copied().unwrap_or_default());
            list_base += list_cost;
            w.write_record(&row.0).expect("write to memory");
        }
        w.write_record(&tax_row(d, billing_period, list_base).0).expect("write to memory");
    }
    w.into_inner().expect("flush to memory")
}

/// The sum of `BilledCost` per `InvoiceId` of a FOCUS CSV written by [`focus_csv`] (rows without
/// a cost are skipped). Panics when the CSV has no such columns or a cost is not a plain decimal.
pub fn billed_cost_by_invoice(csv: &[u8]) -> BTreeMap<String, Decimal> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
    let headers = r.headers().expect("a header row").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (invoice, cost) = (column("InvoiceId"), column("BilledCost"));
    let mut out = BTreeMap::<String, Decimal>::new();
    for record in r.records() {
        let record = record.expect("a CSV record");
        let text = record.get(cost).unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        let amount = super::dec::parse(text).unwrap_or_else(|e| panic!("BilledCost: {e}"));
        *out.entry(record.get(invoice).unwrap_or_default().to_string()).or_default() += amount;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::close::{plan_close, CloseInput};
    use crate::billing::invoice::TYPE_CREDIT_NOTE;
    use crate::billing::rating::UsageRow;
    use crate::billing::reference::{
        BillingProfile, Contract, PriceList, PriceTier, Reference, ReferenceState, Seller, VatTreatment,
    };
    use chrono::TimeZone;
    use std::collections::BTreeSet;
    use uuid::Uuid;

    const MANDATORY: &[&str] = &[
        "BilledCost",
        "BillingAccountId",
        "BillingAccountName",
        "BillingCurrency",
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "ChargeCategory",
        "ChargeClass",
        "ChargeDescription",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "ContractedCost",
        "EffectiveCost",
        "InvoiceIssuerName",
        "ListCost",
        "PricingQuantity",
        "PricingUnit",
        "ProviderName",
        "PublisherName",
        "ServiceCategory",
        "ServiceName",
    ];

    const TENANT: &str = "acme";
    const HOSTILE_PROJECT: &str = "=cmd|' /C calc'!A0";

    fn d(s: &str) -> Decimal {
        crate::billing::dec::parse(s).unwrap()
    }

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    fn refs() -> ReferenceState {
        let mut refs = ReferenceState::default();
        let seller = Seller {
            legal_name: "GPU Sovereign Cloud GmbH".into(),
            street: "Friedrichstraße 1".into(),
            city: "Berlin".into(),
            postal_code: "10117".into(),
            country: "DE".into(),
            vat_id: "DE123456789".into(),
            tax_number: "30/123/45678".into(),
            contact_name: "Billing".into(),
            contact_phone: "+49 30 123456".into(),
            contact_email: "billing@example.com".into(),
            electronic_address: "billing@example.com".into(),
            iban: "DE89370400440532013000".into(),
            series_prefix: "GL".into(),
            registered_office: Some("München".into()),
            register_court: Some("Amtsgericht Charlottenburg".into()),
            register_number: Some("HRB 12345 B".into()),
            managing_directors: vec!["Anna Schmidt".into()],
        };
        let list = |sku: &str, tiers: &[(&str, &str)]| PriceList {
            sku: sku.into(),
            effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            currency: "EUR".into(),
            tiers: tiers
                .iter()
                .map(|(from, price)| PriceTier { from_gpu_hours: d(from), eur_per_gpu_hour: d(price) })
                .collect(),
        };
        let prices = list("nvidia-h100-sxm", &[("0", "2.50"), ("100", "2.00")]);
        // The published prices of the contracted SKUs: B200's second tier starts within the
        // commitment of 50 GPU-hours.
        let b200 = list("nvidia-b200", &[("0", "4.90"), ("40", "4.60")]);
        let gb200 = list("nvidia-gb200", &[("0", "6.50")]);
        let profile = BillingProfile {
            tenant_id: TENANT.into(),
            legal_name: "=HYPERLINK(\"http://evil.example\",\"ACME\")".into(),
            street: "Hauptstraße 5".into(),
            city: "München".into(),
            postal_code: "80331".into(),
            country: "DE".into(),
            vat_id: Some("DE987654321".into()),
            vat_treatment: VatTreatment::Domestic,
            buyer_reference: "ACME-PO-1".into(),
            payment_terms_days: 14,
            invoice_email: "ap@acme.example".into(),
            lines_by_project: true,
        };
        let contract = |id: &str, sku: &str, hours: &str, rate: &str, over: &str, discount: &str| Contract {
            contract_id: id.into(),
            tenant_id: TENANT.into(),
            sku: sku.into(),
            committed_gpu_hours_per_month: d(hours),
            committed_eur_per_gpu_hour: d(rate),
            overage_eur_per_gpu_hour: d(over),
            discount_percent: d(discount),
            start_month: p("2026-11"),
            end_month: p("2026-12"),
        };
        for r in [
            Reference::Seller(seller),
            Reference::PriceList(prices),
            Reference::PriceList(b200),
            Reference::PriceList(gb200),
            Reference::Profile(profile),
            Reference::Contract(contract("C-B200", "nvidia-b200", "50", "4.00", "5.00", "10")),
            Reference::Contract(contract("C-GB200", "nvidia-gb200", "100", "6.00", "7.00", "0")),
        ] {
            let data = r.data();
            let r = Reference::parse(r.kind(), &data).expect("valid reference");
            refs.apply(r, Uuid::nil());
        }
        refs
    }

    fn row(sku: &str, project: &str, period: Period, hour: u32, gpu_hours: i64) -> UsageRow {
        UsageRow {
            sku: sku.into(),
            project: project.into(),
            hour: period.start() + chrono::Duration::hours(i64::from(hour)),
            gpu_seconds: Decimal::from(gpu_hours * 3600),
        }
    }

    /// Closes September, October and November 2026. By November's close, 6 of September's 10
    /// GPU-hours were taken back (a credit note) and 5 GPU-hours of October arrived late (late
    /// lines on November's invoice). Returns November's documents.
    fn november_documents() -> Vec<InvoiceDoc> {
        let (sep, oct, nov) = (p("2026-09"), p("2026-10"), p("2026-11"));
        let mut input = CloseInput { refs: refs(), ..CloseInput::default() };
        let h100 = "nvidia-h100-sxm";
        let usage = input.usage.entry(TENANT.into()).or_default();
        usage.insert(sep, vec![row(h100, "train", sep, 3, 10)]);
        usage.insert(oct, vec![row(h100, "train", oct, 3, 10)]);
        for (period, day) in [(sep, 1), (oct, 2)] {
            let issued_at = period.end() + chrono::Duration::days(day);
            let docs = plan_close(period, issued_at, Uuid::nil(), &input).unwrap();
            input.issued.extend(docs);
            input.closed.insert(period);
        }
        let usage = input.usage.get_mut(TENANT).unwrap();
        usage.insert(sep, vec![row(h100, "train", sep, 3, 4)]);
        usage.insert(oct, vec![row(h100, "train", oct, 3, 10), row(h100, "train", oct, 4, 5)]);
        usage.insert(
            nov,
            vec![
                // 120 GPU-hours of H100 in one hour: tier 1 to 100, tier 2 beyond.
                row(h100, HOSTILE_PROJECT, nov, 10, 60),
                row(h100, "train", nov, 10, 60),
                // 60 of 50 committed GPU-hours of B200: commitment and overage, 10 % discount.
                row("nvidia-b200", "train", nov, 11, 60),
                // 10 of 100 committed GPU-hours of GB200: a minimum top-up of 90.
                row("nvidia-gb200", "train", nov, 12, 10),
            ],
        );
        input.recheck = Some(BTreeSet::from([(TENANT.to_string(), sep), (TENANT.to_string(), oct)]));
        plan_close(nov, nov.end() + chrono::Duration::days(1), Uuid::nil(), &input).unwrap()
    }

    type Rows = Vec<BTreeMap<String, String>>;

    fn parse(csv: &[u8]) -> (Vec<String>, Rows) {
        let mut r = csv::ReaderBuilder::new().from_reader(csv);
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        let rows = r
            .records()
            .map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(String::from)).collect())
            .collect();
        (header, rows)
    }

    fn focus() -> (Vec<InvoiceDoc>, Vec<u8>) {
        let docs = november_documents();
        let csv = focus_csv(&docs, p("2026-11"));
        (docs, csv)
    }

    #[test]
    fn the_scenario_has_every_kind_of_line() {
        let docs = november_documents();
        assert_eq!(docs.len(), 2, "{docs:#?}");
        assert!(!docs[0].is_credit_note() && docs[1].is_credit_note());
        let kinds: BTreeSet<LineKind> = docs[0].lines.iter().map(|l| l.charge.kind).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert!(docs[0].lines.iter().any(|l| l.late && l.period == p("2026-10")));
        assert!(docs[0].lines.iter().any(|l| l.charge.tier == 2));
        assert_eq!(docs[1].period, p("2026-09"));
        assert_eq!(docs[1].gross_total.amount(), d("17.85"));
    }

    #[test]
    fn header_has_every_mandatory_column_and_custom_columns_last() {
        let (_, csv) = focus();
        let (header, rows) = parse(&csv);
        for c in MANDATORY {
            assert!(header.iter().any(|h| h == c), "missing {c}");
        }
        let first_custom = header.iter().position(|h| h.starts_with("x_")).unwrap();
        assert!(header[..first_custom].iter().all(|h| !h.starts_with("x_")));
        assert!(header[first_custom..].iter().all(|h| h.starts_with("x_")));
        assert_eq!(header.len(), FOCUS_COLUMNS.len() + CUSTOM_COLUMNS.len());
        assert_eq!(header.iter().collect::<BTreeSet<_>>().len(), header.len(), "duplicate columns");
        assert!(csv.windows(2).any(|w| w == b"\r\n"));
        assert!(rows.iter().all(|r| r["BillingCurrency"] == "EUR"));
        assert!(rows.iter().all(|r| r["BillingPeriodStart"] == "2026-10-31T23:00:00Z"));
        assert!(rows.iter().all(|r| r["BillingPeriodEnd"] == "2026-11-30T23:00:00Z"));
        assert!(rows.iter().all(|r| r["ProviderName"] == "GPU Sovereign Cloud GmbH"));
    }

    #[test]
    fn billed_cost_per_invoice_is_the_gross_total() {
        let (docs, csv) = focus();
        let sums = billed_cost_by_invoice(&csv);
        assert_eq!(sums.len(), docs.len());
        for doc in &docs {
            assert_eq!(sums[&doc.number], (doc.sign() * doc.gross_total).amount(), "{}", doc.number);
        }
        let (_, rows) = parse(&csv);
        // One row per line and a tax row per document, less the one discount folded into its rows.
        let lines: usize = docs.iter().map(|d| d.lines.len() + 1).sum();
        assert_eq!(rows.len(), lines - 1);
        for r in &rows {
            for c in ["EffectiveCost", "ContractedCost"] {
                assert_eq!(r[c], r["BilledCost"], "{c}");
            }
        }
    }

    #[test]
    fn rows_follow_the_charge_kind() {
        let (docs, csv) = focus();
        let (_, rows) = parse(&csv);
        let invoice = &docs[0];
        let of_kind = |kind: &str| -> Vec<&BTreeMap<String, String>> {
            rows.iter().filter(|r| r["x_ChargeKind"] == kind && r["InvoiceId"] == invoice.number).collect()
        };
        for kind in ["usage", "commitment", "overage", "minimum_top_up"] {
            for r in of_kind(kind) {
                assert_eq!(r["ChargeCategory"], "Usage", "{kind}");
                assert_eq!(r["ChargeFrequency"], "Usage-Based");
                assert_eq!(r["PricingUnit"], GPU_HOURS);
                assert!(r["SkuPriceId"].starts_with(&format!("{}:{kind}:", r["SkuId"])), "{}", r["SkuPriceId"]);
                if kind != "minimum_top_up" {
                    assert_eq!(r["ConsumedQuantity"], r["PricingQuantity"]);
                    assert_eq!(r["ConsumedUnit"], GPU_HOURS);
                    assert!(!r["SubAccountId"].is_empty());
                }
            }
        }
        // List price: a list-price line's is its tier's, and nothing is taken off it.
        for r in of_kind("usage").into_iter().filter(|r| r["x_LateUsage"] == "false") {
            assert_eq!(r["PricingCategory"], "Standard");
            assert_eq!(d(&r["ListUnitPrice"]), d(&r["ContractedUnitPrice"]));
            assert_eq!(r["ListCost"], r["BilledCost"]);
            assert_eq!(r["CommitmentDiscountId"], "");
        }
        // 60 of 50 committed GPU-hours of B200 at 4.00 and 5.00, 10 % discount: the published
        // list prices are 4.90 up to 40 GPU-hours, 4.60 beyond.
        let commitment = of_kind("commitment");
        assert_eq!(commitment.len(), 2);
        let b200 = commitment.iter().find(|r| r["x_ContractId"] == "C-B200").unwrap();
        assert_eq!(b200["PricingCategory"], "Committed");
        assert_eq!(b200["PricingQuantity"], "50.000000");
        assert_eq!(b200["ListCost"], "242.00", "40 h × 4.90 + 10 h × 4.60");
        assert_eq!(b200["ListUnitPrice"], "4.84");
        // Its net of 200.00 less its share of the discount (200 / 250 of 25.00).
        assert_eq!(b200["BilledCost"], "180.00");
        assert_eq!(b200["ContractedUnitPrice"], "3.6", "4.00 less 10 %");
        assert!(
            b200["ChargeDescription"].ends_with("less the contract's 10 % discount (-20.00 EUR)"),
            "{}",
            b200["ChargeDescription"]
        );
        let expected = [
            ("CommitmentDiscountId", "C-B200"),
            ("CommitmentDiscountName", "Contract C-B200: committed GPU-hours of nvidia-b200"),
            ("CommitmentDiscountCategory", "Usage"),
            ("CommitmentDiscountType", COMMITMENT_TYPE),
            ("CommitmentDiscountStatus", "Used"),
            ("CommitmentDiscountQuantity", "50.000000"),
            ("CommitmentDiscountUnit", GPU_HOURS),
        ];
        for (c, v) in expected {
            assert_eq!(b200[c], v, "{c}");
        }
        let gb200 = commitment.iter().find(|r| r["x_ContractId"] == "C-GB200").unwrap();
        assert_eq!((gb200["ListUnitPrice"].as_str(), gb200["ListCost"].as_str()), ("6.50", "65.00"));
        assert_eq!((gb200["ContractedUnitPrice"].as_str(), gb200["BilledCost"].as_str()), ("6.0000", "60.00"));
        // The overage is outside the commitment: standard pricing at the contract's rate.
        let overage = of_kind("overage");
        assert_eq!(overage.len(), 1);
        let o = overage[0];
        assert_eq!((o["PricingQuantity"].as_str(), o["BilledCost"].as_str()), ("10.000000", "45.00"));
        assert_eq!((o["ListUnitPrice"].as_str(), o["ListCost"].as_str()), ("4.60", "46.00"));
        assert_eq!((o["PricingCategory"].as_str(), o["CommitmentDiscountId"].as_str()), ("Standard", ""));
        assert_eq!(o["ContractedUnitPrice"], "4.5");
        // The unused commitment: FOCUS's "Unused" usage row, nothing consumed.
        let top_up = of_kind("minimum_top_up");
        assert_eq!(top_up.len(), 1);
        let t = top_up[0];
        assert_eq!((t["ConsumedQuantity"].as_str(), t["ConsumedUnit"].as_str()), ("", ""));
        assert_eq!((t["PricingQuantity"].as_str(), t["PricingCategory"].as_str()), ("90.000000", "Committed"));
        assert_eq!(
            (t["CommitmentDiscountStatus"].as_str(), t["CommitmentDiscountQuantity"].as_str()),
            ("Unused", "90.000000")
        );
        assert_eq!(t["CommitmentDiscountId"], "C-GB200");
        assert_eq!((t["ListUnitPrice"].as_str(), t["ContractedUnitPrice"].as_str()), ("6.00", "6.0000"));
        assert_eq!((t["BilledCost"].as_str(), t["ListCost"].as_str()), ("540.00", "540.00"));
        // The discount is folded into the rows it reduces: no row of its own, and the invoice's
        // rows still add up to it.
        assert!(of_kind("discount").is_empty());
        let contract: Decimal = rows
            .iter()
            .filter(|r| r["x_ContractId"] == "C-B200" && r["InvoiceId"] == invoice.number)
            .map(|r| d(&r["BilledCost"]))
            .sum();
        assert_eq!(contract, d("225.00"), "200.00 + 50.00 - 25.00");
        // Tiers: 100 GPU-hours at 2.50 (60 + 40 over two projects), 20 at 2.00.
        let tier2: Vec<_> = of_kind("usage").into_iter().filter(|r| r["ListUnitPrice"] == "2.00").collect();
        assert_eq!(tier2.len(), 1);
        assert_eq!(tier2[0]["PricingQuantity"], "20.000000");
        assert_eq!(tier2[0]["SkuPriceId"], "nvidia-h100-sxm:usage:2:2.00");
    }

    /// FOCUS 1.2's rules that one row can break, on every row.
    #[test]
    fn every_row_keeps_the_focus_rules() {
        let (_, csv) = focus();
        let (_, rows) = parse(&csv);
        let allowed = |c: &str, v: &str, values: &[&str]| assert!(v.is_empty() || values.contains(&v), "{c}: {v}");
        for r in &rows {
            let correction = r["ChargeClass"] == "Correction";
            let usage = r["ChargeCategory"] == "Usage";
            allowed("ChargeCategory", &r["ChargeCategory"], &["Usage", "Purchase", "Tax", "Credit", "Adjustment"]);
            allowed("PricingCategory", &r["PricingCategory"], &["Standard", "Dynamic", "Committed", "Other"]);
            allowed("CommitmentDiscountStatus", &r["CommitmentDiscountStatus"], &["Used", "Unused"]);
            allowed("CommitmentDiscountCategory", &r["CommitmentDiscountCategory"], &["Spend", "Usage"]);
            assert!(!r["ListCost"].is_empty(), "ListCost is never null");
            let id = !r["CommitmentDiscountId"].is_empty();
            for c in ["CommitmentDiscountCategory", "CommitmentDiscountType", "CommitmentDiscountName"] {
                assert_eq!(id, !r[c].is_empty(), "{c} null exactly when CommitmentDiscountId is: {r:?}");
            }
            if usage && !correction {
                for c in ["ListUnitPrice", "ContractedUnitPrice", "PricingCategory"] {
                    assert!(!r[c].is_empty(), "{c} not null on a usage row: {r:?}");
                }
                // List unit price × pricing quantity is the list cost (to the cent).
                let list = d(&r["ListUnitPrice"]) * d(&r["PricingQuantity"]);
                assert!((list - d(&r["ListCost"])).abs() < d("0.01"), "{r:?}");
                assert!(d(&r["ListCost"]) >= d(&r["BilledCost"]) || r["PricingCategory"] == "Committed", "{r:?}");
            }
            if usage && id {
                assert!(!r["CommitmentDiscountStatus"].is_empty());
                assert_eq!(r["PricingCategory"], "Committed");
                if !correction {
                    assert!(!r["CommitmentDiscountQuantity"].is_empty() && !r["CommitmentDiscountUnit"].is_empty());
                }
            }
            if r["ChargeCategory"] == "Tax" {
                for c in ["ListUnitPrice", "ContractedUnitPrice", "PricingCategory", "CommitmentDiscountId"] {
                    assert_eq!(r[c], "", "{c}");
                }
            }
        }
    }

    #[test]
    fn late_lines_and_credit_notes_are_corrections_in_their_usage_period() {
        let (docs, csv) = focus();
        let (_, rows) = parse(&csv);
        let (invoice, credit) = (&docs[0], &docs[1]);
        assert_eq!(credit.type_code, TYPE_CREDIT_NOTE);
        let oct = p("2026-10");
        for r in rows.iter().filter(|r| r["InvoiceId"] == invoice.number && r["ChargeCategory"] != "Tax") {
            if r["x_LateUsage"] == "true" {
                assert_eq!(r["ChargeClass"], "Correction");
                assert_eq!(r["ChargePeriodStart"], instant(oct.start()));
                assert_eq!(r["ChargePeriodEnd"], instant(oct.end()));
                assert_eq!(r["x_UsagePeriod"], "2026-10");
                assert_eq!(r["BilledCost"], "12.50");
            } else {
                assert_eq!(r["ChargeClass"], "");
                assert_eq!(r["ChargePeriodStart"], "2026-10-31T23:00:00Z");
            }
            assert_eq!(r["x_DocumentType"], "380");
            assert_eq!(r["x_CorrectedInvoiceId"], "");
        }
        let credited: Vec<_> = rows.iter().filter(|r| r["InvoiceId"] == credit.number).collect();
        assert_eq!(credited.len(), 2);
        let sep_invoice = credit.corrects.as_ref().unwrap().number.clone();
        for r in &credited {
            assert_eq!(r["ChargeClass"], "Correction");
            assert_eq!(r["x_DocumentType"], "381");
            assert_eq!(r["x_CorrectedInvoiceId"], sep_invoice);
            assert_eq!(r["ChargePeriodStart"], "2026-08-31T22:00:00Z");
        }
        let line = credited.iter().find(|r| r["ChargeCategory"] == "Usage").unwrap();
        assert_eq!(line["BilledCost"], "-15.00");
        assert_eq!(line["PricingQuantity"], "-6.000000");
        assert_eq!(line["ConsumedQuantity"], "-6.000000");
        assert_eq!(line["x_GpuSeconds"], "-21600");
        let tax = credited.iter().find(|r| r["ChargeCategory"] == "Tax").unwrap();
        assert_eq!(tax["BilledCost"], "-2.85");
    }

    #[test]
    fn tax_rows_have_no_pricing() {
        let (docs, csv) = focus();
        let (_, rows) = parse(&csv);
        let taxes: Vec<_> = rows.iter().filter(|r| r["ChargeCategory"] == "Tax").collect();
        assert_eq!(taxes.len(), docs.len());
        for (t, doc) in taxes.iter().zip(&docs) {
            assert_eq!(t["InvoiceId"], doc.number);
            assert_eq!(t["BilledCost"], (doc.sign() * doc.vat_total).to_string());
            assert_eq!(t["ChargeFrequency"], "One-Time");
            assert_eq!(t["ServiceCategory"], "Other");
            assert_eq!(t["ServiceName"], TAX_SERVICE_NAME);
            assert_eq!(t["ChargeDescription"], "Value added tax, category S, rate 19.00 %");
            assert_eq!((t["x_TaxCategory"].as_str(), t["x_TaxRate"].as_str()), ("S", "19.00"));
            for c in [
                "PricingQuantity",
                "PricingUnit",
                "ConsumedQuantity",
                "ConsumedUnit",
                "ListUnitPrice",
                "ContractedUnitPrice",
                "PricingCategory",
                "SkuId",
                "SkuPriceId",
                "SubAccountId",
                "x_ChargeKind",
                "CommitmentDiscountId",
                "CommitmentDiscountStatus",
            ] {
                assert_eq!(t[c], "", "{c}");
            }
        }
    }

    #[test]
    fn exempt_documents_still_have_a_zero_tax_row() {
        let mut docs = november_documents();
        let doc = &mut docs[0];
        let (vat, net, tax, gross) = crate::billing::invoice::totals(VatTreatment::NotTaxable, &doc.lines);
        (doc.vat, doc.net_total, doc.vat_total, doc.gross_total) = (vat, net, tax, gross);
        let csv = focus_csv(&docs[..1], p("2026-11"));
        let (_, rows) = parse(&csv);
        let t = rows.iter().find(|r| r["ChargeCategory"] == "Tax").unwrap();
        assert_eq!(t["BilledCost"], "0.00");
        assert!(t["ChargeDescription"].starts_with("Value added tax, category O, no rate: Not subject to VAT"));
        assert_eq!((t["x_TaxCategory"].as_str(), t["x_TaxRate"].as_str()), ("O", ""));
        assert_eq!(billed_cost_by_invoice(&csv)[&docs[0].number], docs[0].gross_total.amount());
    }

    #[test]
    fn text_cannot_become_a_formula() {
        let (_, csv) = focus();
        let (_, rows) = parse(&csv);
        let mut hostile = 0;
        for r in &rows {
            for (column, cell) in r {
                match cell.chars().next() {
                    Some('=' | '+' | '@' | '\t' | '\r' | '|' | '%') => panic!("{column}: {cell:?} is not escaped"),
                    Some('-') => assert!(crate::billing::dec::parse(cell).is_ok(), "{column}: {cell:?}"),
                    _ => {}
                }
            }
            assert!(r["BillingAccountName"].starts_with("'=HYPERLINK("));
            if r["SubAccountId"] == format!("'{HOSTILE_PROJECT}") {
                assert_eq!(r["SubAccountName"], r["SubAccountId"]);
                hostile += 1;
            }
        }
        assert_eq!(hostile, 1);
    }
}
