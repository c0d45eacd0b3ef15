//! Why the store refused a request, and whose move it is next: the caller's input is invalid on
//! its own, it conflicts with what the ledger holds, or what it names is not there. Nothing was
//! written. Where the domain refused, its typed error is the source, so callers can match on it.

use crate::tokens::ROLES;
use chrono::{DateTime, Utc};
use domain::billing::close::CloseError;
use domain::billing::reference::RefError;
use domain::billing::Period;
use domain::budget::events::BudgetError;
use rust_decimal::Decimal;
use uuid::Uuid;

/// Whose fault a refusal is, and so what the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The input is wrong on its own: sent again unchanged, it is refused again. Fix it.
    Invalid,
    /// The input is well formed but conflicts with what the ledger holds (an event id used with
    /// other content, a closed period, a period not yet over, reference or master data missing):
    /// change the ledger or the input, or wait, then send it again.
    Conflict,
    /// What the input names is not in the ledger.
    NotFound,
}

/// What the domain found wrong with one item of a load (reference or budget data).
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

/// A request the store refused; nothing was written. Messages are for the person who sent it,
/// and hold no database text.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// An item of a load breaks its own rules (a field missing or out of range, an unknown kind).
    #[error("item {item} ({event_kind})")]
    InvalidItem {
        /// 1-based, in the order sent.
        item: usize,
        event_kind: String,
        #[source]
        source: ItemError,
    },
    /// An item of a load is valid on its own but not against the state it joins (a contract
    /// overlapping another, prices for a closed period, a budget exceeded, a closed cost centre).
    #[error("item {item} ({event_kind})")]
    ItemConflict {
        /// 1-based, in the order sent.
        item: usize,
        event_kind: &'static str,
        #[source]
        source: ItemError,
    },
    /// The same event id was sent before with other content.
    #[error("event id {event_id} of {tenant_id} is already in the ledger with other content")]
    EventIdReused { event_id: Uuid, tenant_id: String },
    /// A usage adjustment would leave an hour with fewer than zero GPU-seconds.
    #[error(
        "adjustment {event_id}: {tenant_id} {gpu_sku} {project} at {hour} has {gpu_seconds} GPU-seconds; taking {taken} would make it negative"
    )]
    NegativeHour {
        event_id: Uuid,
        tenant_id: String,
        gpu_sku: String,
        project: String,
        hour: DateTime<Utc>,
        gpu_seconds: Decimal,
        taken: Decimal,
    },
    #[error("period {period} is not over yet (it ends at {ends_at})")]
    PeriodNotOver { period: Period, ends_at: DateTime<Utc> },
    /// The close of a period cannot be planned from what the ledger holds (no seller, a tenant
    /// without a profile, usage without a price).
    #[error(transparent)]
    Close(#[from] CloseError),
    /// The SAP journal cannot be built from the budget's master data (no programme, a G/L account
    /// or allocation key missing).
    #[error(transparent)]
    Journal(BudgetError),
    #[error("role {0:?} is not one of {ROLES:?}")]
    UnknownRole(String),
    #[error("a tenant token names its tenant (--tenant); other roles do not")]
    TokenTenant,
    #[error("{0:?} is not a tenant id")]
    TenantId(String),
    /// A producer token's scope: one CloudEvents source and at least one tenant (`--source`,
    /// `--tenant`), which no other role has.
    #[error("{0}")]
    ProducerScope(&'static str),
    #[error("no token {0}")]
    NoToken(Uuid),
    #[error("tenant {0:?} is unknown: the ledger holds no usage, document or reference data of it")]
    UnknownTenant(String),
    #[error("schema name {0:?}: use [a-z_][a-z0-9_]*, at most 63 bytes, not public or pg_*")]
    SchemaName(String),
    #[error("schema {0} exists already; drop it or name another")]
    SchemaExists(String),
}

impl Refusal {
    /// Whose fault it is. The API answers each kind with its status (`api::error`).
    pub fn kind(&self) -> RefusalKind {
        use RefusalKind::*;
        match self {
            Refusal::InvalidItem { .. }
            | Refusal::UnknownRole(_)
            | Refusal::TokenTenant
            | Refusal::TenantId(_)
            | Refusal::ProducerScope(_)
            | Refusal::SchemaName(_) => Invalid,
            Refusal::ItemConflict { .. }
            | Refusal::EventIdReused { .. }
            | Refusal::NegativeHour { .. }
            | Refusal::PeriodNotOver { .. }
            | Refusal::Close(_)
            | Refusal::Journal(_)
            | Refusal::SchemaExists(_) => Conflict,
            Refusal::NoToken(_) | Refusal::UnknownTenant(_) => NotFound,
        }
    }

    /// The message and every cause under it, as `anyhow` prints an error with `{:#}`: what the
    /// person who sent the request reads (the CLI prints the same).
    pub fn message(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(r: Refusal, kind: RefusalKind, message: &str) {
        assert_eq!(r.kind(), kind, "{r:?}");
        assert_eq!(r.message(), message);
    }

    #[test]
    fn the_message_names_the_item_then_the_domains_cause_once() {
        let source = ItemError::Reference(RefError { field: "tiers".into(), message: "must not be empty".into() });
        check(
            Refusal::InvalidItem { item: 2, event_kind: "price_list.set".into(), source },
            RefusalKind::Invalid,
            "item 2 (price_list.set): tiers: must not be empty",
        );
        let source = ItemError::Budget(BudgetError {
            field: "cost_center".into(),
            message: "cost centre OP-RUN is closed".into(),
        });
        check(
            Refusal::ItemConflict { item: 1, event_kind: "purchase_order.placed", source },
            RefusalKind::Conflict,
            "item 1 (purchase_order.placed): cost_center: cost centre OP-RUN is closed",
        );
        check(
            Refusal::Close(CloseError::MissingProfiles(vec!["t".into()])),
            RefusalKind::Conflict,
            "tenants without a billing profile: [\"t\"]",
        );
        check(Refusal::NoToken(Uuid::nil()), RefusalKind::NotFound, &format!("no token {}", Uuid::nil()));
        check(
            Refusal::UnknownRole("root".into()),
            RefusalKind::Invalid,
            "role \"root\" is not one of [\"tenant\", \"finance\", \"auditor\", \"admin\", \"producer\"]",
        );
    }
}
