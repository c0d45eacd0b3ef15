//! A seeded, deterministic generator of realistic fleet usage: N GPUs of several SKUs on nodes of
//! four, leased to tenants in jobs of varying length, reporting one-minute intervals. It can mix in
//! redeliveries (duplicates), conflicting re-uses of event ids, overlapping usage and poison
//! messages of every kind, and it keeps exact totals of what a correct ledger must end up with.
//!
//! Pure: the same spec gives the same messages, byte for byte.

use crate::gpu_seconds::GpuSeconds;
use crate::sku::SKUS;
use crate::usage::{format_instant, RejectionCode, UsageRecorded, EVENT_TYPE};
use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use uuid::Uuid;

/// Tenants of the fixture fleet: a bank, a drone maker, a robotics firm, a US AI search company,
/// an insurer; more are numbered.
pub const TENANT_NAMES: &[&str] = &[
    "rheinbank",
    "falke-drones",
    "robotik-nord",
    "seekr-ai-us",
    "allgaeu-versicherung",
    "stahlwerk-ki",
    "medtech-jena",
    "autonom-mobil",
];

/// Rates are given in parts per million of good events (no floats in this crate's money path,
/// nor anywhere else).
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub seed: u64,
    pub gpus: u32,
    pub tenants: u32,
    pub start: DateTime<Utc>,
    pub minutes: u32,
    pub duplicates_ppm: u32,
    pub conflicts_ppm: u32,
    pub overlaps_ppm: u32,
    pub poison_ppm: u32,
    pub event_ids: EventIds,
}

/// How the simulated producers choose event ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventIds {
    /// UUIDv7 (RFC 9562): the millisecond the event was made (its interval's end), then random
    /// bits. What producers are asked to use: ids that grow with time go in at the right edge of
    /// the ledger's event-id index.
    #[default]
    V7,
    /// UUIDv4: all random, for producers that cannot do better.
    V4,
}

impl FleetSpec {
    pub fn tenant_name(i: u32) -> String {
        TENANT_NAMES.get(i as usize).map(|s| s.to_string()).unwrap_or_else(|| format!("tenant-{i:03}"))
    }
}

/// What the generator meant a message to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Good,
    Duplicate,
    Rejected(RejectionCode),
}

#[derive(Debug, Clone)]
pub struct SimMessage {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub intent: Intent,
}

/// The exact outcome a correct ledger must reach for the messages generated so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub messages: u64,
    pub good: u64,
    pub duplicates: u64,
    pub rejected: BTreeMap<RejectionCode, u64>,
    /// GPU-seconds of good events per tenant and SKU.
    pub gpu_seconds: BTreeMap<String, BTreeMap<String, Decimal>>,
}

impl Totals {
    pub fn to_json(&self) -> Value {
        let rejected: BTreeMap<&str, u64> = self.rejected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let seconds: BTreeMap<&String, BTreeMap<&String, String>> =
            self.gpu_seconds.iter().map(|(t, m)| (t, m.iter().map(|(s, d)| (s, d.to_string())).collect())).collect();
        json!({
            "messages": self.messages,
            "good": self.good,
            "duplicates": self.duplicates,
            "quarantined": rejected,
            "gpu_seconds": seconds,
        })
    }

    /// Reads back the `gpu_seconds` part of `to_json` (tenant → SKU → exact decimal, normalized);
    /// `None` if the value does not have that shape.
    pub fn gpu_seconds_from_json(v: &Value) -> Option<BTreeMap<String, BTreeMap<String, Decimal>>> {
        let mut out: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
        for (tenant, by_sku) in v.get("gpu_seconds")?.as_object()? {
            for (sku, d) in by_sku.as_object()? {
                let d: Decimal = d.as_str()?.parse().ok()?;
                out.entry(tenant.clone()).or_default().insert(sku.clone(), d.normalize());
            }
        }
        Some(out)
    }

    pub fn quarantined(&self) -> u64 {
        self.rejected.values().sum()
    }
}

struct GpuState {
    id: Uuid,
    sku: &'static str,
    node: String,
    /// Current job: tenant index, project, job name, minutes left. `None` while idle.
    job: Option<(u32, String, String, u32)>,
    idle_left: u32,
}

/// The generator: an iterator of messages, minute by minute across the fleet.
pub struct Simulator {
    spec: FleetSpec,
    rng: ChaCha8Rng,
    gpus: Vec<GpuState>,
    minute: u32,
    gpu_index: usize,
    pending: VecDeque<SimMessage>,
    recent: VecDeque<UsageRecorded>,
    poison_cycle: usize,
    job_counter: u64,
    pub totals: Totals,
}

const POISON_CODES: &[RejectionCode] = &[
    RejectionCode::OversizeMessage,
    RejectionCode::InvalidUtf8,
    RejectionCode::MalformedJson,
    RejectionCode::NulCharacter,
    RejectionCode::WrongShape,
    RejectionCode::MissingField,
    RejectionCode::UnknownField,
    RejectionCode::UnsupportedSpecversion,
    RejectionCode::UnknownEventType,
    RejectionCode::InvalidEventId,
    RejectionCode::InvalidField,
    RejectionCode::OversizeField,
    RejectionCode::KeyMismatch,
    RejectionCode::InvalidTimestamp,
    RejectionCode::EndBeforeStart,
    RejectionCode::IntervalTooLong,
    RejectionCode::FutureTimestamp,
    RejectionCode::GpuSecondsNotDecimal,
    RejectionCode::GpuSecondsNegative,
    RejectionCode::GpuSecondsOutOfRange,
    RejectionCode::GpuSecondsExceedInterval,
    RejectionCode::UnknownSku,
    RejectionCode::DuplicateMember,
];

/// Every kind of poison the generator can make, in the order it cycles through them.
pub fn poison_codes() -> &'static [RejectionCode] {
    POISON_CODES
}

/// Poison made by setting one member of `data` to a value that breaks the rule.
const DATA_POISON: &[(RejectionCode, &str, &str)] = &[
    (RejectionCode::NulCharacter, "node", "fra1\u{0}r01"),
    (RejectionCode::UnknownField, "colour", "green"),
    (RejectionCode::InvalidField, "gpu_id", "GPU-not-a-uuid"),
    (RejectionCode::InvalidTimestamp, "interval_start", "2026-10-01 00:00:00"),
    (RejectionCode::FutureTimestamp, "interval_start", "2099-01-01T00:00:00Z"),
    (RejectionCode::GpuSecondsNotDecimal, "gpu_seconds", "NaN"),
    (RejectionCode::GpuSecondsNegative, "gpu_seconds", "-60"),
    (RejectionCode::GpuSecondsOutOfRange, "gpu_seconds", "59.0000001"),
    (RejectionCode::GpuSecondsExceedInterval, "gpu_seconds", "61"),
    (RejectionCode::UnknownSku, "gpu_sku", "nvidia-rtx-9090"),
    // Not in POISON_CODES (that would change every seeded run's stream), but made alike.
    (RejectionCode::InvalidMig, "mig_instance", "3"),
    (RejectionCode::InvalidEnergy, "energy_wh", "-1"),
];

/// The bytes of a message that breaks the rule `code`, made from the valid event `e` (the key
/// of a `KeyMismatch` is the caller's).
fn poison_payload(code: RejectionCode, e: &UsageRecorded) -> Vec<u8> {
    let mut v = e.to_cloudevent();
    let json = |v: &Value| serde_json::to_vec(v).expect("json");
    let set = |v: &mut Value, field: &str, to: Value| {
        v["data"][field] = to;
    };
    for (_, field, value) in DATA_POISON.iter().filter(|p| p.0 == code) {
        set(&mut v, field, Value::String((*value).into()));
    }
    match code {
        RejectionCode::OversizeMessage => set(&mut v, "job", Value::String("x".repeat(20_000))),
        RejectionCode::InvalidUtf8 => {
            let mut b = json(&v);
            let at = b.len() / 2;
            b.splice(at..at, [0xff, 0xfe, 0xc3]);
            return b;
        }
        RejectionCode::MalformedJson => {
            let b = json(&v);
            return b[..b.len() - 7].to_vec();
        }
        RejectionCode::WrongShape => return b"[\"usage\", 60]".to_vec(),
        RejectionCode::MissingField => {
            v["data"].as_object_mut().expect("object").remove("gpu_id");
        }
        RejectionCode::UnsupportedSpecversion => v["specversion"] = Value::String("0.3".into()),
        RejectionCode::UnknownEventType => v["type"] = Value::String("com.example.something.else".into()),
        RejectionCode::InvalidEventId => v["id"] = Value::String("event-42".into()),
        RejectionCode::OversizeField => set(&mut v, "node", Value::String("n".repeat(200))),
        RejectionCode::EndBeforeStart => {
            set(&mut v, "interval_start", Value::String(format_instant(e.interval_end)));
            set(&mut v, "interval_end", Value::String(format_instant(e.interval_start)));
        }
        RejectionCode::IntervalTooLong => {
            set(&mut v, "interval_end", Value::String(format_instant(e.interval_start + Duration::hours(2))))
        }
        RejectionCode::FutureTimestamp => set(&mut v, "interval_end", Value::String("2099-01-01T00:01:00Z".into())),
        RejectionCode::DuplicateMember => {
            // The valid value last: a reader that keeps the last of repeated names would
            // accept the message, one that keeps the first would not.
            let text = serde_json::to_string(&v).expect("json");
            return text.replacen("\"data\":{", "\"data\":{\"gpu_seconds\":\"7200\",", 1).into_bytes();
        }
        RejectionCode::Conflict | RejectionCode::Overlap | RejectionCode::RefusedByDatabase => {
            unreachable!("not poison")
        }
        // Set from DATA_POISON above; a KeyMismatch has a valid payload under another key.
        RejectionCode::NulCharacter
        | RejectionCode::UnknownField
        | RejectionCode::InvalidField
        | RejectionCode::InvalidTimestamp
        | RejectionCode::GpuSecondsNotDecimal
        | RejectionCode::GpuSecondsNegative
        | RejectionCode::GpuSecondsOutOfRange
        | RejectionCode::GpuSecondsExceedInterval
        | RejectionCode::UnknownSku
        | RejectionCode::InvalidMig
        | RejectionCode::InvalidEnergy
        | RejectionCode::KeyMismatch => {}
    }
    json(&v)
}

fn random_uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

/// A producer's id for an event made at `at`.
fn event_id(kind: EventIds, rng: &mut ChaCha8Rng, at: DateTime<Utc>) -> Uuid {
    match kind {
        EventIds::V4 => random_uuid(rng),
        EventIds::V7 => {
            let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
            uuid::Builder::from_unix_timestamp_millis(millis, &rng.gen()).into_uuid()
        }
    }
}

impl Simulator {
    pub fn new(spec: FleetSpec) -> Simulator {
        assert!(spec.tenants >= 1 && spec.gpus >= 1);
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let skus: Vec<&'static str> = SKUS.iter().copied().filter(|s| *s != "nvidia-h100-pcie").collect();
        let gpus = (0..spec.gpus)
            .map(|i| GpuState {
                id: random_uuid(&mut rng),
                // Four GPUs a node, one SKU a node, SKUs taking turns node by node.
                sku: skus[(i as usize / 4) % skus.len()],
                node: format!("fra1-r{:02}-n{:03}", i / 128, (i / 4) % 32),
                job: None,
                idle_left: 0,
            })
            .collect();
        Simulator {
            spec,
            rng,
            gpus,
            minute: 0,
            gpu_index: 0,
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            poison_cycle: 0,
            job_counter: 0,
            totals: Totals::default(),
        }
    }

    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.gen_range(0..1_000_000u32) < ppm
    }

    fn record(&mut self, m: SimMessage) -> SimMessage {
        self.totals.messages += 1;
        match m.intent {
            Intent::Good => self.totals.good += 1,
            Intent::Duplicate => self.totals.duplicates += 1,
            Intent::Rejected(code) => *self.totals.rejected.entry(code).or_insert(0) += 1,
        }
        m
    }

    fn encode(e: &UsageRecorded) -> Vec<u8> {
        serde_json::to_vec(&e.to_cloudevent()).expect("json")
    }

    /// Produces the next good event of the fleet, or `None` when the period is over.
    fn next_usage(&mut self) -> Option<UsageRecorded> {
        loop {
            if self.minute >= self.spec.minutes {
                return None;
            }
            if self.gpu_index >= self.gpus.len() {
                self.gpu_index = 0;
                self.minute += 1;
                continue;
            }
            let i = self.gpu_index;
            self.gpu_index += 1;
            if self.gpus[i].job.is_none() {
                if self.gpus[i].idle_left > 0 {
                    self.gpus[i].idle_left -= 1;
                    continue;
                }
                let tenant = self.rng.gen_range(0..self.spec.tenants);
                let project = format!("proj-{}", self.rng.gen_range(1..=3));
                self.job_counter += 1;
                let job = format!("job-{:08}", self.job_counter);
                let minutes = self.rng.gen_range(30..=720);
                self.gpus[i].job = Some((tenant, project, job, minutes));
            }
            let start = self.spec.start + Duration::minutes(self.minute as i64);
            let (tenant, project, job, left) = self.gpus[i].job.clone().expect("job set above");
            let last = left == 1;
            let gpu_seconds = if last {
                // A job rarely ends on a minute boundary: bill its last partial minute exactly.
                GpuSeconds::new(Decimal::new(self.rng.gen_range(1_000..=60_000), 3)).expect("in range")
            } else {
                GpuSeconds::new(Decimal::from(60)).expect("in range")
            };
            if last {
                self.gpus[i].job = None;
                self.gpus[i].idle_left = self.rng.gen_range(0..=90);
            } else if let Some(j) = self.gpus[i].job.as_mut() {
                j.3 -= 1;
            }
            let e = UsageRecorded {
                event_id: event_id(self.spec.event_ids, &mut self.rng, start + Duration::minutes(1)),
                source: format!("//fra1/dcgm-exporter/{}", self.gpus[i].node),
                tenant_id: FleetSpec::tenant_name(tenant),
                gpu_sku: self.gpus[i].sku.to_string(),
                gpu_id: self.gpus[i].id,
                node: self.gpus[i].node.clone(),
                project,
                job: Some(job),
                labels: BTreeMap::new(),
                interval_start: start,
                interval_end: start + Duration::minutes(1),
                gpu_seconds,
                mig: None,
                energy_wh: None,
            };
            return Some(e);
        }
    }

    fn poison(&mut self, base: &UsageRecorded) -> SimMessage {
        let code = POISON_CODES[self.poison_cycle % POISON_CODES.len()];
        self.poison_cycle += 1;
        let key = match code {
            RejectionCode::KeyMismatch => b"someone-else".to_vec(),
            _ => base.tenant_id.as_bytes().to_vec(),
        };
        let mut e = base.clone();
        e.event_id = event_id(self.spec.event_ids, &mut self.rng, e.interval_end);
        SimMessage { key: Some(key), payload: poison_payload(code, &e), intent: Intent::Rejected(code) }
    }

    fn mix_in(&mut self, e: &UsageRecorded) {
        if self.chance(self.spec.duplicates_ppm) {
            if let Some(old) = self.recent.get(self.rng.gen_range(0..self.recent.len().max(1))).cloned() {
                self.pending.push_back(SimMessage {
                    key: Some(old.tenant_id.as_bytes().to_vec()),
                    payload: Self::encode(&old),
                    intent: Intent::Duplicate,
                });
            }
        }
        if self.chance(self.spec.conflicts_ppm) {
            if let Some(old) = self.recent.get(self.rng.gen_range(0..self.recent.len().max(1))).cloned() {
                let mut changed = old.clone();
                changed.gpu_seconds = GpuSeconds::new(Decimal::new(self.rng.gen_range(0..59_000), 3)).expect("range");
                if changed.gpu_seconds != old.gpu_seconds {
                    self.pending.push_back(SimMessage {
                        key: Some(old.tenant_id.as_bytes().to_vec()),
                        payload: Self::encode(&changed),
                        intent: Intent::Rejected(RejectionCode::Conflict),
                    });
                }
            }
        }
        if self.chance(self.spec.overlaps_ppm) {
            let mut o = e.clone();
            o.event_id = event_id(self.spec.event_ids, &mut self.rng, e.interval_end);
            o.interval_start = e.interval_start + Duration::seconds(30);
            o.interval_end = e.interval_end + Duration::seconds(30);
            o.gpu_seconds = GpuSeconds::new(Decimal::from(30)).expect("range");
            self.pending.push_back(SimMessage {
                key: Some(o.tenant_id.as_bytes().to_vec()),
                payload: Self::encode(&o),
                intent: Intent::Rejected(RejectionCode::Overlap),
            });
        }
        if self.chance(self.spec.poison_ppm) {
            let p = self.poison(e);
            self.pending.push_back(p);
        }
    }
}

impl Iterator for Simulator {
    type Item = SimMessage;

    fn next(&mut self) -> Option<SimMessage> {
        if let Some(m) = self.pending.pop_front() {
            return Some(self.record(m));
        }
        let e = self.next_usage()?;
        let by_tenant = self.totals.gpu_seconds.entry(e.tenant_id.clone()).or_default();
        *by_tenant.entry(e.gpu_sku.clone()).or_insert(Decimal::ZERO) += e.gpu_seconds.value();
        let msg =
            SimMessage { key: Some(e.tenant_id.as_bytes().to_vec()), payload: Self::encode(&e), intent: Intent::Good };
        self.mix_in(&e);
        self.recent.push_back(e);
        if self.recent.len() > 1000 {
            self.recent.pop_front();
        }
        Some(self.record(msg))
    }
}

/// The CloudEvents `type` the simulator writes, re-exported for tests.
pub const SIMULATED_TYPE: &str = EVENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::parse_usage_message;
    use chrono::TimeZone;
    use std::collections::HashSet;

    fn spec(seed: u64) -> FleetSpec {
        FleetSpec {
            seed,
            gpus: 24,
            tenants: 5,
            start: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
            minutes: 180,
            duplicates_ppm: 20_000,
            conflicts_ppm: 10_000,
            overlaps_ppm: 10_000,
            poison_ppm: 50_000,
            event_ids: EventIds::V7,
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let a: Vec<_> = Simulator::new(spec(7)).map(|m| m.payload).collect();
        let b: Vec<_> = Simulator::new(spec(7)).map(|m| m.payload).collect();
        let c: Vec<_> = Simulator::new(spec(8)).map(|m| m.payload).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// The generator's intents agree with the pure validator for everything that does not need
    /// the ledger's memory (duplicates, conflicts and overlaps need it).
    #[test]
    fn intents_agree_with_validation() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap();
        let mut sim = Simulator::new(spec(1));
        let mut seen_codes = HashSet::new();
        let mut sum = BTreeMap::<(String, String), Decimal>::new();
        for m in sim.by_ref() {
            let parsed = parse_usage_message(m.key.as_deref(), &m.payload, now);
            match (m.intent, parsed) {
                (Intent::Good, Ok(e)) => {
                    *sum.entry((e.tenant_id, e.gpu_sku)).or_default() += e.gpu_seconds.value();
                }
                (Intent::Duplicate, Ok(_)) => {}
                (Intent::Rejected(RejectionCode::Conflict | RejectionCode::Overlap), Ok(_)) => {}
                // A well-formed SKU the catalogue (the ledger's reference data) does not list.
                (Intent::Rejected(RejectionCode::UnknownSku), Ok(e)) => {
                    let catalogue = crate::billing::catalogue::Catalogue::initial();
                    assert!(!catalogue.knows(&e.gpu_sku, e.interval_start), "{}", e.gpu_sku);
                    seen_codes.insert(RejectionCode::UnknownSku);
                }
                (Intent::Rejected(code), Err(r)) => {
                    assert_eq!(code, r.code, "{}", r.message);
                    seen_codes.insert(code);
                }
                (intent, got) => panic!("intent {intent:?} but validation said {got:?}"),
            }
        }
        assert_eq!(seen_codes.len(), POISON_CODES.len(), "every poison kind is generated");
        let totals: BTreeMap<(String, String), Decimal> = sim
            .totals
            .gpu_seconds
            .iter()
            .flat_map(|(t, m)| m.iter().map(move |(s, d)| ((t.clone(), s.clone()), *d)))
            .collect();
        assert_eq!(totals, sum);
        assert!(sim.totals.duplicates > 0 && sim.totals.rejected.contains_key(&RejectionCode::Conflict));
    }
}
