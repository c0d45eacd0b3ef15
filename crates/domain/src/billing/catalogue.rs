//! The SKU catalogue as reference data: `sku.set` events say which GPU models the cloud rents,
//! under which names the fleet reports them (dcgm-exporter's `modelName`), and which MIG profiles
//! a GPU of the SKU can be cut into, with each profile's fraction of the GPU. A new GPU model needs
//! a reference load, not a release. The six SKUs the code knew before are the initial catalogue
//! ([`Catalogue::initial`]), so a ledger with no `sku.set` event knows exactly what it knew.

use super::dec;
use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::reference::RefError;
use super::reference::Reference;

pub const KIND_SKU: &str = "sku.set";
/// Most MIG profiles one SKU lists.
const MIG_PROFILES_MAX: usize = 32;
/// Most model names one SKU is reported under.
const MODEL_NAMES_MAX: usize = 8;

fn err(field: &str, message: impl Into<String>) -> RefError {
    RefError { field: field.to_string(), message: message.into() }
}

/// `[a-z0-9][a-z0-9-]*`, 2 to 64 characters: a SKU id as usage events, price lists and invoices
/// carry it. (Usage events with any other `gpu_sku` are refused as `unknown_sku` by the parser;
/// well-formed ones the catalogue does not list, by the ingester's decision.)
pub fn is_valid_sku_id(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=64).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// A MIG profile of a SKU and the fraction of the GPU it is (for prices derived from the GPU's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigProfile {
    /// As dcgm-exporter's `GPU_I_PROFILE` names it, e.g. `1g.18gb`.
    pub profile: String,
    /// More than 0, at most 1, at most 6 decimal places, e.g. `0.142857` for one of seven slices.
    #[serde(with = "dec")]
    pub gpu_fraction: Decimal,
}

/// One SKU of the catalogue from an instant on (until its next `sku.set`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuSet {
    pub sku: String,
    pub effective_from: DateTime<Utc>,
    /// For people: invoice lines, reports.
    pub display_name: String,
    /// The names the fleet reports the GPU under (dcgm-exporter's `modelName`, e.g. `NVIDIA H200`).
    #[serde(default)]
    pub model_names: Vec<String>,
    #[serde(default)]
    pub mig_profiles: Vec<MigProfile>,
}

impl SkuSet {
    pub fn validate(&self) -> Result<(), RefError> {
        if !is_valid_sku_id(&self.sku) {
            return Err(err("sku", format!("{:?} is not a SKU id ([a-z0-9][a-z0-9-]*, 2 to 64 characters)", self.sku)));
        }
        if self.effective_from.timestamp() % 3600 != 0 || self.effective_from.timestamp_subsec_nanos() != 0 {
            return Err(err("effective_from", "on the hour, as prices (usage is rated per hour)"));
        }
        name("display_name", &self.display_name)?;
        if self.model_names.len() > MODEL_NAMES_MAX {
            return Err(err("model_names", format!("at most {MODEL_NAMES_MAX}")));
        }
        for (i, m) in self.model_names.iter().enumerate() {
            name(&format!("model_names[{i}]"), m)?;
        }
        self.validate_profiles()
    }

    fn validate_profiles(&self) -> Result<(), RefError> {
        if self.mig_profiles.len() > MIG_PROFILES_MAX {
            return Err(err("mig_profiles", format!("at most {MIG_PROFILES_MAX}")));
        }
        for (i, p) in self.mig_profiles.iter().enumerate() {
            let f = format!("mig_profiles[{i}]");
            if !crate::usage::is_valid_mig_profile(&p.profile) {
                return Err(err(
                    &format!("{f}.profile"),
                    format!("{:?} is not a MIG profile such as 1g.18gb", p.profile),
                ));
            }
            if self.mig_profiles[..i].iter().any(|q| q.profile == p.profile) {
                return Err(err(&format!("{f}.profile"), format!("{:?} is listed twice", p.profile)));
            }
            let share = p.gpu_fraction;
            if share <= Decimal::ZERO || share > Decimal::ONE || share.normalize().scale() > 6 {
                return Err(err(
                    &format!("{f}.gpu_fraction"),
                    format!("more than 0, at most 1, 6 decimal places: {share}"),
                ));
            }
        }
        Ok(())
    }

    /// The fraction of the GPU a MIG profile of this SKU is, where the catalogue lists it.
    pub fn fraction_of(&self, profile: &str) -> Option<Decimal> {
        self.mig_profiles.iter().find(|p| p.profile == profile).map(|p| p.gpu_fraction)
    }
}

/// Text for people: not blank, at most 100 characters, no control characters.
fn name(field: &str, v: &str) -> Result<(), RefError> {
    if v.trim().is_empty() || v.chars().count() > 100 || v.chars().any(char::is_control) {
        return Err(err(field, format!("{v:?}: 1 to 100 characters, not blank, no control characters")));
    }
    Ok(())
}

/// The catalogue as of a point of the log: per SKU, its versions by effective instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue(BTreeMap<String, BTreeMap<DateTime<Utc>, SkuSet>>);

/// The SKUs the code listed before the catalogue was reference data, with the names dcgm-exporter
/// reports them under, in force from the first instant a usage event may carry (2020).
const INITIAL: &[(&str, &str, &str)] = &[
    ("nvidia-b200", "NVIDIA B200", "NVIDIA B200"),
    ("nvidia-gb200", "NVIDIA GB200", "NVIDIA GB200"),
    ("nvidia-h200", "NVIDIA H200", "NVIDIA H200"),
    ("nvidia-h100-sxm", "NVIDIA H100 SXM", "NVIDIA H100 80GB HBM3"),
    ("nvidia-h100-pcie", "NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("nvidia-l40s", "NVIDIA L40S", "NVIDIA L40S"),
];

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue::initial()
    }
}

impl Catalogue {
    /// The initial catalogue: [`crate::sku::SKUS`], without MIG profiles.
    pub fn initial() -> Catalogue {
        let from = Utc.with_ymd_and_hms(crate::usage::YEAR_MIN, 1, 1, 0, 0, 0).single().expect("a valid instant");
        let mut c = Catalogue(BTreeMap::new());
        for (sku, display, model) in INITIAL {
            c.apply(SkuSet {
                sku: sku.to_string(),
                effective_from: from,
                display_name: display.to_string(),
                model_names: vec![model.to_string()],
                mig_profiles: Vec::new(),
            });
        }
        c
    }

    /// Adds a version of a SKU; a later event for the same SKU and instant replaces it.
    pub fn apply(&mut self, s: SkuSet) {
        self.0.entry(s.sku.clone()).or_default().insert(s.effective_from, s);
    }

    /// The version of `sku` in force at `at`.
    pub fn at(&self, sku: &str, at: DateTime<Utc>) -> Option<&SkuSet> {
        self.0.get(sku)?.range(..=at).next_back().map(|(_, s)| s)
    }

    /// Whether usage of `sku` at `at` is billable: the catalogue lists it in force then.
    pub fn knows(&self, sku: &str, at: DateTime<Utc>) -> bool {
        self.at(sku, at).is_some()
    }

    /// Whether the catalogue lists `sku` at any time (what price lists and contracts may name).
    pub fn lists(&self, sku: &str) -> bool {
        self.0.contains_key(sku)
    }

    /// The SKU a fleet's model name stands for at `at` (the collector's mapping of `modelName`).
    pub fn sku_of_model(&self, model: &str, at: DateTime<Utc>) -> Option<&str> {
        self.0
            .keys()
            .find(|sku| self.at(sku, at).is_some_and(|s| s.model_names.iter().any(|m| m == model)))
            .map(String::as_str)
    }

    /// A price list, contract or usage adjustment may name only a SKU the catalogue lists.
    pub fn admits(&self, r: &Reference) -> Result<(), RefError> {
        let (field, sku) = match r {
            Reference::PriceList(p) => ("sku", &p.sku),
            Reference::Contract(c) => ("sku", &c.sku),
            Reference::Adjustment(a) => ("gpu_sku", &a.gpu_sku),
            _ => return Ok(()),
        };
        if !self.lists(sku) {
            return Err(err(field, format!("{sku:?} is not in the SKU catalogue (load a sku.set first)")));
        }
        Ok(())
    }

    /// Every version of every SKU, by SKU and effective instant.
    pub fn entries(&self) -> impl Iterator<Item = &SkuSet> {
        self.0.values().flat_map(BTreeMap::values)
    }

    /// Every SKU id listed, in order.
    pub fn skus(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h200_mig() -> serde_json::Value {
        json!({
            "sku": "nvidia-h200",
            "effective_from": "2026-11-01T00:00:00Z",
            "display_name": "NVIDIA H200 141GB",
            "model_names": ["NVIDIA H200", "NVIDIA H200 NVL"],
            "mig_profiles": [
                {"profile": "1g.18gb", "gpu_fraction": "0.142857"},
                {"profile": "7g.141gb", "gpu_fraction": "1"}
            ]
        })
    }

    #[test]
    fn the_initial_catalogue_is_the_compiled_list() {
        let c = Catalogue::initial();
        assert_eq!(c.skus().collect::<Vec<_>>().len(), crate::sku::SKUS.len());
        let at = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
        for sku in crate::sku::SKUS {
            assert!(c.knows(sku, at), "{sku}");
        }
        assert!(!c.knows("nvidia-rtx-9090", at));
        assert_eq!(c.sku_of_model("NVIDIA H100 80GB HBM3", at), Some("nvidia-h100-sxm"));
        assert_eq!(c.sku_of_model("NVIDIA H200 NVL", at), None);
    }

    #[test]
    fn a_new_version_takes_effect_from_its_instant() {
        let s: SkuSet = serde_json::from_value(h200_mig()).unwrap();
        s.validate().unwrap();
        let mut c = Catalogue::initial();
        c.apply(s);
        let before = Utc.with_ymd_and_hms(2026, 10, 31, 23, 59, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        assert_eq!(c.sku_of_model("NVIDIA H200 NVL", before), None);
        assert_eq!(c.sku_of_model("NVIDIA H200 NVL", after), Some("nvidia-h200"));
        assert_eq!(c.at("nvidia-h200", after).unwrap().fraction_of("1g.18gb"), Some(Decimal::new(142_857, 6)));
        assert_eq!(c.at("nvidia-h200", before).unwrap().fraction_of("1g.18gb"), None);

        let mut new_model = h200_mig();
        new_model["sku"] = json!("nvidia-b300");
        c.apply(serde_json::from_value(new_model).unwrap());
        assert!(c.knows("nvidia-b300", after) && !c.knows("nvidia-b300", before) && c.lists("nvidia-b300"));
    }

    #[test]
    fn bad_entries_name_their_field() {
        let field = |change: &dyn Fn(&mut serde_json::Value)| {
            let mut v = h200_mig();
            change(&mut v);
            serde_json::from_value::<SkuSet>(v)
                .map_err(|_| "data".to_string())
                .and_then(|s| s.validate().map_err(|e| e.field))
        };
        assert_eq!(field(&|_| {}), Ok(()));
        assert_eq!(field(&|v| v["sku"] = json!("NVIDIA-H200")).unwrap_err(), "sku");
        assert_eq!(field(&|v| v["sku"] = json!("x")).unwrap_err(), "sku");
        assert_eq!(field(&|v| v["effective_from"] = json!("2026-11-01T00:30:00Z")).unwrap_err(), "effective_from");
        assert_eq!(field(&|v| v["display_name"] = json!(" ")).unwrap_err(), "display_name");
        assert_eq!(field(&|v| v["model_names"] = json!(["ok", "a\nb"])).unwrap_err(), "model_names[1]");
        assert_eq!(
            field(&|v| v["mig_profiles"][0]["profile"] = json!("1g.18GB")).unwrap_err(),
            "mig_profiles[0].profile"
        );
        assert_eq!(
            field(&|v| v["mig_profiles"][1]["profile"] = json!("1g.18gb")).unwrap_err(),
            "mig_profiles[1].profile"
        );
        for bad in ["0", "1.000001", "-0.5", "0.1428571"] {
            assert_eq!(
                field(&|v| v["mig_profiles"][0]["gpu_fraction"] = json!(bad)).unwrap_err(),
                "mig_profiles[0].gpu_fraction"
            );
        }
        assert_eq!(field(&|v| v["colour"] = json!("green")).unwrap_err(), "data");
    }
}
