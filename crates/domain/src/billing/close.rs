//! Closing a period: which documents to issue, decided from the log alone.
//!
//! For every tenant with usage or a minimum charge in the period: an invoice of the period's
//! rated lines. For every earlier closed period whose usage changed since it was billed (late
//! usage, corrections): the difference between its rating now and what its documents billed,
//! line by line. Each difference still to bill (more GPU-seconds, or less discount) is a late line
//! on this period's invoice naming its period; each billed too much (fewer GPU-seconds, a smaller
//! minimum top-up, more discount) is a line of a credit note (381) referring to that period's
//! invoice. The two are never netted: an invoice's late lines and a credit note's lines are
//! all positive.
//! So for every period, the documents together always bill exactly the rating of all usage known
//! at the last close, each line rounded once.

use super::invoice::{
    billed_lines, make_line, totals, InvoiceDoc, InvoiceLine, InvoiceRef, ListPrice, TYPE_CREDIT_NOTE, TYPE_INVOICE,
};
use super::period::{berlin_date, Period};
use super::rating::{rate_period, LineKey, LineKind, RatedLines, RatingError, UsageRow};
use super::reference::{ReferenceState, VatTreatment};
use crate::money::Money;
use chrono::{DateTime, Days, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

pub const KIND_CLOSE: &str = "period.closed";
pub const CLOSE_VERSION: i16 = 1;

/// The `period.closed` event: when, over which prefix of the log (each stream's head position),
/// and which documents it issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRecord {
    pub period: Period,
    pub issued_at: DateTime<Utc>,
    /// Stream name (`topic/partition`) to the last stream position included.
    pub cut: BTreeMap<String, i64>,
    pub documents: Vec<String>,
}

/// Everything a close reads, as of its cut of the log.
#[derive(Debug, Clone, Default)]
pub struct CloseInput {
    pub refs: ReferenceState,
    /// Hourly usage per tenant and period: the closing period and the earlier closed periods to recheck.
    pub usage: BTreeMap<String, BTreeMap<Period, Vec<UsageRow>>>,
    /// Periods closed before.
    pub closed: BTreeSet<Period>,
    /// Every document issued before, in issue order.
    pub issued: Vec<InvoiceDoc>,
    /// The (tenant, earlier period) pairs to re-rate; `None`: all of them.
    pub recheck: Option<BTreeSet<(String, Period)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    #[error("period {0} is already closed")]
    AlreadyClosed(Period),
    #[error("no seller is recorded (load a seller.set event)")]
    NoSeller,
    #[error("tenants without a billing profile: {0:?}")]
    MissingProfiles(Vec<String>),
    #[error(transparent)]
    Rating(#[from] RatingError),
}

/// A tenant's usage of one SKU in one period: the grain at which a close notices changes.
pub type UsageKey = (String, Period, String);

/// GPU-seconds of usage (not minimum charges) that documents billed, per tenant, period and SKU.
pub fn billed_seconds(issued: &[InvoiceDoc]) -> BTreeMap<UsageKey, Decimal> {
    let mut out = BTreeMap::<UsageKey, Decimal>::new();
    for d in issued {
        for l in &d.lines {
            if matches!(l.charge.kind, LineKind::Usage | LineKind::Commitment | LineKind::Overage) {
                *out.entry((d.tenant_id.clone(), l.period, l.charge.sku.clone())).or_default() +=
                    d.sign() * l.gpu_seconds;
            }
        }
    }
    out
}

/// Which (tenant, closed period) pairs to re-rate: those where the usage of some SKU now differs
/// from what their documents billed for it. `usage_seconds` holds the GPU-seconds per tenant,
/// period and SKU of the earlier periods, as the hourly projection knows them at the cut.
/// (Known limit: a correction that only moves GPU-seconds between hours or projects of one SKU
/// and period, leaving its total unchanged, is not re-rated.)
pub fn recheck_set(
    usage_seconds: &BTreeMap<UsageKey, Decimal>,
    closed: &BTreeSet<Period>,
    issued: &[InvoiceDoc],
) -> BTreeSet<(String, Period)> {
    let billed = billed_seconds(issued);
    usage_seconds
        .keys()
        .chain(billed.keys())
        .filter(|(_, q, _)| closed.contains(q))
        .filter(|k| usage_seconds.get(*k).copied().unwrap_or_default() != billed.get(*k).copied().unwrap_or_default())
        .map(|(t, q, _)| (t.clone(), *q))
        .collect()
}

fn series_name(prefix: &str, credit: bool, period: Period) -> String {
    format!("{prefix}{}-{}", if credit { "C" } else { "" }, period.year())
}

/// The difference between a period's rating now and what was billed for it, per line:
/// (GPU-seconds, net) still to bill (negative: to credit). Zero lines are left out.
pub fn differences(rated: &RatedLines, billed: &BTreeMap<LineKey, (Decimal, Money)>) -> Vec<(LineKey, Decimal, Money)> {
    let keys: BTreeSet<&LineKey> = rated.keys().chain(billed.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (secs, net) = rated.get(k).map(|r| (r.gpu_seconds, r.net())).unwrap_or_default();
            let (bs, bn) = billed.get(k).copied().unwrap_or_default();
            let (ds, dn) = (secs - bs, (net - bn).round_cents());
            (!ds.is_zero() || !dn.is_zero()).then(|| (k.clone(), ds, dn))
        })
        .collect()
}

/// The documents a close of `period` issues, numbered on from the documents already issued.
pub fn plan_close(
    period: Period,
    issued_at: DateTime<Utc>,
    close_event_id: Uuid,
    input: &CloseInput,
) -> Result<Vec<InvoiceDoc>, CloseError> {
    if input.closed.contains(&period) {
        return Err(CloseError::AlreadyClosed(period));
    }
    let seller = input.refs.seller.as_ref().ok_or(CloseError::NoSeller)?;
    let tenants = tenants_to_bill(period, input)?;
    let empty = Vec::new();
    let mut invoices = Vec::new();
    let mut credits = Vec::new();
    for tenant in tenants {
        let (profile, profile_event) = &input.refs.profiles[tenant];
        let by_project = profile.lines_by_project;
        let usage = input.usage.get(tenant);
        let mut lines: Vec<InvoiceLine> = Vec::new();
        let current =
            rate_period(tenant, period, usage.and_then(|u| u.get(&period)).unwrap_or(&empty), &input.refs, by_project)?;
        for (key, secs, net) in differences(&current, &BTreeMap::new()) {
            let mut line = make_line(lines.len() as u32 + 1, period, false, "", &key, secs, net);
            line.list = current.get(&key).and_then(ListPrice::of);
            lines.push(line);
        }
        // Earlier closed periods: late usage and corrections.
        for &q in input.closed.range(..period) {
            if input.recheck.as_ref().is_some_and(|r| !r.contains(&(tenant.to_string(), q))) {
                continue;
            }
            let rows = usage.and_then(|u| u.get(&q)).unwrap_or(&empty);
            // Re-rated with the line layout the period was invoiced with.
            let first = input.issued.iter().find(|d| d.tenant_id == tenant && d.period == q && !d.is_credit_note());
            let layout = first.map_or(by_project, |d| d.buyer.lines_by_project);
            let rated = rate_period(tenant, q, rows, &input.refs, layout)?;
            let billed = billed_lines(input.issued.iter(), tenant, q);
            let diff = differences(&rated, &billed);
            if diff.is_empty() {
                continue;
            }
            // Line by line: what is still to bill goes on this period's invoice, what was billed
            // too much on a credit note; neither document carries a line of the other's sign.
            let (charges, credits_due): (Vec<_>, Vec<_>) = diff.into_iter().partition(|d| bills(d.1, d.2));
            for (key, secs, net) in charges {
                let prefix = match key.kind {
                    LineKind::Usage | LineKind::Commitment | LineKind::Overage => format!("Late usage of {q}: "),
                    LineKind::MinimumTopUp | LineKind::Discount => format!("Correction of {q}: "),
                };
                lines.push(make_line(lines.len() as u32 + 1, q, true, &prefix, &key, secs, net));
            }
            if !credits_due.is_empty() {
                credits.push(credit_note(tenant, q, period, issued_at, close_event_id, input, credits_due)?);
            }
        }
        if !lines.is_empty() {
            invoices.push(document(
                TYPE_INVOICE,
                tenant,
                period,
                issued_at,
                close_event_id,
                input,
                profile.vat_treatment,
                None,
                lines,
                profile_event,
            )?);
        }
    }
    Ok(number(&seller.series_prefix, period, issued_at, input, invoices, credits))
}

/// The tenants a close of `period` bills: those with usage and those with a contract covering it.
/// Every one of them needs a billing profile.
fn tenants_to_bill(period: Period, input: &CloseInput) -> Result<BTreeSet<&str>, CloseError> {
    let mut tenants: BTreeSet<&str> = input.usage.keys().map(String::as_str).collect();
    for c in input.refs.contracts.values().filter(|c| c.covers(period)) {
        tenants.insert(&c.tenant_id);
    }
    let missing: Vec<String> =
        tenants.iter().filter(|t| !input.refs.profiles.contains_key(**t)).map(|t| t.to_string()).collect();
    if !missing.is_empty() {
        return Err(CloseError::MissingProfiles(missing));
    }
    Ok(tenants)
}

/// Numbers and due dates: invoices first, then credit notes, each in tenant order, gapless per
/// series, numbered on from the documents already issued.
fn number(
    series_prefix: &str,
    period: Period,
    issued_at: DateTime<Utc>,
    input: &CloseInput,
    invoices: Vec<InvoiceDoc>,
    credits: Vec<InvoiceDoc>,
) -> Vec<InvoiceDoc> {
    let mut counters: BTreeMap<String, u32> = BTreeMap::new();
    for d in &input.issued {
        *counters.entry(d.series.clone()).or_default() += 1;
    }
    let issue_date = berlin_date(issued_at);
    let mut out = Vec::with_capacity(invoices.len() + credits.len());
    for mut d in invoices.into_iter().chain(credits) {
        let series = series_name(series_prefix, d.is_credit_note(), period);
        let n = counters.entry(series.clone()).or_default();
        *n += 1;
        d.number = format!("{series}-{n:06}");
        d.series = series;
        d.due_date = issue_date.checked_add_days(Days::new(u64::from(d.buyer.payment_terms_days))).expect("date");
        out.push(d);
    }
    out
}

/// Whether a difference (GPU-seconds, net) still to bill is a charge (to invoice) rather than a
/// credit: by its GPU-seconds, or by its net where it has none (a discount, whose net is
/// negative when the discount grows). A line's net never has the opposite sign of its GPU-seconds:
/// what was billed of a line is always the rounding of its billed GPU-seconds at its one price.
pub fn bills(secs: Decimal, net: Money) -> bool {
    if secs.is_zero() {
        !net.is_negative()
    } else {
        secs.is_sign_positive()
    }
}

/// The credit note of a tenant's earlier period `q`: the differences billed too much, credited
/// (positive), referring to the invoice that billed the period.
#[allow(clippy::too_many_arguments)]
fn credit_note(
    tenant: &str,
    q: Period,
    period: Period,
    issued_at: DateTime<Utc>,
    close_event_id: Uuid,
    input: &CloseInput,
    diff: Vec<(LineKey, Decimal, Money)>,
) -> Result<InvoiceDoc, CloseError> {
    let (profile, profile_event) = &input.refs.profiles[tenant];
    // The invoice that billed the period, or failing that the last document with its lines.
    let original =
        input.issued.iter().find(|d| d.tenant_id == tenant && d.period == q && !d.is_credit_note()).or_else(|| {
            input.issued.iter().rev().find(|d| d.tenant_id == tenant && d.lines.iter().any(|l| l.period == q))
        });
    let treatment = original.map_or(profile.vat_treatment, |o| o.vat_treatment);
    let credit_lines: Vec<InvoiceLine> = diff
        .iter()
        .enumerate()
        .map(|(i, (key, secs, net))| {
            make_line(i as u32 + 1, q, q != period, &format!("Correction of {q}: "), key, -*secs, -*net)
        })
        .collect();
    let mut credit = document(
        TYPE_CREDIT_NOTE,
        tenant,
        q,
        issued_at,
        close_event_id,
        input,
        treatment,
        original.map(|o| InvoiceRef { number: o.number.clone(), issue_date: o.issue_date }),
        credit_lines,
        profile_event,
    )?;
    // A credit note names the buyer as the invoice it corrects did.
    if let Some(o) = original {
        credit.buyer = o.buyer.clone();
        credit.buyer_profile_event = o.buyer_profile_event;
    }
    Ok(credit)
}

#[allow(clippy::too_many_arguments)]
fn document(
    type_code: u16,
    tenant: &str,
    period: Period,
    issued_at: DateTime<Utc>,
    close_event_id: Uuid,
    input: &CloseInput,
    treatment: VatTreatment,
    corrects: Option<InvoiceRef>,
    lines: Vec<InvoiceLine>,
    profile_event: &Uuid,
) -> Result<InvoiceDoc, CloseError> {
    let seller = input.refs.seller.clone().ok_or(CloseError::NoSeller)?;
    let buyer = input.refs.profiles[tenant].0.clone();
    let (vat, net_total, vat_total, gross_total) = totals(treatment, &lines);
    let mut notes = Vec::new();
    if let Some((reason, _)) = treatment.exemption() {
        notes.push(reason.to_string());
    }
    if lines.iter().any(|l| l.late) && type_code == TYPE_INVOICE {
        notes.push(
            "Lines marked late bill usage of an earlier period that reached the ledger after that period was invoiced."
                .to_string(),
        );
    }
    if let Some(c) = &corrects {
        notes.push(format!("Credit note correcting invoice {} of {}.", c.number, c.issue_date));
    }
    Ok(InvoiceDoc {
        number: String::new(),
        series: String::new(),
        type_code,
        tenant_id: tenant.to_string(),
        period,
        issued_at,
        issue_date: berlin_date(issued_at),
        due_date: berlin_date(issued_at),
        currency: "EUR".to_string(),
        seller,
        buyer,
        buyer_profile_event: *profile_event,
        vat_treatment: treatment,
        corrects,
        lines,
        vat,
        net_total,
        vat_total,
        gross_total,
        notes,
        close_event_id,
    })
}
