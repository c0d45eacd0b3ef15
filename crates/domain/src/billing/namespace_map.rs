//! `namespace.map`: which tenant a Kubernetes namespace's GPU time is billed to, from when.
//! Reference data like prices and contracts, effective-dated and kept in the ledger, so an
//! auditor sees why the collector billed a namespace to a tenant. A namespace mapped to nobody
//! at an instant is unmapped there: reported, never billed to a guess.

use super::reference::RefError;
use crate::usage::is_valid_tenant_id;
use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const KIND_NAMESPACE_MAP: &str = "namespace.map";

/// From `effective_from` on, the namespace (in `cluster`, or in every cluster when absent) is
/// billed to `tenant_id`; `tenant_id: null` ends a mapping (the namespace is unmapped again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceMapping {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub tenant_id: Option<String>,
    pub effective_from: DateTime<Utc>,
}

fn err(field: &str, message: impl Into<String>) -> RefError {
    RefError { field: field.to_string(), message: message.into() }
}

/// A Kubernetes name: a DNS-1123 label (lowercase letters, digits, `-`; at most 63).
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

impl NamespaceMapping {
    pub fn validate(&self) -> Result<(), RefError> {
        if !is_dns_label(&self.namespace) {
            return Err(err("namespace", "must be a Kubernetes namespace name (DNS-1123 label)"));
        }
        if self.cluster.as_deref().is_some_and(|c| !is_dns_label(c)) {
            return Err(err("cluster", "must be lowercase letters, digits and '-', at most 63"));
        }
        if self.tenant_id.as_deref().is_some_and(|t| !is_valid_tenant_id(t)) {
            return Err(err("tenant_id", "is not a tenant id"));
        }
        // The collector cuts time at minute boundaries; a change inside a minute would split
        // one minute between two tenants by a rule the events cannot show.
        if self.effective_from.second() != 0 || self.effective_from.nanosecond() != 0 {
            return Err(err("effective_from", "must be a whole minute"));
        }
        Ok(())
    }
}

/// One namespace's tenant from each instant on (`None`: unmapped from then).
type Versions = BTreeMap<DateTime<Utc>, Option<String>>;

/// The fold of the `namespace.map` events: per (cluster or all, namespace), the tenant from
/// each instant on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceMap {
    entries: BTreeMap<(Option<String>, String), Versions>,
}

impl NamespaceMap {
    pub fn apply(&mut self, m: &NamespaceMapping) {
        let key = (m.cluster.clone(), m.namespace.clone());
        self.entries.entry(key).or_default().insert(m.effective_from, m.tenant_id.clone());
    }

    /// The tenant of `namespace` at `at` in `cluster`: a mapping for that cluster wins over one
    /// for every cluster.
    pub fn tenant_of(&self, cluster: Option<&str>, namespace: &str, at: DateTime<Utc>) -> Option<String> {
        let lookup = |c: Option<&str>| {
            let versions = self.entries.get(&(c.map(str::to_string), namespace.to_string()))?;
            versions.range(..=at).next_back().map(|(_, t)| t.clone())
        };
        match cluster.and_then(|c| lookup(Some(c))) {
            Some(t) => t,
            None => lookup(None).flatten(),
        }
    }
}

/// The map as the meter asks it, for one cluster.
pub struct ClusterTenants<'a> {
    pub map: &'a NamespaceMap,
    pub cluster: Option<&'a str>,
}

impl crate::meter::Tenants for ClusterTenants<'_> {
    fn tenant_of(&self, namespace: &str, at: DateTime<Utc>) -> Option<String> {
        self.map.tenant_of(self.cluster, namespace, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(ns: &str, cluster: Option<&str>, tenant: Option<&str>, from: &str) -> NamespaceMapping {
        NamespaceMapping {
            namespace: ns.into(),
            cluster: cluster.map(Into::into),
            tenant_id: tenant.map(Into::into),
            effective_from: from.parse().unwrap(),
        }
    }

    #[test]
    fn effective_dated_and_cluster_specific() {
        let mut map = NamespaceMap::default();
        map.apply(&m("risk", None, Some("rheinbank"), "2026-10-01T00:00:00Z"));
        map.apply(&m("risk", None, Some("isarbank"), "2026-10-15T00:00:00Z"));
        map.apply(&m("risk", Some("fra2"), Some("mainbank"), "2026-10-01T00:00:00Z"));
        map.apply(&m("risk", None, None, "2026-11-01T00:00:00Z"));
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(map.tenant_of(None, "risk", at("2026-09-30T23:59:59Z")), None);
        assert_eq!(map.tenant_of(None, "risk", at("2026-10-01T00:00:00Z")).as_deref(), Some("rheinbank"));
        assert_eq!(map.tenant_of(Some("fra1"), "risk", at("2026-10-20T00:00:00Z")).as_deref(), Some("isarbank"));
        assert_eq!(map.tenant_of(Some("fra2"), "risk", at("2026-10-20T00:00:00Z")).as_deref(), Some("mainbank"));
        assert_eq!(map.tenant_of(None, "risk", at("2026-11-02T00:00:00Z")), None);
        assert_eq!(map.tenant_of(None, "other", at("2026-10-20T00:00:00Z")), None);
    }

    #[test]
    fn a_mapping_may_not_take_effect_in_a_closed_period() {
        use crate::billing::reference::{Reference, ReferenceState};
        use crate::billing::Period;
        let state = ReferenceState::default();
        let closed = std::collections::BTreeSet::from([Period::parse("2026-08").unwrap()]);
        let admits =
            |from: &str| state.admits(&Reference::NamespaceMap(m("risk", None, Some("rheinbank"), from)), &closed);
        // August in Berlin ends at 22:00 UTC on the 31st (summer time).
        let e = admits("2026-08-31T21:59:00Z").unwrap_err();
        assert_eq!(e.field, "effective_from");
        assert!(e.message.contains("which is closed"), "{}", e.message);
        assert!(admits("2026-01-01T00:00:00Z").is_err());
        assert!(admits("2026-08-31T22:00:00Z").is_ok());
        assert!(state
            .admits(&Reference::NamespaceMap(m("risk", None, None, "2026-08-01T00:00:00Z")), &closed)
            .is_err());
        assert!(state
            .admits(&Reference::NamespaceMap(m("risk", None, None, "2026-09-01T00:00:00Z")), &Default::default())
            .is_ok());
    }

    #[test]
    fn validation() {
        assert!(m("risk", None, Some("rheinbank"), "2026-10-01T00:00:00Z").validate().is_ok());
        assert!(m("Risk", None, Some("rheinbank"), "2026-10-01T00:00:00Z").validate().is_err());
        assert!(m("risk", None, Some("Rhein Bank"), "2026-10-01T00:00:00Z").validate().is_err());
        assert!(m("risk", None, Some("rheinbank"), "2026-10-01T00:00:30Z").validate().is_err());
        assert!(m("risk", Some("FRA"), Some("rheinbank"), "2026-10-01T00:00:00Z").validate().is_err());
    }
}
