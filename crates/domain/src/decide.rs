//! The decision that makes the ledger what it is: for each message of a batch, in offset order,
//! whether it is ledgered, a duplicate, or quarantined (rejected by the validator, a conflict, an
//! overlap). Pure: the store reads what the ledger already holds for the batch ([`Known`]) and
//! writes what this decides; the rule itself is here, testable without a database (as
//! TigerBeetle keeps its state machine apart from its storage).
//!
//! Messages are decided exactly as if they came one at a time, so the outcome never depends on
//! where batches are cut:
//! 1. a message the validator rejected stays rejected, with its code;
//! 2. an event of a SKU the catalogue does not list (in force at the interval's start) is
//!    quarantined as `unknown_sku`;
//! 3. an event id seen before (in the ledger, or earlier in the batch) is a duplicate when the
//!    content is equal and a conflict otherwise;
//! 4. else usage overlapping GPU time already taken (in the ledger, or by an event ledgered
//!    earlier in the batch) for the same GPU is an overlap. A MIG instance is part of its GPU:
//!    two instances of one GPU do not overlap each other, an instance overlaps itself and the
//!    whole GPU (see [`Slot`]);
//! 5. else the event is ledgered, and becomes the reference for its id and its GPU time.

use crate::usage::{format_instant, Rejection, RejectionCode, UsageRecorded};
use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use uuid::Uuid;

/// `[start, end)` of GPU time.
pub type Interval = (DateTime<Utc>, DateTime<Utc>);

/// Which part of a GPU an interval holds: `None` the whole GPU, `Some(i)` its MIG instance `i`
/// (the event's `gpu_id` is the parent GPU's). Two slots of one GPU collide when either is the
/// whole GPU or both are the same instance ([`slots_collide`]).
pub type Slot = Option<u8>;

/// Whether GPU time held in slot `a` and in slot `b` of the same GPU is the same GPU time.
pub fn slots_collide(a: Slot, b: Slot) -> bool {
    a.is_none() || b.is_none() || a == b
}

/// Disjoint intervals of one slot, by start.
type Runs = BTreeMap<DateTime<Utc>, DateTime<Utc>>;

/// Does `[s, e)` overlap any of these disjoint intervals? Only the last one starting before `e`
/// can.
fn runs_overlap(runs: &Runs, s: DateTime<Utc>, e: DateTime<Utc>) -> bool {
    runs.range(..e).next_back().is_some_and(|(_, end)| *end > s)
}

/// The GPU time taken on one GPU: as a whole, and per MIG instance.
#[derive(Debug, Default, Clone)]
struct Device {
    whole: Runs,
    instances: BTreeMap<u8, Runs>,
}

/// GPU time known to be taken, per GPU and slot: disjoint intervals by start in each slot.
#[derive(Debug, Default, Clone)]
pub struct GpuTime(FxHashMap<Uuid, Device>);

impl GpuTime {
    /// Does `[s, e)` in `slot` of `gpu` overlap any interval of a slot it collides with?
    pub fn overlaps(&self, gpu: &Uuid, slot: Slot, s: DateTime<Utc>, e: DateTime<Utc>) -> bool {
        let Some(d) = self.0.get(gpu) else { return false };
        runs_overlap(&d.whole, s, e)
            || match slot {
                Some(i) => d.instances.get(&i).is_some_and(|r| runs_overlap(r, s, e)),
                None => d.instances.values().any(|r| runs_overlap(r, s, e)),
            }
    }

    /// Records `[s, e)` of `slot` of `gpu` as taken. The caller keeps the intervals of a slot
    /// disjoint (ledgered rows never overlap; [`decide`] adds only what overlaps nothing).
    pub fn insert(&mut self, gpu: Uuid, slot: Slot, s: DateTime<Utc>, e: DateTime<Utc>) {
        let d = self.0.entry(gpu).or_default();
        match slot {
            None => d.whole.insert(s, e),
            Some(i) => d.instances.entry(i).or_default().insert(s, e),
        };
    }

    /// Every interval, as `(gpu, slot, start, end)`.
    pub fn intervals(&self) -> impl Iterator<Item = (Uuid, Slot, DateTime<Utc>, DateTime<Utc>)> + '_ {
        self.0.iter().flat_map(|(g, d)| {
            let whole = d.whole.iter().map(move |(s, e)| (*g, None, *s, *e));
            let parts = d.instances.iter().flat_map(move |(i, r)| r.iter().map(move |(s, e)| (*g, Some(*i), *s, *e)));
            whole.chain(parts)
        })
    }
}

/// The GPU time a batch asks about: per GPU, each run of touching or overlapping intervals
/// becomes one window `[lo, hi)`, sorted by GPU and start.
pub fn windows(intervals: impl Iterator<Item = (Uuid, DateTime<Utc>, DateTime<Utc>)>) -> Vec<(Uuid, Interval)> {
    let mut all: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = intervals.collect();
    all.sort_unstable();
    let mut out: Vec<(Uuid, Interval)> = Vec::new();
    for (g, s, e) in all {
        match out.last_mut() {
            Some((gpu, current)) if *gpu == g && s <= current.1 => current.1 = current.1.max(e),
            _ => out.push((g, (s, e))),
        }
    }
    out
}

/// What an event id of the batch is known as in the ledger, to tell a duplicate from a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownId {
    /// A ledgered usage row whose GPU time the batch touches: its content.
    Row(Box<UsageRecorded>),
    /// In the ledger's id index only: the fingerprint of its content where one is kept (rows of
    /// other kinds, usage rows from before typed columns), else `None`: a usage row whose GPU
    /// time the batch does not touch, so its content differs from any event that carries the id.
    Id(Option<[u8; 32]>),
}

/// What the ledger already holds for a batch: the committed GPU time its events touch, and what
/// its event ids are known as. Enough that [`decide`] gives the answer it would give against the
/// whole ledger: GPU time outside the batch's windows cannot overlap it, and an id not here is
/// new (the store looks up every id of the batch, or relies on the id index's unique key to send
/// the batch back to be looked up whole).
#[derive(Debug, Default, Clone)]
pub struct Known {
    pub busy: GpuTime,
    /// The SKU catalogue as the ledger holds it (the initial one by default).
    pub catalogue: std::sync::Arc<crate::billing::catalogue::Catalogue>,
    /// By event id, then tenant (an id is nearly always one tenant's: a short list, looked up
    /// by a borrowed tenant without allocating a key).
    ids: FxHashMap<Uuid, Vec<(String, KnownId)>>,
}

impl Known {
    /// Records a ledgered id; the first record of an (event id, tenant) stands.
    pub fn add_id(&mut self, event_id: Uuid, tenant: String, known: KnownId) {
        let tenants = self.ids.entry(event_id).or_default();
        if !tenants.iter().any(|(t, _)| *t == tenant) {
            tenants.push((tenant, known));
        }
    }

    /// Whether this event's id is known already.
    pub fn has_id(&self, e: &UsageRecorded) -> bool {
        self.lookup(e).is_some()
    }

    fn lookup(&self, e: &UsageRecorded) -> Option<&KnownId> {
        self.ids.get(&e.event_id)?.iter().find(|(t, _)| *t == e.tenant_id).map(|(_, k)| k)
    }
}

/// What becomes of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Ledger,
    /// Counted and dropped: the same event is in the ledger or earlier in the batch.
    Duplicate,
    Quarantine(RejectionCode, String),
}

/// The fates of a batch, one list per partition in the order given, one fate per message, and
/// the GPU time of the events it ledgers.
#[derive(Debug, Default)]
pub struct Decision {
    pub fates: Vec<Vec<Fate>>,
    pub taken: GpuTime,
}

/// Decides every message of a batch (partitions in the order given, messages in offset order)
/// against what the ledger holds.
pub fn decide<'b, P, M>(partitions: P, known: &Known) -> Decision
where
    P: IntoIterator<Item = M>,
    M: IntoIterator<Item = &'b Result<UsageRecorded, Rejection>>,
{
    let mut taken = GpuTime::default();
    // Ids ledgered earlier in this batch; never a key `known` has (those are not ledgered again).
    let mut earlier: FxHashMap<(Uuid, &'b str), &'b UsageRecorded> = FxHashMap::default();
    let mut fates = Vec::new();
    for messages in partitions {
        let mut f = Vec::new();
        for verdict in messages {
            f.push(match verdict {
                Err(r) => Fate::Quarantine(r.code, r.message.clone()),
                Ok(e) => fate(e, known, &mut earlier, &mut taken),
            });
        }
        fates.push(f);
    }
    Decision { fates, taken }
}

/// The fate of one valid event; a ledgered one is recorded in `earlier` and `taken`.
fn fate<'b>(
    e: &'b UsageRecorded,
    known: &Known,
    earlier: &mut FxHashMap<(Uuid, &'b str), &'b UsageRecorded>,
    taken: &mut GpuTime,
) -> Fate {
    let conflict = |why: &str| {
        Fate::Quarantine(RejectionCode::Conflict, format!("event id {} {why} with other content", e.event_id))
    };
    if !known.catalogue.knows(&e.gpu_sku, e.interval_start) {
        return Fate::Quarantine(
            RejectionCode::UnknownSku,
            format!("data.gpu_sku {:?} is not in the SKU catalogue at {}", e.gpu_sku, format_instant(e.interval_start)),
        );
    }
    match known.lookup(e) {
        Some(KnownId::Row(r)) if **r == *e => return Fate::Duplicate,
        Some(KnownId::Id(Some(p))) if *p == e.fingerprint() => return Fate::Duplicate,
        Some(_) => return conflict("is already in the ledger"),
        None => {}
    }
    match earlier.get(&(e.event_id, e.tenant_id.as_str())) {
        Some(r) if *r == e => return Fate::Duplicate,
        Some(_) => return conflict("came earlier in this batch"),
        None => {}
    }
    let slot = e.slot();
    if known.busy.overlaps(&e.gpu_id, slot, e.interval_start, e.interval_end)
        || taken.overlaps(&e.gpu_id, slot, e.interval_start, e.interval_end)
    {
        return overlap(e);
    }
    earlier.insert((e.event_id, e.tenant_id.as_str()), e);
    taken.insert(e.gpu_id, slot, e.interval_start, e.interval_end);
    Fate::Ledger
}

fn overlap(e: &UsageRecorded) -> Fate {
    let part = e.mig.as_ref().map(|m| format!(" (MIG instance {})", m.instance)).unwrap_or_default();
    Fate::Quarantine(
        RejectionCode::Overlap,
        format!(
            "GPU-{}{part} is already billed for part of [{}, {})",
            e.gpu_id,
            format_instant(e.interval_start),
            format_instant(e.interval_end)
        ),
    )
}

#[cfg(test)]
mod tests;
