//! The SAP master data the journal needs beyond the budget's: a tax code and a revenue account per
//! VAT category (S domestic 19 %, AE reverse charge, O not taxable in Germany), so that the VAT
//! return lines and the EC Sales List can be derived from the postings; and a customer (debitor)
//! account per tenant, so that receivables are open items of a customer in SAP rather than bare
//! postings to the reconciliation account.

use super::events::{err, BudgetError};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The VAT categories an invoice can carry (EN 16931 BT-151, as `billing::reference::VatTreatment`).
pub const VAT_CATEGORIES: &[&str] = &["S", "AE", "O"];

/// The tax code (SAP `MWSKZ`, 2 characters) and revenue account of one VAT category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxCode {
    /// S, AE or O.
    pub category: String,
    pub tax_code: String,
    /// The revenue G/L account for invoices of this category (1 to 10 digits).
    pub revenue_account: String,
    pub name: String,
    pub date: NaiveDate,
}

/// The SAP customer account (`KUNNR`, up to 10 characters) of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub tenant_id: String,
    pub customer: String,
    pub date: NaiveDate,
}

fn alnum(field: &str, v: &str, max: usize) -> Result<(), BudgetError> {
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Err(err(field, format!("{v:?}: 1 to {max} capital letters or digits")));
    }
    Ok(())
}

pub(crate) fn account(field: &str, v: &str) -> Result<(), BudgetError> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(field, format!("{v:?}: 1 to 10 digits")));
    }
    Ok(())
}

impl TaxCode {
    pub fn validate(&self) -> Result<(), BudgetError> {
        if !VAT_CATEGORIES.contains(&self.category.as_str()) {
            return Err(err("category", format!("{:?} is not one of {VAT_CATEGORIES:?}", self.category)));
        }
        alnum("tax_code", &self.tax_code, 2)?;
        account("revenue_account", &self.revenue_account)?;
        if self.name.trim().is_empty() || self.name.chars().count() > 200 {
            return Err(err("name", "1 to 200 characters"));
        }
        Ok(())
    }
}

impl Customer {
    pub fn validate(&self) -> Result<(), BudgetError> {
        if self.tenant_id.is_empty() || self.tenant_id.len() > 64 || self.tenant_id.chars().any(char::is_control) {
            return Err(err("tenant_id", "1 to 64 printable characters"));
        }
        alnum("customer", &self.customer, 10)
    }
}

/// The one CO account assignment of a depreciation expense line (SAP takes one real CO object
/// per line: a cost centre or a WBS element, not both).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepreciationAssignment {
    /// The asset's cost centre (with its profit centre).
    #[default]
    CostCenter,
    /// The asset's WBS element (SAP derives the profit centre from it).
    WbsElement,
}

/// Who computes the monthly depreciation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepreciationSource {
    /// gpuledger: the journal carries one depreciation document per month.
    #[default]
    Journal,
    /// SAP Asset Accounting (its depreciation run) computes and posts it: the journal leaves it out.
    SapAssetAccounting,
}

/// How the journal posts depreciation, from `date` on (without one: cost centre, by the journal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepreciationPosting {
    pub assignment: DepreciationAssignment,
    pub computed_by: DepreciationSource,
    pub date: NaiveDate,
}
