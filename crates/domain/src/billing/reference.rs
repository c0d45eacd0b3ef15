//! Reference data, kept as events in the ledger: the seller, price lists, tenant billing profiles,
//! contracts, and usage adjustments (corrections). A change is a new event; the latest event in
//! ledger order wins (for price lists: per SKU and effective instant).

use super::dec;
use super::period::Period;
use crate::usage::is_valid_tenant_id;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const KIND_SELLER: &str = "seller.set";
pub const KIND_PRICE_LIST: &str = "price_list.set";
pub const KIND_PROFILE: &str = "billing_profile.set";
pub const KIND_CONTRACT: &str = "contract.set";
pub const KIND_ADJUSTMENT: &str = "usage.adjusted";
pub const REFERENCE_KINDS: &[&str] = &[
    KIND_SELLER,
    KIND_PRICE_LIST,
    KIND_PROFILE,
    KIND_CONTRACT,
    KIND_ADJUSTMENT,
    super::catalogue::KIND_SKU,
    KIND_NAMESPACE_MAP,
];
use super::namespace_map::{NamespaceMap, NamespaceMapping, KIND_NAMESPACE_MAP};
pub const REFERENCE_VERSION: i16 = 1;
/// The tenant column of reference events that belong to no tenant (seller, price lists).
pub const NO_TENANT: &str = "-";

/// The EU member states other than Germany (ISO 3166-1 alpha-2; Greece as `GR`, its VAT prefix is `EL`).
pub const EU_OTHER: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT",
    "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// A refused reference event: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RefError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> RefError {
    RefError { field: field.to_string(), message: message.into() }
}

fn text(field: &str, v: &str, max: usize) -> Result<(), RefError> {
    if v.trim().is_empty() {
        return Err(err(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(err(field, format!("longer than {max} characters")));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(err(field, "contains control characters"));
    }
    Ok(())
}

/// A well-formed SKU id; whether the catalogue lists it is [`ReferenceState::admits`]'s check.
fn sku_id(field: &str, v: &str) -> Result<(), RefError> {
    if !super::catalogue::is_valid_sku_id(v) {
        return Err(err(field, format!("{v:?} is not a SKU id ([a-z0-9][a-z0-9-]*, 2 to 64 characters)")));
    }
    Ok(())
}

fn positive(field: &str, d: Decimal) -> Result<(), RefError> {
    if d <= Decimal::ZERO {
        return Err(err(field, format!("must be greater than zero, is {d}")));
    }
    Ok(())
}

fn scale(field: &str, d: Decimal, max: u32) -> Result<(), RefError> {
    if d.normalize().scale() > max {
        return Err(err(field, format!("more than {max} decimal places: {d}")));
    }
    Ok(())
}

fn tenant(v: &str) -> Result<(), RefError> {
    if !is_valid_tenant_id(v) {
        return Err(err("tenant_id", format!("{v:?} is not a tenant id ([a-z0-9][a-z0-9-]*, 2 to 63 characters)")));
    }
    Ok(())
}

fn email(field: &str, v: &str) -> Result<(), RefError> {
    text(field, v, 254)?;
    let ok = v.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !v.contains(' '));
    if !ok {
        return Err(err(field, format!("{v:?} is not an e-mail address")));
    }
    Ok(())
}

fn country(field: &str, v: &str) -> Result<(), RefError> {
    if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(err(field, format!("{v:?} is not an ISO 3166-1 alpha-2 country code such as DE")));
    }
    Ok(())
}

fn vat_prefix(country: &str) -> &str {
    if country == "GR" {
        "EL"
    } else {
        country
    }
}

fn vat_id(field: &str, v: &str, country_code: &str) -> Result<(), RefError> {
    let prefix = vat_prefix(country_code);
    // Every EU VAT id is its country prefix and 8 to 12 letters or digits; Germany's is 9 digits.
    let rest = v.get(2..).unwrap_or("");
    let ok = v.starts_with(prefix)
        && (8..=12).contains(&rest.len())
        && rest.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && (prefix != "DE" || (rest.len() == 9 && rest.bytes().all(|b| b.is_ascii_digit())));
    if !ok {
        return Err(err(
            field,
            format!("{v:?} is not a VAT id of {country_code} ({prefix} and 8 to 12 letters or digits; DE: 9 digits)"),
        ));
    }
    Ok(())
}

/// The operator that issues the invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seller {
    pub legal_name: String,
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub vat_id: String,
    /// The German tax number (Steuernummer), shown where the VAT id may not be (category O).
    pub tax_number: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub contact_email: String,
    /// Where e-invoices come from (XRechnung seller electronic address).
    pub electronic_address: String,
    pub iban: String,
    /// Prefix of the invoice number series, e.g. `GL` gives GL-2026-000001 (credit notes: GLC-...).
    pub series_prefix: String,
    /// What § 35a GmbHG asks on the business papers of a GmbH: the registered seat (Sitz), the
    /// register court (Registergericht) and number (e.g. `HRB 123456`), and every managing
    /// director (Geschäftsführer). Optional in the type so that seller events loaded before they
    /// were asked for still replay (and documents that lack them keep their bytes); required for
    /// a new `seller.set` (`Reference::check_new`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_office: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_court: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_number: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managing_directors: Vec<String>,
}

/// The kinds of German commercial-type registers and their number prefixes (HRA, HRB:
/// Handelsregister; GnR: Genossenschafts-; PR: Partnerschafts-; VR: Vereinsregister).
const REGISTER_KINDS: &[&str] = &["HRA", "HRB", "GnR", "PR", "VR"];

fn register_number(v: &str) -> Result<(), RefError> {
    let ok = v.split_once(' ').is_some_and(|(kind, rest)| {
        let number = rest.trim_end_matches(|c: char| c.is_ascii_uppercase() || c == ' ');
        REGISTER_KINDS.contains(&kind)
            && (1..=8).contains(&number.len())
            && number.bytes().all(|b| b.is_ascii_digit())
            && rest.len() <= number.len() + 3
    });
    if !ok {
        return Err(err(
            "register_number",
            format!(
                "{v:?} is not a register number such as \"HRB 123456\" (HRA, HRB, GnR, PR or VR, a blank, the number)"
            ),
        ));
    }
    Ok(())
}

impl Seller {
    pub fn validate(&self) -> Result<(), RefError> {
        text("legal_name", &self.legal_name, 200)?;
        text("street", &self.street, 200)?;
        text("city", &self.city, 100)?;
        text("postal_code", &self.postal_code, 16)?;
        if self.country != "DE" {
            return Err(err("country", "the seller is a German company: DE"));
        }
        vat_id("vat_id", &self.vat_id, "DE")?;
        text("tax_number", &self.tax_number, 32)?;
        text("contact_name", &self.contact_name, 100)?;
        text("contact_phone", &self.contact_phone, 40)?;
        email("contact_email", &self.contact_email)?;
        email("electronic_address", &self.electronic_address)?;
        let iban_ok = self.iban.len() >= 15
            && self.iban.len() <= 34
            && self.iban.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !iban_ok {
            return Err(err("iban", format!("{:?} is not an IBAN (no blanks)", self.iban)));
        }
        let prefix_ok = (1..=8).contains(&self.series_prefix.len())
            && self.series_prefix.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !prefix_ok {
            return Err(err("series_prefix", "1 to 8 capital letters or digits"));
        }
        if let Some(v) = &self.registered_office {
            text("registered_office", v, 100)?;
        }
        if let Some(v) = &self.register_court {
            text("register_court", v, 100)?;
        }
        if let Some(v) = &self.register_number {
            register_number(v)?;
        }
        if self.managing_directors.len() > 20 {
            return Err(err("managing_directors", "at most 20"));
        }
        for (i, d) in self.managing_directors.iter().enumerate() {
            text(&format!("managing_directors[{i}]"), d, 100)?;
        }
        Ok(())
    }

    /// The commercial register and managing directors must be given (§ 35a GmbHG, § 37a HGB).
    fn check_register(&self) -> Result<(), RefError> {
        let missing = |f: &str| err(f, "required on the business papers of a German company (§ 35a GmbHG, § 37a HGB)");
        self.registered_office.as_ref().ok_or_else(|| missing("registered_office"))?;
        self.register_court.as_ref().ok_or_else(|| missing("register_court"))?;
        self.register_number.as_ref().ok_or_else(|| missing("register_number"))?;
        if self.managing_directors.is_empty() {
            return Err(missing("managing_directors"));
        }
        Ok(())
    }

    /// The seller's legal details as one line (EN 16931 BT-33, seller additional legal
    /// information; the footer of the printed invoice); `None` when none are recorded.
    pub fn legal_information(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(o) = &self.registered_office {
            parts.push(format!("Sitz der Gesellschaft: {o}"));
        }
        match (&self.register_court, &self.register_number) {
            (Some(c), Some(n)) => parts.push(format!("Registergericht: {c}, {n}")),
            (Some(c), None) => parts.push(format!("Registergericht: {c}")),
            (None, Some(n)) => parts.push(format!("Handelsregister: {n}")),
            (None, None) => {}
        }
        if !self.managing_directors.is_empty() {
            parts.push(format!("Geschäftsführer: {}", self.managing_directors.join(", ")));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// One graduated tier: GPU-hours of the tenant on this SKU in the month from `from_gpu_hours` on
/// are charged at `eur_per_gpu_hour`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    #[serde(with = "dec")]
    pub from_gpu_hours: Decimal,
    #[serde(with = "dec")]
    pub eur_per_gpu_hour: Decimal,
}

/// The list price of a SKU from an instant on, until the next price list of that SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    pub sku: String,
    /// A MIG profile (`1g.18gb`): the list prices that slice of the SKU (billing/mig_price.rs);
    /// absent for the whole GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig_profile: Option<String>,
    pub effective_from: DateTime<Utc>,
    pub currency: String,
    pub tiers: Vec<PriceTier>,
}

impl PriceList {
    pub fn validate(&self) -> Result<(), RefError> {
        sku_id("sku", &self.sku)?;
        if let Some(m) = self.mig_profile.as_deref().filter(|m| !crate::usage::is_valid_mig_profile(m)) {
            return Err(err("mig_profile", format!("{m:?} is not a MIG profile such as 1g.18gb")));
        }
        if self.currency != "EUR" {
            return Err(err("currency", format!("{:?}: prices are in EUR", self.currency)));
        }
        if self.effective_from.timestamp() % 3600 != 0 || self.effective_from.timestamp_subsec_nanos() != 0 {
            return Err(err("effective_from", "prices change on the hour (usage is rated per hour)"));
        }
        if self.tiers.is_empty() || self.tiers.len() > 16 {
            return Err(err("tiers", "1 to 16 tiers"));
        }
        if !self.tiers[0].from_gpu_hours.is_zero() {
            return Err(err("tiers[0].from_gpu_hours", "the first tier starts at 0 GPU-hours"));
        }
        for (i, t) in self.tiers.iter().enumerate() {
            let f = format!("tiers[{i}]");
            positive(&format!("{f}.eur_per_gpu_hour"), t.eur_per_gpu_hour)?;
            scale(&format!("{f}.eur_per_gpu_hour"), t.eur_per_gpu_hour, 4)?;
            scale(&format!("{f}.from_gpu_hours"), t.from_gpu_hours, 0)?;
            if i > 0 && t.from_gpu_hours <= self.tiers[i - 1].from_gpu_hours {
                return Err(err(&format!("{f}.from_gpu_hours"), "tiers must start at increasing GPU-hours"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VatTreatment {
    /// German customer: standard rate 19 % (category S).
    Domestic,
    /// Business customer in another EU state: reverse charge (category AE), both VAT ids shown.
    ReverseCharge,
    /// Business customer outside the EU: not taxable in Germany (category O).
    NotTaxable,
}

impl VatTreatment {
    /// The EN 16931 VAT category code (BT-151).
    pub fn category(self) -> &'static str {
        match self {
            VatTreatment::Domestic => "S",
            VatTreatment::ReverseCharge => "AE",
            VatTreatment::NotTaxable => "O",
        }
    }

    /// The VAT rate in percent; `None` for category O, which has no rate.
    pub fn rate(self) -> Option<Decimal> {
        match self {
            VatTreatment::Domestic => Some(Decimal::new(19, 0)),
            VatTreatment::ReverseCharge => Some(Decimal::ZERO),
            VatTreatment::NotTaxable => None,
        }
    }

    /// The exemption reason text and code (BT-120, BT-121) for AE and O.
    pub fn exemption(self) -> Option<(&'static str, &'static str)> {
        match self {
            VatTreatment::Domestic => None,
            VatTreatment::ReverseCharge => Some((super::reverse_charge::NOTE, "VATEX-EU-AE")),
            VatTreatment::NotTaxable => {
                Some(("Not subject to VAT in Germany (place of supply outside the EU, § 3a Abs. 2 UStG)", "VATEX-EU-O"))
            }
        }
    }
}

/// How a tenant is invoiced. A new event replaces the profile for invoices issued after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingProfile {
    pub tenant_id: String,
    pub legal_name: String,
    pub street: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
    pub vat_id: Option<String>,
    pub vat_treatment: VatTreatment,
    /// BT-10: the buyer's reference (a Leitweg-ID for public buyers), required by XRechnung.
    pub buyer_reference: String,
    pub payment_terms_days: u32,
    pub invoice_email: String,
    /// One line per project instead of one per SKU.
    #[serde(default)]
    pub lines_by_project: bool,
}

impl BillingProfile {
    pub fn validate(&self) -> Result<(), RefError> {
        tenant(&self.tenant_id)?;
        text("legal_name", &self.legal_name, 200)?;
        text("street", &self.street, 200)?;
        text("city", &self.city, 100)?;
        text("postal_code", &self.postal_code, 16)?;
        country("country", &self.country)?;
        text("buyer_reference", &self.buyer_reference, 100)?;
        email("invoice_email", &self.invoice_email)?;
        if !(0..=120).contains(&self.payment_terms_days) {
            return Err(err("payment_terms_days", "0 to 120 days"));
        }
        let in_eu = EU_OTHER.contains(&self.country.as_str());
        match self.vat_treatment {
            VatTreatment::Domestic => {
                if self.country != "DE" {
                    return Err(err("vat_treatment", "domestic (19 %) is for customers in Germany (country DE)"));
                }
                if let Some(v) = &self.vat_id {
                    vat_id("vat_id", v, "DE")?;
                }
            }
            VatTreatment::ReverseCharge => {
                if !in_eu {
                    return Err(err("vat_treatment", "reverse charge is for business customers in other EU states"));
                }
                let v =
                    self.vat_id.as_deref().ok_or_else(|| err("vat_id", "reverse charge needs the buyer's VAT id"))?;
                vat_id("vat_id", v, &self.country)?;
            }
            VatTreatment::NotTaxable => {
                if self.country == "DE" || in_eu {
                    return Err(err("vat_treatment", "not taxable (O) is for business customers outside the EU"));
                }
                if self.vat_id.is_some() {
                    return Err(err("vat_id", "a customer outside the EU has no EU VAT id (EN 16931 BR-O-02)"));
                }
            }
        }
        Ok(())
    }
}

/// A commitment: `committed_gpu_hours_per_month` GPU-hours of `sku` each month from `start_month`
/// to `end_month` (whole months, inclusive) at the committed rate, paid even when unused
/// (take-or-pay); hours beyond at the overage rate; an optional discount in percent on all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub contract_id: String,
    pub tenant_id: String,
    pub sku: String,
    #[serde(with = "dec")]
    pub committed_gpu_hours_per_month: Decimal,
    #[serde(with = "dec")]
    pub committed_eur_per_gpu_hour: Decimal,
    #[serde(with = "dec")]
    pub overage_eur_per_gpu_hour: Decimal,
    #[serde(with = "dec")]
    pub discount_percent: Decimal,
    pub start_month: Period,
    pub end_month: Period,
}

impl Contract {
    pub fn validate(&self) -> Result<(), RefError> {
        let id_ok = (2..=40).contains(&self.contract_id.len())
            && self.contract_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(err("contract_id", "2 to 40 letters, digits, - or _"));
        }
        tenant(&self.tenant_id)?;
        sku_id("sku", &self.sku)?;
        positive("committed_gpu_hours_per_month", self.committed_gpu_hours_per_month)?;
        scale("committed_gpu_hours_per_month", self.committed_gpu_hours_per_month, 0)?;
        for (f, v) in [
            ("committed_eur_per_gpu_hour", self.committed_eur_per_gpu_hour),
            ("overage_eur_per_gpu_hour", self.overage_eur_per_gpu_hour),
        ] {
            positive(f, v)?;
            scale(f, v, 4)?;
        }
        if self.discount_percent < Decimal::ZERO || self.discount_percent >= Decimal::ONE_HUNDRED {
            return Err(err("discount_percent", "0 or more and less than 100"));
        }
        scale("discount_percent", self.discount_percent, 2)?;
        if self.end_month < self.start_month {
            return Err(err("end_month", "before start_month"));
        }
        Ok(())
    }

    pub fn covers(&self, p: Period) -> bool {
        self.start_month <= p && p <= self.end_month
    }
}

/// A correction of metered usage, decided by finance: add (or, negative, take away) GPU-seconds of
/// one tenant, SKU, project and hour, with the reason and the usage events it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageAdjustment {
    pub tenant_id: String,
    pub gpu_sku: String,
    pub project: String,
    pub hour: DateTime<Utc>,
    #[serde(with = "dec")]
    pub gpu_seconds_delta: Decimal,
    pub reason: String,
    #[serde(default)]
    pub usage_event_ids: Vec<Uuid>,
}

impl UsageAdjustment {
    pub fn validate(&self) -> Result<(), RefError> {
        tenant(&self.tenant_id)?;
        sku_id("gpu_sku", &self.gpu_sku)?;
        text("project", &self.project, crate::usage::PROJECT_LEN_MAX)?;
        if self.hour.timestamp() % 3600 != 0 || self.hour.timestamp_subsec_nanos() != 0 {
            return Err(err("hour", "the start of a clock hour (UTC), e.g. 2026-11-03T10:00:00Z"));
        }
        if self.gpu_seconds_delta.is_zero() {
            return Err(err("gpu_seconds_delta", "must not be zero"));
        }
        scale("gpu_seconds_delta", self.gpu_seconds_delta, 6)?;
        text("reason", &self.reason, 500)?;
        if self.usage_event_ids.len() > 1000 {
            return Err(err("usage_event_ids", "at most 1000"));
        }
        Ok(())
    }
}

/// One reference event as finance submits it: kind and data (and optionally its event id, which
/// makes loading the same file twice a no-op).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceInput {
    #[serde(default)]
    pub event_id: Option<Uuid>,
    pub kind: String,
    pub data: serde_json::Value,
}

/// A validated reference event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Seller(Seller),
    PriceList(PriceList),
    Profile(BillingProfile),
    Contract(Contract),
    Adjustment(UsageAdjustment),
    /// An entry of the SKU catalogue (billing/catalogue.rs).
    Sku(super::catalogue::SkuSet),
    NamespaceMap(NamespaceMapping),
}

impl Reference {
    /// Parses and validates the `data` of a reference event of `kind`.
    pub fn parse(kind: &str, data: &serde_json::Value) -> Result<Reference, RefError> {
        fn de<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Result<T, RefError> {
            serde_json::from_value(data.clone()).map_err(|e| err("data", e.to_string()))
        }
        let r = match kind {
            KIND_SELLER => Reference::Seller(de(data)?),
            KIND_PRICE_LIST => Reference::PriceList(de(data)?),
            KIND_PROFILE => Reference::Profile(de(data)?),
            KIND_CONTRACT => Reference::Contract(de(data)?),
            KIND_ADJUSTMENT => Reference::Adjustment(de(data)?),
            super::catalogue::KIND_SKU => Reference::Sku(de(data)?),
            KIND_NAMESPACE_MAP => Reference::NamespaceMap(de(data)?),
            other => return Err(err("kind", format!("{other:?} is not one of {REFERENCE_KINDS:?}"))),
        };
        match &r {
            Reference::Seller(x) => x.validate()?,
            Reference::PriceList(x) => x.validate()?,
            Reference::Profile(x) => x.validate()?,
            Reference::Contract(x) => x.validate()?,
            Reference::Adjustment(x) => x.validate()?,
            Reference::Sku(x) => x.validate()?,
            Reference::NamespaceMap(x) => x.validate()?,
        }
        Ok(r)
    }

    /// Rules for a new event that events already in the ledger predate (so they are checked when
    /// finance loads an event, not when the ledger is replayed): a buyer reference that is a
    /// Leitweg-ID passes its check digits; the seller names its commercial register and managing
    /// directors.
    pub fn check_new(&self) -> Result<(), RefError> {
        match self {
            Reference::Profile(p) => {
                super::leitweg::validate(&p.buyer_reference).map_err(|m| err("buyer_reference", m))
            }
            Reference::Seller(s) => s.check_register(),
            _ => Ok(()),
        }
    }

    /// Parses, validates and checks a new event (`parse`, then `check_new`): what a load runs.
    pub fn parse_new(kind: &str, data: &serde_json::Value) -> Result<Reference, RefError> {
        let r = Reference::parse(kind, data)?;
        r.check_new()?;
        Ok(r)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Reference::Seller(_) => KIND_SELLER,
            Reference::PriceList(_) => KIND_PRICE_LIST,
            Reference::Profile(_) => KIND_PROFILE,
            Reference::Contract(_) => KIND_CONTRACT,
            Reference::Adjustment(_) => KIND_ADJUSTMENT,
            Reference::Sku(_) => super::catalogue::KIND_SKU,
            Reference::NamespaceMap(_) => KIND_NAMESPACE_MAP,
        }
    }

    /// The tenant column of the ledger row.
    pub fn tenant(&self) -> &str {
        match self {
            Reference::Seller(_) | Reference::PriceList(_) | Reference::Sku(_) => NO_TENANT,
            Reference::Profile(p) => &p.tenant_id,
            Reference::Contract(c) => &c.tenant_id,
            Reference::Adjustment(a) => &a.tenant_id,
            Reference::NamespaceMap(m) => m.tenant_id.as_deref().unwrap_or(NO_TENANT),
        }
    }

    /// The canonical `data` (keys sorted, decimals as strings).
    pub fn data(&self) -> serde_json::Value {
        match self {
            Reference::Seller(x) => serde_json::to_value(x),
            Reference::PriceList(x) => serde_json::to_value(x),
            Reference::Profile(x) => serde_json::to_value(x),
            Reference::Contract(x) => serde_json::to_value(x),
            Reference::Adjustment(x) => serde_json::to_value(x),
            Reference::Sku(x) => serde_json::to_value(x),
            Reference::NamespaceMap(x) => serde_json::to_value(x),
        }
        .expect("reference data serializes")
    }
}

/// The reference data as of a point of the log: the fold of its reference events in order.
#[derive(Debug, Clone, Default)]
pub struct ReferenceState {
    pub seller: Option<Seller>,
    /// Per SKU, per effective instant: the latest price list.
    pub prices: BTreeMap<String, BTreeMap<DateTime<Utc>, PriceList>>,
    /// Per (SKU, MIG profile), per effective instant: the latest price list of that slice.
    pub slice_prices: BTreeMap<(String, String), BTreeMap<DateTime<Utc>, PriceList>>,
    /// Per tenant: the latest profile and the event id of that version.
    pub profiles: BTreeMap<String, (BillingProfile, Uuid)>,
    /// Per contract id: the latest version.
    pub contracts: BTreeMap<String, Contract>,
    /// The SKU catalogue: the initial one and every `sku.set`.
    pub catalogue: super::catalogue::Catalogue,
    /// Namespace → tenant, effective-dated (`namespace.map`).
    pub namespaces: NamespaceMap,
}

impl ReferenceState {
    /// Checks an event against the state it would join (rules that need more than the event):
    /// contracts of a tenant and SKU do not overlap, and nothing changes how a closed period is
    /// rated (a price list taking effect in it, a contract's terms for it) or whom its usage is
    /// billed to (a namespace mapping taking effect in it).
    pub fn admits(&self, r: &Reference, closed: &std::collections::BTreeSet<Period>) -> Result<(), RefError> {
        self.catalogue.admits(r)?;
        match r {
            Reference::PriceList(p) => {
                if let Some(q) = closed.iter().find(|q| q.end() > p.effective_from) {
                    return Err(err(
                        "effective_from",
                        format!("{} would change the prices of {q}, which is closed; prices take effect after the last closed period", p.effective_from),
                    ));
                }
            }
            Reference::NamespaceMap(m) => {
                // As prices: the collector bills a namespace's minutes to the tenant mapped at
                // their start, so a mapping effective inside a closed period would say that usage
                // already invoiced belonged to someone else.
                if let Some(q) = closed.iter().find(|q| q.end() > m.effective_from) {
                    return Err(err(
                        "effective_from",
                        format!("{} would change whom usage of {q} is billed to, which is closed; namespace mappings take effect after the last closed period", m.effective_from),
                    ));
                }
            }
            Reference::Contract(c) => {
                for other in self.contracts.values() {
                    let overlaps = other.contract_id != c.contract_id
                        && other.tenant_id == c.tenant_id
                        && other.sku == c.sku
                        && other.start_month <= c.end_month
                        && c.start_month <= other.end_month;
                    if overlaps {
                        return Err(err(
                            "start_month",
                            format!(
                                "contract {} already commits {} for {} in overlapping months",
                                other.contract_id, c.sku, c.tenant_id
                            ),
                        ));
                    }
                }
                let old = self.contracts.get(&c.contract_id);
                if let Some(old) = old {
                    if old.tenant_id != c.tenant_id || old.sku != c.sku {
                        return Err(err("contract_id", "a contract keeps its tenant and SKU; start a new contract id"));
                    }
                }
                let terms = |x: &Contract| {
                    (
                        x.committed_gpu_hours_per_month,
                        x.committed_eur_per_gpu_hour,
                        x.overage_eur_per_gpu_hour,
                        x.discount_percent,
                    )
                };
                for &q in closed {
                    let before = old.filter(|o| o.covers(q)).map(terms);
                    let after = c.covers(q).then(|| terms(c));
                    if before != after {
                        return Err(err("start_month", format!("would change the terms of {q}, which is closed")));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub fn apply(&mut self, r: Reference, event_id: Uuid) {
        match r {
            Reference::Seller(s) => self.seller = Some(s),
            Reference::PriceList(p) => {
                let prices = match p.mig_profile.clone() {
                    Some(m) => self.slice_prices.entry((p.sku.clone(), m)).or_default(),
                    None => self.prices.entry(p.sku.clone()).or_default(),
                };
                prices.insert(p.effective_from, p);
            }
            Reference::Profile(p) => {
                self.profiles.insert(p.tenant_id.clone(), (p, event_id));
            }
            Reference::Contract(c) => {
                self.contracts.insert(c.contract_id.clone(), c);
            }
            Reference::Adjustment(_) => {}
            Reference::Sku(s) => self.catalogue.apply(s),
            Reference::NamespaceMap(m) => self.namespaces.apply(&m),
        }
    }

    /// The price list of `sku` in force at `hour`.
    pub fn price_at(&self, sku: &str, hour: DateTime<Utc>) -> Option<&PriceList> {
        self.prices.get(sku)?.range(..=hour).next_back().map(|(_, p)| p)
    }

    /// The price list of MIG profile `profile` of `sku` in force at `hour`, if one was loaded.
    pub fn slice_price_at(&self, sku: &str, profile: &str, hour: DateTime<Utc>) -> Option<&PriceList> {
        self.slice_prices.get(&(sku.to_string(), profile.to_string()))?.range(..=hour).next_back().map(|(_, p)| p)
    }

    /// The contract of a tenant for a SKU in a period, if any.
    pub fn contract_for(&self, tenant_id: &str, sku: &str, p: Period) -> Option<&Contract> {
        self.contracts.values().find(|c| c.tenant_id == tenant_id && c.sku == sku && c.covers(p))
    }
}
