//! Prices of MIG slices. A slice's GPU-seconds (the seconds its instance ran) are rated at the
//! price list of its SKU and profile in force at the hour (`price_list.set` with `mig_profile`);
//! without one, at a list derived from the whole GPU's list in force: the same tiers, each
//! price × the profile's `gpu_fraction` in the catalogue entry in force, rounded half away from
//! zero to 4 decimals (a unit price's digits, `UnitPrice`: the invoice shows the price the line
//! was rated at). A slice climbs its own tiers: its GPU-seconds count toward the
//! tiers of its (SKU, profile) in the month, not toward the whole GPU's, and a contract for the
//! SKU covers whole-GPU usage only (slices are rated at the list beside it).

use super::rating::RatingError;
use super::reference::{PriceList, ReferenceState};
use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use std::borrow::Cow;

/// A whole-GPU list's price for a slice of `fraction` of the GPU: 4 decimals, half away from zero.
pub fn derived_price(eur_per_gpu_hour: Decimal, fraction: Decimal) -> Decimal {
    (eur_per_gpu_hour * fraction).round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
}

/// The price list `slice` (a MIG profile; `None` for the whole GPU) of `sku` is rated at in
/// `hour`: the profile's own list, else the whole GPU's list scaled by the profile's fraction.
pub fn price_for<'a>(
    refs: &'a ReferenceState,
    tenant_id: &str,
    sku: &str,
    slice: Option<&str>,
    hour: DateTime<Utc>,
) -> Result<Cow<'a, PriceList>, RatingError> {
    let no_price = || RatingError::NoPrice {
        tenant_id: tenant_id.to_string(),
        sku: match slice {
            Some(p) => format!("{sku} MIG {p}"),
            None => sku.to_string(),
        },
        hour,
    };
    let Some(profile) = slice else {
        return refs.price_at(sku, hour).map(Cow::Borrowed).ok_or_else(no_price);
    };
    if let Some(own) = refs.slice_price_at(sku, profile, hour) {
        return Ok(Cow::Borrowed(own));
    }
    let whole = refs.price_at(sku, hour).ok_or_else(no_price)?;
    let fraction = refs.catalogue.at(sku, hour).and_then(|s| s.fraction_of(profile)).ok_or_else(|| {
        RatingError::NoSliceFraction {
            tenant_id: tenant_id.to_string(),
            sku: sku.to_string(),
            profile: profile.to_string(),
            hour,
        }
    })?;
    let mut derived = whole.clone();
    derived.mig_profile = Some(profile.to_string());
    for t in &mut derived.tiers {
        t.eur_per_gpu_hour = derived_price(t.eur_per_gpu_hour, fraction);
    }
    Ok(Cow::Owned(derived))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::catalogue::SkuSet;
    use crate::billing::period::Period;
    use crate::billing::rating::{rate_period, LineKind, UsageRow};
    use crate::billing::reference::{Contract, PriceTier};
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn list(profile: Option<&str>, tiers: &[(&str, &str)]) -> PriceList {
        PriceList {
            sku: "nvidia-h200".into(),
            mig_profile: profile.map(str::to_string),
            effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            currency: "EUR".into(),
            tiers: tiers.iter().map(|(f, p)| PriceTier { from_gpu_hours: d(f), eur_per_gpu_hour: d(p) }).collect(),
        }
    }

    /// H200 at 3.50 (1.00 from 10 GPU-hours on), with 1g.18gb = 0.142857 and 3g.71gb = 0.428571.
    fn refs() -> ReferenceState {
        let mut r = ReferenceState::default();
        let sku: SkuSet = serde_json::from_value(serde_json::json!({
            "sku": "nvidia-h200", "effective_from": "2026-01-01T00:00:00Z", "display_name": "NVIDIA H200",
            "mig_profiles": [{"profile": "1g.18gb", "gpu_fraction": "0.142857"},
                             {"profile": "3g.71gb", "gpu_fraction": "0.428571"}]
        }))
        .unwrap();
        r.catalogue.apply(sku);
        r.prices
            .entry("nvidia-h200".into())
            .or_default()
            .insert(list(None, &[]).effective_from, list(None, &[("0", "3.50"), ("10", "1.00")]));
        r
    }

    fn oct() -> Period {
        Period::parse("2026-10").unwrap()
    }

    fn row(profile: Option<&str>, hour: u32, secs: &str) -> UsageRow {
        UsageRow {
            sku: "nvidia-h200".into(),
            project: "p".into(),
            hour: oct().start() + chrono::Duration::hours(i64::from(hour)),
            gpu_seconds: d(secs),
            mig_profile: profile.map(str::to_string),
        }
    }

    /// A line as the tests compare it: profile, kind, tier, unit price, GPU-seconds, net.
    type Line = (Option<String>, LineKind, u32, Decimal, Decimal, Decimal);

    /// Each rated line, by profile (whole GPU first) and tier.
    fn lines(refs: &ReferenceState, usage: &[UsageRow]) -> Vec<Line> {
        let mut out: Vec<_> = rate_period("t", oct(), usage, refs, false)
            .unwrap()
            .into_iter()
            .map(|(k, r)| (k.mig_profile, k.kind, k.tier, k.unit_price, r.gpu_seconds, r.net().amount()))
            .collect();
        out.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
        out
    }

    #[test]
    fn a_slice_without_its_own_list_is_priced_at_the_fraction_of_the_gpu_rounded_to_four_digits() {
        // 3.50 × 0.142857 = 0.4999995 → 0.5000; 3.50 × 0.428571 = 1.4999985 → 1.5000.
        assert_eq!(derived_price(d("3.50"), d("0.142857")), d("0.5000"));
        assert_eq!(derived_price(d("1.00"), d("0.142857")), d("0.1429"));
        // 8 slice-hours of 1g.18gb, 12 of 3g.71gb (over the 10 h tier: their own ladder), 2 whole.
        let usage = [row(Some("1g.18gb"), 0, "28800"), row(Some("3g.71gb"), 1, "43200"), row(None, 2, "7200")];
        let got = lines(&refs(), &usage);
        let slice = |p: &str| Some(p.to_string());
        assert_eq!(
            got,
            vec![
                // Whole GPU: 2 h in tier 1 (the slices' 20 h do not climb its tiers).
                (None, LineKind::Usage, 1, d("3.50"), d("7200"), d("7.00")),
                (slice("1g.18gb"), LineKind::Usage, 1, d("0.5000"), d("28800"), d("4.00")),
                (slice("3g.71gb"), LineKind::Usage, 1, d("1.5000"), d("36000"), d("15.00")),
                (slice("3g.71gb"), LineKind::Usage, 2, d("0.4286"), d("7200"), d("0.86")),
            ]
        );
    }

    #[test]
    fn a_profile_price_list_wins_over_the_derived_price_and_a_contract_leaves_slices_at_the_list() {
        let mut r = refs();
        r.apply(
            crate::billing::reference::Reference::PriceList(list(Some("1g.18gb"), &[("0", "0.61")])),
            uuid::Uuid::nil(),
        );
        let usage = [row(Some("1g.18gb"), 0, "3600"), row(Some("3g.71gb"), 0, "3600")];
        let got = lines(&r, &usage);
        assert_eq!(got[0], (Some("1g.18gb".into()), LineKind::Usage, 1, d("0.61"), d("3600"), d("0.61")));
        assert_eq!(got[1], (Some("3g.71gb".into()), LineKind::Usage, 1, d("1.5000"), d("3600"), d("1.50")));
        // A contract for the SKU: its whole-GPU hours are committed, the slice stays at its list price.
        r.contracts.insert(
            "C".into(),
            Contract {
                contract_id: "C".into(),
                tenant_id: "t".into(),
                sku: "nvidia-h200".into(),
                committed_gpu_hours_per_month: d("1"),
                committed_eur_per_gpu_hour: d("3.00"),
                overage_eur_per_gpu_hour: d("3.20"),
                discount_percent: Decimal::ZERO,
                start_month: oct(),
                end_month: oct(),
            },
        );
        let got = lines(&r, &[row(None, 0, "3600"), row(Some("1g.18gb"), 0, "3600")]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], (None, LineKind::Commitment, 0, d("3.00"), d("3600"), d("3.00")));
        assert_eq!(got[1], (Some("1g.18gb".into()), LineKind::Usage, 1, d("0.61"), d("3600"), d("0.61")));
    }

    #[test]
    fn a_profile_the_catalogue_does_not_list_has_no_price() {
        let e = rate_period("t", oct(), &[row(Some("2g.35gb"), 0, "60")], &refs(), false).unwrap_err();
        assert!(matches!(e, RatingError::NoSliceFraction { ref profile, .. } if profile == "2g.35gb"), "{e}");
        let bad = list(Some("2g"), &[("0", "1")]);
        assert!(bad.validate().unwrap_err().to_string().contains("mig_profile"));
    }

    proptest! {
        /// The derived price is the exact product rounded half away from zero to 4 digits: at
        /// most half a hundredth of a cent away, and a slice line's amount is its GPU-seconds
        /// at that price, however the usage is split into hours.
        #[test]
        fn a_derived_slice_line_is_its_seconds_at_the_rounded_price(
            price_cents in 1i64..100_000, fraction_millionths in 1i64..=1_000_000, secs in proptest::collection::vec(1i64..3600, 1..20)
        ) {
            let (price, fraction) = (Decimal::new(price_cents, 2), Decimal::new(fraction_millionths, 6));
            let p = derived_price(price, fraction);
            prop_assert!((p - price * fraction).abs() <= Decimal::new(5, 5));
            prop_assert_eq!(p.scale(), 4);
            let mut r = ReferenceState::default();
            let sku: SkuSet = serde_json::from_value(serde_json::json!({
                "sku": "nvidia-h200", "effective_from": "2026-01-01T00:00:00Z", "display_name": "H200",
                "mig_profiles": [{"profile": "1g.18gb", "gpu_fraction": fraction.to_string()}]
            })).unwrap();
            r.catalogue.apply(sku);
            let price_text = price.to_string();
            let one = list(None, &[("0", price_text.as_str())]);
            r.prices.entry("nvidia-h200".into()).or_default().insert(one.effective_from, one);
            let usage: Vec<UsageRow> = secs.iter().enumerate()
                .map(|(h, s)| row(Some("1g.18gb"), u32::try_from(h).unwrap(), &s.to_string())).collect();
            let total: Decimal = secs.iter().map(|s| Decimal::from(*s)).sum();
            let got = lines(&r, &usage);
            prop_assert_eq!(got.len(), 1);
            let expected = (total * p / Decimal::from(3600)).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            prop_assert_eq!(got[0].5, expected);
            prop_assert_eq!(got[0].3, p);
        }
    }
}
