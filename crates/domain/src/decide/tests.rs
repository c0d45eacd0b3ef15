//! The decision, given/when/then and as properties: deciding a batch at once equals deciding its
//! messages one at a time against the whole ledger, however batches are cut and whatever part of
//! the ledger the store read for them.

use super::*;
use crate::GpuSeconds;
use chrono::{Duration, TimeZone};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
}

/// An event from small numbers, so that generated batches often share ids, GPUs and minutes.
fn event(id: u8, tenant: u8, gpu: u8, start_min: i64, len_min: i64) -> UsageRecorded {
    on_slot(id, tenant, gpu, None, start_min, len_min)
}

/// [`event`] on a MIG instance of the GPU (`Some(i)`) or the whole GPU (`None`).
fn on_slot(id: u8, tenant: u8, gpu: u8, slot: Slot, start_min: i64, len_min: i64) -> UsageRecorded {
    let start = t0() + Duration::minutes(start_min);
    UsageRecorded {
        event_id: Uuid::from_u128(u128::from(id) + 1),
        source: "test".into(),
        tenant_id: format!("t{tenant}"),
        gpu_sku: "nvidia-h100-sxm".into(),
        gpu_id: Uuid::from_u128(0x1000 + u128::from(gpu)),
        node: "n".into(),
        project: "p".into(),
        job: None,
        labels: Default::default(),
        interval_start: start,
        interval_end: start + Duration::minutes(len_min),
        gpu_seconds: GpuSeconds::new(Decimal::from(len_min * 60)).unwrap(),
        mig: slot.map(|instance| crate::usage::MigSlice { instance, profile: "1g.18gb".into() }),
        energy_wh: None,
    }
}

fn rejected() -> Result<UsageRecorded, Rejection> {
    Err(Rejection::new(RejectionCode::MalformedJson, "not JSON"))
}

fn one(messages: &[Result<UsageRecorded, Rejection>], known: &Known) -> Vec<Fate> {
    decide([messages], known).fates.remove(0)
}

fn code(f: &Fate) -> Option<RejectionCode> {
    match f {
        Fate::Quarantine(c, _) => Some(*c),
        _ => None,
    }
}

#[test]
fn a_new_event_is_ledgered_and_its_copy_in_the_same_batch_is_a_duplicate() {
    let e = event(1, 0, 0, 0, 1);
    let fates = one(&[Ok(e.clone()), Ok(e)], &Known::default());
    assert_eq!(fates, vec![Fate::Ledger, Fate::Duplicate]);
}

#[test]
fn the_same_id_with_other_content_is_a_conflict_earlier_in_the_batch_or_in_the_ledger() {
    let e = event(1, 0, 0, 0, 1);
    let other = event(1, 0, 0, 5, 1);
    let fates = one(&[Ok(e.clone()), Ok(other.clone())], &Known::default());
    assert_eq!(code(&fates[1]), Some(RejectionCode::Conflict));
    assert!(matches!(&fates[1], Fate::Quarantine(_, m) if m.contains("earlier in this batch")));

    let mut known = Known::default();
    known.add_id(e.event_id, e.tenant_id.clone(), KnownId::Row(Box::new(e.clone())));
    let fates = one(&[Ok(e), Ok(other)], &known);
    assert_eq!(fates[0], Fate::Duplicate);
    assert!(matches!(&fates[1], Fate::Quarantine(RejectionCode::Conflict, m) if m.contains("already in the ledger")));
}

#[test]
fn the_same_id_for_another_tenant_is_another_event() {
    let a = event(1, 0, 0, 0, 1);
    let b = event(1, 1, 1, 0, 1);
    assert_eq!(one(&[Ok(a), Ok(b)], &Known::default()), vec![Fate::Ledger, Fate::Ledger]);
}

#[test]
fn a_kept_fingerprint_tells_a_duplicate_from_a_conflict() {
    let e = event(1, 0, 0, 0, 1);
    let other = event(1, 0, 0, 5, 1);
    let mut known = Known::default();
    known.add_id(e.event_id, e.tenant_id.clone(), KnownId::Id(Some(e.fingerprint())));
    assert_eq!(one(&[Ok(e.clone())], &known), vec![Fate::Duplicate]);
    assert_eq!(code(&one(&[Ok(other)], &known)[0]), Some(RejectionCode::Conflict));
    // Without a fingerprint, the id belongs to a row whose GPU time the batch does not touch.
    let mut known = Known::default();
    known.add_id(e.event_id, e.tenant_id.clone(), KnownId::Id(None));
    assert_eq!(code(&one(&[Ok(e)], &known)[0]), Some(RejectionCode::Conflict));
}

#[test]
fn gpu_time_taken_in_the_ledger_or_earlier_in_the_batch_is_an_overlap() {
    let first = event(1, 0, 0, 0, 10);
    let inside = event(2, 1, 0, 5, 1);
    let after = event(3, 1, 0, 10, 1);
    let fates = one(&[Ok(first.clone()), Ok(inside.clone()), Ok(after)], &Known::default());
    assert_eq!(fates[0], Fate::Ledger);
    assert!(matches!(&fates[1], Fate::Quarantine(RejectionCode::Overlap, m) if m.contains("already billed")));
    assert_eq!(fates[2], Fate::Ledger, "an interval that starts where another ends does not overlap it");

    let mut known = Known::default();
    known.busy.insert(first.gpu_id, None, first.interval_start, first.interval_end);
    assert_eq!(code(&one(&[Ok(inside)], &known)[0]), Some(RejectionCode::Overlap));
}

#[test]
fn mig_instances_of_one_gpu_share_it_and_the_whole_gpu_overlaps_them() {
    let a = on_slot(1, 0, 0, Some(1), 0, 10);
    let b = on_slot(2, 1, 0, Some(2), 0, 10);
    let same_instance = on_slot(3, 1, 0, Some(1), 5, 1);
    let whole = on_slot(4, 1, 0, None, 9, 1);
    let other_gpu = on_slot(5, 1, 1, None, 0, 10);
    let fates =
        one(&[Ok(a.clone()), Ok(b), Ok(same_instance.clone()), Ok(whole.clone()), Ok(other_gpu)], &Known::default());
    assert_eq!(fates[..2], [Fate::Ledger, Fate::Ledger], "two instances of one GPU do not overlap");
    assert!(matches!(&fates[2], Fate::Quarantine(RejectionCode::Overlap, m) if m.contains("MIG instance 1")));
    assert_eq!(code(&fates[3]), Some(RejectionCode::Overlap), "the whole GPU overlaps its instances");
    assert_eq!(fates[4], Fate::Ledger);

    // The other way round, against the ledger: the whole GPU taken, an instance of it overlaps.
    let mut known = Known::default();
    known.busy.insert(whole.gpu_id, None, whole.interval_start, whole.interval_end);
    assert_eq!(code(&one(&[Ok(on_slot(6, 0, 0, Some(3), 9, 1))], &known)[0]), Some(RejectionCode::Overlap));
    assert_eq!(one(&[Ok(on_slot(6, 0, 0, Some(3), 10, 1))], &known), vec![Fate::Ledger]);
    let mut known = Known::default();
    known.busy.insert(a.gpu_id, Some(1), a.interval_start, a.interval_end);
    assert_eq!(one(&[Ok(on_slot(7, 0, 0, Some(0), 0, 10))], &known), vec![Fate::Ledger]);
    assert_eq!(code(&one(&[Ok(same_instance)], &known)[0]), Some(RejectionCode::Overlap));
}

#[test]
fn a_sku_the_catalogue_does_not_list_then_is_unknown() {
    use crate::billing::catalogue::{Catalogue, SkuSet};
    let mut new_model = event(1, 0, 0, 0, 1);
    new_model.gpu_sku = "nvidia-b300".into();
    let fates = one(&[Ok(new_model.clone())], &Known::default());
    assert!(matches!(&fates[0], Fate::Quarantine(RejectionCode::UnknownSku, m) if m.contains("nvidia-b300")));
    let mut catalogue = Catalogue::initial();
    catalogue.apply(SkuSet {
        sku: "nvidia-b300".into(),
        effective_from: t0() + Duration::hours(1),
        display_name: "NVIDIA B300".into(),
        model_names: vec!["NVIDIA B300".into()],
        mig_profiles: vec![],
    });
    let known = Known { catalogue: std::sync::Arc::new(catalogue), ..Known::default() };
    assert_eq!(code(&one(&[Ok(new_model.clone())], &known)[0]), Some(RejectionCode::UnknownSku), "not yet in force");
    let later = event(2, 0, 0, 60, 1);
    let mut later = UsageRecorded { gpu_sku: "nvidia-b300".into(), ..later };
    assert_eq!(one(&[Ok(later.clone())], &known), vec![Fate::Ledger]);
    later.gpu_sku = "nvidia-h100-sxm".into();
    assert_eq!(one(&[Ok(later)], &known), vec![Fate::Ledger], "the initial SKUs stay");
}

#[test]
fn a_rejection_keeps_its_code_and_message() {
    let fates = one(&[rejected()], &Known::default());
    assert_eq!(fates, vec![Fate::Quarantine(RejectionCode::MalformedJson, "not JSON".into())]);
}

#[test]
fn windows_join_touching_and_overlapping_intervals_per_gpu() {
    let g = Uuid::from_u128(7);
    let h = Uuid::from_u128(8);
    let m = |x| t0() + Duration::minutes(x);
    let w = windows([(g, m(0), m(1)), (h, m(0), m(1)), (g, m(1), m(2)), (g, m(5), m(6)), (g, m(4), m(5))].into_iter());
    assert_eq!(w, vec![(g, (m(0), m(2))), (g, (m(4), m(6))), (h, (m(0), m(1)))]);
}

/// The whole ledger as the model keeps it: every ledgered event in order.
#[derive(Default)]
struct Ledger(Vec<UsageRecorded>);

impl Ledger {
    /// Everything the ledger holds, as if the store had read all of it.
    fn all(&self) -> Known {
        let mut k = Known::default();
        for e in &self.0 {
            k.busy.insert(e.gpu_id, e.slot(), e.interval_start, e.interval_end);
            k.add_id(e.event_id, e.tenant_id.clone(), KnownId::Row(Box::new(e.clone())));
        }
        k
    }

    /// What the store reads for a batch: the rows whose GPU time its windows touch, with their
    /// content, and for its other ids that are ledgered only that they are (usage rows keep no
    /// fingerprint in the id index).
    fn for_batch(&self, batch: &[Result<UsageRecorded, Rejection>]) -> Known {
        let valid = || batch.iter().filter_map(|m| m.as_ref().ok());
        let asked = windows(valid().map(|e| (e.gpu_id, e.interval_start, e.interval_end)));
        let mut k = Known::default();
        for e in &self.0 {
            let touched =
                asked.iter().any(|(g, (lo, hi))| *g == e.gpu_id && e.interval_end > *lo && e.interval_start < *hi);
            if touched {
                k.busy.insert(e.gpu_id, e.slot(), e.interval_start, e.interval_end);
                k.add_id(e.event_id, e.tenant_id.clone(), KnownId::Row(Box::new(e.clone())));
            }
        }
        for b in valid() {
            if let Some(e) = self.0.iter().find(|e| e.event_id == b.event_id && e.tenant_id == b.tenant_id) {
                k.add_id(e.event_id, e.tenant_id.clone(), KnownId::Id(None));
            }
        }
        k
    }

    fn record(&mut self, batch: &[Result<UsageRecorded, Rejection>], fates: &[Fate]) {
        for (m, f) in batch.iter().zip(fates) {
            if let (Ok(e), Fate::Ledger) = (m, f) {
                self.0.push(e.clone());
            }
        }
    }
}

/// A message from a small pool of events (so that duplicates, conflicts and overlaps are common),
/// or a rejection.
fn message() -> impl Strategy<Value = Result<UsageRecorded, Rejection>> {
    prop_oneof![
        9 => (0u8..5, 0u8..2, 0u8..3, prop_oneof![Just(None), Just(Some(0u8)), Just(Some(1u8))], 0i64..16, 1i64..4)
            .prop_map(|(id, t, g, slot, s, l)| Ok(on_slot(id, t, g, slot, s, l))),
        1 => Just(rejected()),
    ]
}

/// Messages cut into batches, each batch into partitions: `(messages, cuts)`.
fn cut_messages() -> impl Strategy<Value = (Vec<Result<UsageRecorded, Rejection>>, Vec<bool>, Vec<bool>)> {
    proptest::collection::vec(message(), 0..40).prop_flat_map(|ms| {
        let n = ms.len();
        (Just(ms), proptest::collection::vec(any::<bool>(), n), proptest::collection::vec(any::<bool>(), n))
    })
}

proptest! {
    /// Deciding in batches (each split into partitions, each against only what the store reads
    /// for it) gives every message the fate it gets when messages come one at a time against the
    /// whole ledger.
    #[test]
    fn batches_decide_as_messages_one_at_a_time((messages, batch_cut, partition_cut) in cut_messages()) {
        let mut one_by_one = Ledger::default();
        let mut expected = Vec::new();
        for m in &messages {
            let f = one(std::slice::from_ref(m), &one_by_one.all());
            one_by_one.record(std::slice::from_ref(m), &f);
            expected.extend(f);
        }

        let mut batched = Ledger::default();
        let mut got = Vec::new();
        let mut start = 0;
        for i in 0..=messages.len() {
            if i == messages.len() || (batch_cut[i] && i > start) {
                let batch = &messages[start..i];
                let mut parts: Vec<&[Result<UsageRecorded, Rejection>]> = Vec::new();
                let mut p = 0;
                for j in 1..=batch.len() {
                    if j == batch.len() || partition_cut[start + j] {
                        parts.push(&batch[p..j]);
                        p = j;
                    }
                }
                let d = decide(parts.iter().copied(), &batched.for_batch(batch));
                prop_assert_eq!(d.fates.len(), parts.len());
                let fates: Vec<Fate> = d.fates.into_iter().flatten().collect();
                prop_assert_eq!(fates.len(), batch.len());
                batched.record(batch, &fates);
                got.extend(fates);
                start = i;
            }
        }
        // The same fate; a conflict's message says where the id was seen first, which differs.
        let kind = |f: &Fate| match f {
            Fate::Quarantine(c, _) => Err(*c),
            other => Ok(other.clone()),
        };
        prop_assert_eq!(got.iter().map(kind).collect::<Vec<_>>(), expected.iter().map(kind).collect::<Vec<_>>());
    }

    /// What a batch ledgers never overlaps itself or the ledger, never repeats an id, and is
    /// exactly the GPU time the decision reports as taken; a rejection is never ledgered.
    #[test]
    fn a_decision_never_bills_a_gpu_second_or_an_id_twice(
        ledger in proptest::collection::vec(message(), 0..20),
        batch in proptest::collection::vec(message(), 0..30),
    ) {
        let mut l = Ledger::default();
        let f = one(&ledger, &Known::default());
        l.record(&ledger, &f);
        let d = decide([&batch], &l.for_batch(&batch));
        let mut all = l.0.clone();
        let mut taken = Vec::new();
        for (m, f) in batch.iter().zip(&d.fates[0]) {
            match (m, f) {
                (Ok(e), Fate::Ledger) => {
                    taken.push((e.gpu_id, e.slot(), e.interval_start, e.interval_end));
                    all.push(e.clone());
                }
                (Err(r), f) => prop_assert_eq!(code(f), Some(r.code)),
                _ => {}
            }
        }
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                prop_assert!(!(a.event_id == b.event_id && a.tenant_id == b.tenant_id), "an id ledgered twice");
                prop_assert!(
                    !(a.gpu_id == b.gpu_id
                        && slots_collide(a.slot(), b.slot())
                        && a.interval_start < b.interval_end
                        && b.interval_start < a.interval_end),
                    "a GPU-second billed twice"
                );
            }
        }
        let mut reported: Vec<_> = d.taken.intervals().collect();
        reported.sort_unstable();
        taken.sort_unstable();
        prop_assert_eq!(reported, taken);
    }
}

fn at(minute: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minute)
}

proptest! {
    /// The windows of a batch cover each of its intervals, and only GPU time between them:
    /// per GPU, sorted, apart (touching intervals make one window), each made of intervals.
    #[test]
    fn windows_are_the_union_of_the_intervals(
        intervals in proptest::collection::vec((0u8..4, 0i64..60, 1i64..5), 0..40),
    ) {
        let ivs: Vec<_> = intervals.iter().map(|(g, s, l)| (Uuid::from_u128(*g as u128), at(*s), at(s + l))).collect();
        let w = windows(ivs.iter().copied());
        for (g, s, e) in &ivs {
            prop_assert!(w.iter().any(|(wg, (lo, hi))| wg == g && lo <= s && e <= hi));
        }
        for pair in w.windows(2) {
            let ((g0, (_, hi0)), (g1, (lo1, _))) = (pair[0], pair[1]);
            prop_assert!(g0 < g1 || (g0 == g1 && hi0 < lo1));
        }
        for (g, (lo, hi)) in &w {
            // Every minute of a window is some interval's.
            let mut t = *lo;
            while t < *hi {
                prop_assert!(ivs.iter().any(|(ig, s, e)| ig == g && *s <= t && t < *e));
                t += Duration::minutes(1);
            }
        }
    }
}
