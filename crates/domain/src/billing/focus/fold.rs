//! Contract discounts folded into the rows they reduce.

use crate::billing::invoice::InvoiceDoc;
use crate::billing::rating::LineKind;
use crate::money::Money;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// How one document line becomes a row: its share of its contract's discount (folded into it),
/// and that discount's percentage.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Fold {
    pub(super) share: Money,
    pub(super) percent: Option<Decimal>,
}

/// The contract discounts of an invoice's own period, folded into the rows they reduce (FOCUS
/// discount handling: a discount is applied to each row it pertains to, not negated in a
/// separate row). Each discount line's amount, as the invoice rounded it, is split over the
/// commitment, overage and minimum top-up lines of its contract and period in proportion to
/// their nets, to the cent (largest remainder), so the rows still add up to the invoice. Returns
/// the folds per line index and the indices of the discount lines folded away. Late lines and
/// credit notes are corrections and keep their discount differences as rows of their own.
pub(super) fn fold_discounts(doc: &InvoiceDoc) -> (BTreeMap<usize, Fold>, BTreeSet<usize>) {
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
