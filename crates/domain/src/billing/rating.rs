//! Rating: from a tenant's hourly usage in one period to charge lines with exact amounts.
//!
//! Amounts are kept exact as `gpu_seconds × EUR per GPU-hour` (the numerator; the amount is that
//! divided by 3600) until a line is rounded to cents, once, half away from zero.
//!
//! - List prices: each hour is rated at the price list of its SKU in force at that hour, in the
//!   graduated tier that the tenant's cumulative GPU-hours of that SKU in the month have reached
//!   (hours in time order, projects in name order within an hour). An hour that crosses a tier
//!   boundary is split across the two tiers.
//! - A contract for the SKU in the period replaces the list price: GPU-hours up to the commitment
//!   at the committed rate, beyond it at the overage rate, an unused commitment as a minimum-charge
//!   top-up, and the contract's discount as a negative line on all three.
//! - MIG slices: lines of their own per profile, at the profile's price list or one derived from
//!   the whole GPU's (`mig_price`); their tiers are their own, contracts do not cover them.

use super::dec;
use super::mig_price::price_for;
use super::period::Period;
use super::reference::{Contract, ReferenceState};
use crate::gpu_hours::GpuHours;
use crate::money::Money;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::gpu_hours::SECONDS_PER_HOUR;

/// GPU-seconds of one SKU, project, MIG profile and hour (a row of the hourly projection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub sku: String,
    pub project: String,
    pub hour: DateTime<Utc>,
    pub gpu_seconds: Decimal,
    /// The MIG profile of a slice; `None` for whole-GPU usage.
    pub mig_profile: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// GPU-hours at the list price of a tier.
    Usage,
    /// GPU-hours within a contract's commitment, at the committed rate.
    Commitment,
    /// GPU-hours beyond a contract's commitment, at the overage rate.
    Overage,
    /// The unused part of a commitment (take-or-pay).
    MinimumTopUp,
    /// A contract's percentage discount (negative).
    Discount,
}

/// What makes two charges the same line: a line's identity across an invoice, its late-usage
/// lines and its credit notes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LineKey {
    pub kind: LineKind,
    pub sku: String,
    /// Set when the tenant's profile asks for lines per project.
    pub project: Option<String>,
    /// 1-based tier of the price list; 0 for contract lines.
    pub tier: u32,
    #[serde(with = "dec")]
    pub unit_price: Decimal,
    pub contract_id: Option<String>,
    /// The MIG profile of a slice's line; absent (and so not serialized: documents without
    /// slices keep their bytes) for whole-GPU lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_profile: Option<String>,
}

/// Exact totals of one line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rated {
    pub gpu_seconds: Decimal,
    /// Σ gpu_seconds × EUR per GPU-hour; the exact amount is this / 3600.
    pub numerator: Decimal,
    /// The same GPU-seconds at the published price list (tier and list in force at each hour, as
    /// if there were no contract): what FOCUS calls the list cost, × 3600. For a list-price line
    /// it equals `numerator`; for a minimum top-up (no GPU used) it is the committed rate's; a
    /// discount has none (0).
    pub list_numerator: Decimal,
}

impl Rated {
    pub fn exact(&self) -> Money {
        Money::new(self.numerator / SECONDS_PER_HOUR)
    }

    /// The list cost, rounded once to cents like a line's net.
    pub fn list_net(&self) -> Money {
        Money::new(self.list_numerator / SECONDS_PER_HOUR).round_cents()
    }

    /// The line's net amount: the exact amount rounded half away from zero to cents.
    pub fn net(&self) -> Money {
        self.exact().round_cents()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("no price list for {sku} in force at {hour} (tenant {tenant_id})")]
    NoPrice { tenant_id: String, sku: String, hour: DateTime<Utc> },
    #[error("no price list for {sku} MIG {profile} and no gpu_fraction of it in the SKU catalogue in force at {hour} (tenant {tenant_id})")]
    NoSliceFraction { tenant_id: String, sku: String, profile: String, hour: DateTime<Utc> },
    #[error("usage of {tenant_id} at {hour} is outside period {period}")]
    OutsidePeriod { tenant_id: String, hour: DateTime<Utc>, period: Period },
}

/// The rated lines of one tenant in one period.
pub type RatedLines = BTreeMap<LineKey, Rated>;

fn add(lines: &mut RatedLines, key: LineKey, secs: Decimal, price: Decimal, list_numerator: Decimal) {
    let r = lines.entry(key).or_default();
    r.gpu_seconds += secs;
    r.numerator += secs * price;
    r.list_numerator += list_numerator;
}

/// What is rated on one ladder of tiers: a SKU's whole GPUs (`slice` `None`) or one MIG profile.
#[derive(Clone, Copy)]
struct Slot<'a> {
    sku: &'a str,
    slice: Option<&'a str>,
}

/// Walks `secs` GPU-seconds of `slot` at `hour` through the graduated tiers of the price list in
/// force, from the tenant's `cumulative` GPU-seconds of the slot in the month on: each piece as
/// (tier index, EUR per GPU-hour, GPU-seconds). Advances `cumulative`.
fn list_pieces(
    refs: &ReferenceState,
    tenant_id: &str,
    slot: Slot<'_>,
    hour: DateTime<Utc>,
    cumulative: &mut Decimal,
    secs: Decimal,
) -> Result<Vec<(usize, Decimal, Decimal)>, RatingError> {
    let list = price_for(refs, tenant_id, slot.sku, slot.slice, hour)?;
    let mut out = Vec::new();
    let mut left = secs;
    while left > Decimal::ZERO {
        let idx =
            list.tiers.iter().rposition(|t| GpuHours::new(t.from_gpu_hours).gpu_seconds() <= *cumulative).unwrap_or(0);
        let room = list.tiers.get(idx + 1).map(|t| GpuHours::new(t.from_gpu_hours).gpu_seconds() - *cumulative);
        let take = room.map_or(left, |r| left.min(r));
        out.push((idx, list.tiers[idx].eur_per_gpu_hour, take));
        *cumulative += take;
        left -= take;
    }
    Ok(out)
}

/// The list numerator (Σ GPU-seconds × list EUR per GPU-hour) of `secs` (see `list_pieces`).
fn list_numerator(
    refs: &ReferenceState,
    tenant_id: &str,
    sku: &str,
    hour: DateTime<Utc>,
    cumulative: &mut Decimal,
    secs: Decimal,
) -> Result<Decimal, RatingError> {
    let slot = Slot { sku, slice: None };
    Ok(list_pieces(refs, tenant_id, slot, hour, cumulative, secs)?.iter().map(|(_, price, s)| price * s).sum())
}

/// GPU-seconds per (hour, project) of one SKU, in the order of rating.
type SkuHours<'a> = BTreeMap<(DateTime<Utc>, &'a str), Decimal>;

/// Rates a tenant's usage in `period`. `usage` may come in any order and any split: the result
/// depends only on the GPU-seconds per SKU, project and hour.
pub fn rate_period(
    tenant_id: &str,
    period: Period,
    usage: &[UsageRow],
    refs: &ReferenceState,
    by_project: bool,
) -> Result<RatedLines, RatingError> {
    let per_slot = usage_per_slot(tenant_id, period, usage)?;
    let mut lines = RatedLines::new();
    let empty = BTreeMap::new();
    for sku in billed_skus(tenant_id, period, &per_slot, refs) {
        let hours = per_slot.get(&(sku, None)).unwrap_or(&empty);
        let rate = RateSku { tenant_id, slot: Slot { sku, slice: None }, hours, refs, by_project };
        match refs.contract_for(tenant_id, sku, period) {
            Some(c) => rate.contract(c, &mut lines)?,
            None => rate.list(&mut lines)?,
        }
    }
    for (&(sku, slice), hours) in per_slot.iter().filter(|((_, slice), _)| slice.is_some()) {
        RateSku { tenant_id, slot: Slot { sku, slice }, hours, refs, by_project }.list(&mut lines)?;
    }
    Ok(lines)
}

/// GPU-seconds per (SKU, MIG profile), then per (hour, project): the order of rating.
fn usage_per_slot<'a>(
    tenant_id: &str,
    period: Period,
    usage: &'a [UsageRow],
) -> Result<BTreeMap<(&'a str, Option<&'a str>), SkuHours<'a>>, RatingError> {
    let mut per_slot: BTreeMap<(&str, Option<&str>), SkuHours> = BTreeMap::new();
    for u in usage {
        if u.hour < period.start() || u.hour >= period.end() {
            return Err(RatingError::OutsidePeriod { tenant_id: tenant_id.to_string(), hour: u.hour, period });
        }
        let slot = (u.sku.as_str(), u.mig_profile.as_deref());
        *per_slot.entry(slot).or_default().entry((u.hour, &u.project)).or_default() += u.gpu_seconds;
    }
    Ok(per_slot)
}

/// The SKUs whose whole GPUs are rated, sorted: those with whole-GPU usage, and those with a
/// contract but no such usage (they still owe the minimum charge).
fn billed_skus<'a>(
    tenant_id: &str,
    period: Period,
    per_slot: &BTreeMap<(&'a str, Option<&'a str>), SkuHours<'a>>,
    refs: &'a ReferenceState,
) -> Vec<&'a str> {
    let mut skus: Vec<&str> = per_slot.keys().filter(|(_, slice)| slice.is_none()).map(|(sku, _)| *sku).collect();
    for c in refs.contracts.values() {
        if c.tenant_id == tenant_id && c.covers(period) && !skus.contains(&c.sku.as_str()) {
            skus.push(&c.sku);
        }
    }
    skus.sort_unstable();
    skus
}

/// The usage of one SKU of one tenant, to be rated under a contract or at the price list.
struct RateSku<'a> {
    tenant_id: &'a str,
    slot: Slot<'a>,
    hours: &'a SkuHours<'a>,
    refs: &'a ReferenceState,
    by_project: bool,
}

impl RateSku<'_> {
    fn project(&self, p: &str) -> Option<String> {
        self.by_project.then(|| p.to_string())
    }

    /// Commitment, overage, minimum top-up and discount lines of a contract.
    fn contract(&self, c: &Contract, lines: &mut RatedLines) -> Result<(), RatingError> {
        let (refs, tenant_id, sku) = (self.refs, self.tenant_id, self.slot.sku);
        let committed = GpuHours::new(c.committed_gpu_hours_per_month).gpu_seconds();
        let mut used = Decimal::ZERO;
        let key = |kind, p: Option<String>, price| LineKey {
            kind,
            sku: sku.to_string(),
            project: p,
            tier: 0,
            unit_price: price,
            contract_id: Some(c.contract_id.clone()),
            mig_profile: None,
        };
        let mut contract_numerator = Decimal::ZERO;
        // The same hours at the price list, for the list cost (FOCUS): in the same order.
        let mut cumulative = Decimal::ZERO;
        for (&(hour, p), &secs) in self.hours {
            let within = secs.min((committed - used).max(Decimal::ZERO));
            let over = secs - within;
            used += secs;
            if !within.is_zero() {
                let list = list_numerator(refs, tenant_id, sku, hour, &mut cumulative, within)?;
                add(
                    lines,
                    key(LineKind::Commitment, self.project(p), c.committed_eur_per_gpu_hour),
                    within,
                    c.committed_eur_per_gpu_hour,
                    list,
                );
                contract_numerator += within * c.committed_eur_per_gpu_hour;
            }
            if !over.is_zero() {
                let list = list_numerator(refs, tenant_id, sku, hour, &mut cumulative, over)?;
                add(
                    lines,
                    key(LineKind::Overage, self.project(p), c.overage_eur_per_gpu_hour),
                    over,
                    c.overage_eur_per_gpu_hour,
                    list,
                );
                contract_numerator += over * c.overage_eur_per_gpu_hour;
            }
        }
        if used < committed {
            let unused = committed - used;
            add(
                lines,
                key(LineKind::MinimumTopUp, None, c.committed_eur_per_gpu_hour),
                unused,
                c.committed_eur_per_gpu_hour,
                unused * c.committed_eur_per_gpu_hour,
            );
            contract_numerator += unused * c.committed_eur_per_gpu_hour;
        }
        if !c.discount_percent.is_zero() {
            let r = lines.entry(key(LineKind::Discount, None, c.discount_percent)).or_default();
            r.numerator -= contract_numerator * c.discount_percent / Decimal::ONE_HUNDRED;
        }
        Ok(())
    }

    /// Usage lines at the graduated tiers of the price list.
    fn list(&self, lines: &mut RatedLines) -> Result<(), RatingError> {
        let mut cumulative = Decimal::ZERO;
        for (&(hour, p), &secs) in self.hours {
            for (idx, price, take) in list_pieces(self.refs, self.tenant_id, self.slot, hour, &mut cumulative, secs)? {
                let key = LineKey {
                    kind: LineKind::Usage,
                    sku: self.slot.sku.to_string(),
                    project: self.project(p),
                    tier: idx as u32 + 1,
                    unit_price: price,
                    contract_id: None,
                    mig_profile: self.slot.slice.map(str::to_string),
                };
                add(lines, key, take, price, take * price);
            }
        }
        Ok(())
    }
}

/// The exact total of rated lines (before rounding).
pub fn exact_total(lines: &RatedLines) -> Money {
    lines.values().map(Rated::exact).sum()
}
