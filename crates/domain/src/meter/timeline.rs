//! Each device's time between scrapes, and the closing of whole minutes into runs.
//!
//! Held time: an observation at `t` holds the device, with the workload it names, from `t` to
//! the device's next observation `t'` — provided `t' − t` is at most the bridge limit (a missed
//! scrape or two is bridged). A longer gap is unmetered: `[t, t')` is counted as such and
//! nothing is billed for it. A minute is closed once the device has been observed at or after
//! its end (or the device has been missing longer than the bridge limit); only then are its
//! runs final and handed out, so the same scrapes always give the same runs.

use super::energy::piece_wh;
use super::scrape::Observation;
use super::{DeviceKey, Workload};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MINUTE_MS: i64 = 60_000;

/// Who held a device for a stretch of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Held {
    /// A gap between scrapes longer than the bridge limit: nobody knows.
    Unmetered,
    /// Observed, held by no workload.
    Idle,
    By(Workload),
}

/// A stretch of one device's time inside one minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub start_ms: i64,
    pub end_ms: i64,
    pub held: Held,
    #[serde(with = "crate::billing::dec::option")]
    pub energy_wh: Option<Decimal>,
}

/// What the meter remembers of a device between scrapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    pub key: DeviceKey,
    pub last_ms: i64,
    pub last: Observation,
    /// Pieces of minutes not closed yet, in time order.
    pub pending: Vec<Piece>,
    /// Missing for longer than the bridge limit: its pending minutes were closed.
    pub lost: bool,
}

/// The whole meter's state: the cursor the collector keeps durable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterState {
    pub devices: BTreeMap<String, DeviceState>,
}

/// A closed stretch of a device's minute with one holder: what becomes an event or a coverage row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub key: DeviceKey,
    pub observation: Observation,
    pub start_ms: i64,
    pub end_ms: i64,
    pub held: Held,
    /// The energy of the pieces whose counter was known; `None` if none was.
    pub energy_wh: Option<Decimal>,
}

fn minute_floor(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// `[from, to)` cut at minute boundaries.
fn split_minutes(from_ms: i64, to_ms: i64) -> impl Iterator<Item = (i64, i64)> {
    let mut at = from_ms;
    std::iter::from_fn(move || {
        if at >= to_ms {
            return None;
        }
        let end = (minute_floor(at) + MINUTE_MS).min(to_ms);
        let piece = (at, end);
        at = end;
        Some(piece)
    })
}

impl MeterState {
    /// Takes one scrape round: `seen` are the devices observed, each with its observation time;
    /// `round_ms` is the round's time (devices missing longer than `bridge_ms` by then are
    /// closed). Returns the runs of every minute this closes, in device and time order.
    pub fn observe(&mut self, seen: Vec<(DeviceKey, i64, Observation)>, round_ms: i64, bridge_ms: i64) -> Vec<Run> {
        let mut runs = Vec::new();
        let mut touched = std::collections::BTreeSet::new();
        for (key, at_ms, obs) in seen {
            let id = key.to_string();
            touched.insert(id.clone());
            match self.devices.get_mut(&id) {
                None => {
                    let state = DeviceState { key, last_ms: at_ms, last: obs, pending: Vec::new(), lost: false };
                    self.devices.insert(id, state);
                }
                Some(state) => {
                    state.advance(at_ms, obs, bridge_ms);
                    runs.extend(state.close(minute_floor(state.last_ms)));
                }
            }
        }
        for (id, state) in self.devices.iter_mut() {
            if !touched.contains(id) && !state.lost && round_ms - state.last_ms > bridge_ms {
                runs.extend(state.close(i64::MAX));
                state.lost = true;
            }
        }
        runs
    }
}

impl DeviceState {
    /// The time from the last observation to this one becomes pieces (held or unmetered).
    fn advance(&mut self, at_ms: i64, obs: Observation, bridge_ms: i64) {
        if at_ms <= self.last_ms {
            return; // a stale or repeated scrape says nothing new
        }
        let bridged = !self.lost && at_ms - self.last_ms <= bridge_ms;
        let held = match (&self.last.workload, bridged) {
            (_, false) => Held::Unmetered,
            (None, true) => Held::Idle,
            (Some(w), true) => Held::By(w.clone()),
        };
        for (start_ms, end_ms) in split_minutes(self.last_ms, at_ms) {
            let energy_wh = if bridged {
                piece_wh(self.last_ms, self.last.energy_mj, at_ms, obs.energy_mj, start_ms, end_ms)
            } else {
                None
            };
            self.pending.push(Piece { start_ms, end_ms, held: held.clone(), energy_wh });
        }
        self.last_ms = at_ms;
        self.last = obs;
        self.lost = false;
    }

    /// Closes the pending pieces that start before `before_ms` into runs: contiguous pieces of
    /// one minute with the same holder make one run.
    fn close(&mut self, before_ms: i64) -> Vec<Run> {
        let keep = self.pending.iter().position(|p| p.start_ms >= before_ms).unwrap_or(self.pending.len());
        let closed: Vec<Piece> = self.pending.drain(..keep).collect();
        let mut runs: Vec<Run> = Vec::new();
        for p in closed {
            if let Some(run) = runs.last_mut() {
                let joins = run.end_ms == p.start_ms
                    && run.held == p.held
                    && minute_floor(run.start_ms) == minute_floor(p.start_ms);
                if joins {
                    run.end_ms = p.end_ms;
                    run.energy_wh = match (run.energy_wh, p.energy_wh) {
                        (Some(a), Some(b)) => Some(a + b),
                        (a, b) => a.or(b),
                    };
                    continue;
                }
            }
            runs.push(Run {
                key: self.key,
                observation: self.last.clone(),
                start_ms: p.start_ms,
                end_ms: p.end_ms,
                held: p.held,
                energy_wh: p.energy_wh,
            });
        }
        runs
    }
}
