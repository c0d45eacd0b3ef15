//! MEASUREMENT ONLY: compiled in only with the feature `measure-without-guards`, which
//! `scripts/bench-gap.sh` turns on for a build of its own (target/bench-gap). There, an
//! environment variable switches off one of the ledger's two guards to measure what it costs
//! PostgreSQL: `GAP_NO_PROBE` (no GPU-time probe, so overlaps go unseen) and `GAP_NO_IDS` (no
//! event-id key, so duplicates go unseen). No product build has the feature: without the guards
//! the ledger would bill a GPU-second twice.

use domain::decide::Interval;
use uuid::Uuid;

/// No GPU time is asked about when `GAP_NO_PROBE` is set.
pub(super) fn without_probe(asked: Vec<(Uuid, Interval)>) -> Vec<(Uuid, Interval)> {
    if std::env::var_os("GAP_NO_PROBE").is_some() {
        Vec::new()
    } else {
        asked
    }
}

/// No event id is written when `GAP_NO_IDS` is set.
pub(super) fn without_ids(ids: &mut Vec<(Uuid, &str)>) {
    if std::env::var_os("GAP_NO_IDS").is_some() {
        ids.clear();
    }
}
