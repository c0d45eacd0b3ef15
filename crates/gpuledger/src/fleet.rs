//! The simulated fleet's arguments, for `produce` and the benchmarks: the seeded generator of
//! `domain::simulate` and how many messages to take from it.

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use domain::simulate::{FleetSpec, Simulator};

/// The simulated fleet, for `produce` and the benchmarks (`gpuledger-bench`).
#[derive(clap::Args, Clone)]
pub struct FleetArgs {
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 16)]
    pub gpus: u32,
    #[arg(long, default_value_t = 5)]
    pub tenants: u32,
    /// First minute, RFC 3339 UTC.
    #[arg(long, default_value = "2026-10-01T00:00:00Z")]
    pub start: DateTime<Utc>,
    /// Length of the period in minutes (one month of October: 44640).
    #[arg(long, default_value_t = 44_640)]
    pub minutes: u32,
    #[arg(long, default_value_t = 0)]
    pub duplicates_ppm: u32,
    #[arg(long, default_value_t = 0)]
    pub conflicts_ppm: u32,
    #[arg(long, default_value_t = 0)]
    pub overlaps_ppm: u32,
    #[arg(long, default_value_t = 0)]
    pub poison_ppm: u32,
    /// Stop after this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// The producers' event ids: UUIDv7 (time-ordered, recommended) or UUIDv4 (random).
    #[arg(long, value_enum, default_value_t = IdKind::V7)]
    pub event_ids: IdKind,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum IdKind {
    V7,
    V4,
}

impl FleetArgs {
    /// The generator and how many messages to take from it.
    pub fn simulator(&self) -> Result<(Simulator, usize)> {
        if self.gpus == 0 || self.tenants == 0 || self.tenants > 1000 || self.gpus > 100_000 {
            bail!("--gpus must be 1..=100000 and --tenants 1..=1000");
        }
        let spec = FleetSpec {
            seed: self.seed,
            gpus: self.gpus,
            tenants: self.tenants,
            start: self.start,
            minutes: self.minutes,
            duplicates_ppm: self.duplicates_ppm,
            conflicts_ppm: self.conflicts_ppm,
            overlaps_ppm: self.overlaps_ppm,
            poison_ppm: self.poison_ppm,
            event_ids: match self.event_ids {
                IdKind::V7 => domain::simulate::EventIds::V7,
                IdKind::V4 => domain::simulate::EventIds::V4,
            },
        };
        let limit = self.limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Ok((Simulator::new(spec), limit))
    }
}
