//! CPU time of the processes a run involves, from /proc: this harness (the direct producer, or the
//! HTTP clients), the server, the Kafka broker and PostgreSQL (the postmaster with its children,
//! as scripts/bench-common.sh's `pg_ticks` counts it). On a machine where they all share the same
//! cores, what each one spends per event says where the time goes.

/// Clock ticks per second of /proc's times (USER_HZ, 100 on Linux).
pub const TICKS_PER_SECOND: u64 = 100;

/// The processes whose CPU time is counted beside this one (each optional: a process not given
/// is not counted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Processes {
    pub server: Option<u32>,
    pub broker: Option<u32>,
    pub postgres: Option<u32>,
}

/// Clock ticks of CPU time (user and system) of each process, with its children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub harness: u64,
    pub server: u64,
    pub broker: u64,
    pub postgres: u64,
}

impl CpuTicks {
    /// The ticks each process has used so far.
    pub fn now(p: &Processes) -> CpuTicks {
        let own = |pid: Option<u32>| pid.and_then(stat_times).map_or(0, |t| t[0] + t[1]);
        CpuTicks {
            // Its own threads only: the server is this process's child, and counted apart.
            harness: own(Some(std::process::id())),
            server: own(p.server),
            broker: own(p.broker),
            postgres: p.postgres.map_or(0, with_children),
        }
    }

    /// The ticks used since `earlier`.
    pub fn since(&self, earlier: &CpuTicks) -> CpuTicks {
        CpuTicks {
            harness: self.harness.saturating_sub(earlier.harness),
            server: self.server.saturating_sub(earlier.server),
            broker: self.broker.saturating_sub(earlier.broker),
            postgres: self.postgres.saturating_sub(earlier.postgres),
        }
    }

    pub fn total(&self) -> u64 {
        self.harness + self.server + self.broker + self.postgres
    }
}

/// Microseconds of CPU per event for `ticks` spent on `events`, to a tenth (integer arithmetic).
pub fn micros_per_event(ticks: u64, events: u64) -> String {
    let tenths = ticks * (10_000_000 / TICKS_PER_SECOND) / events.max(1);
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// A process's ticks so far: its own user and system time, its reaped children's, and its live
/// children's own (0 for a process that is gone): PostgreSQL's backends are the postmaster's
/// children.
fn with_children(pid: u32) -> u64 {
    let own = stat_times(pid).map_or(0, |t| t.iter().sum());
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let live: u64 = children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .filter_map(stat_times)
        .map(|t| t[0] + t[1])
        .sum();
    own + live
}

/// utime, stime, cutime, cstime of /proc/PID/stat (fields 14 to 17; the command name before
/// them may hold spaces, so fields are counted from its closing parenthesis).
fn stat_times(pid: u32) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<u64> = after.split_whitespace().skip(11).take(4).map(|v| v.parse().unwrap_or(0)).collect();
    Some([*f.first()?, *f.get(1)?, *f.get(2)?, *f.get(3)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_counted_and_time_only_grows() {
        let a = CpuTicks::now(&Processes::default());
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuTicks::now(&Processes::default());
        assert!(stat_times(std::process::id()).is_some());
        assert!(b.harness >= a.harness);
        assert_eq!(b.since(&a).server, 0);
        assert_eq!(micros_per_event(100, 1_000_000), "1.0");
        assert_eq!(micros_per_event(149, 200_000), "7.4");
    }
}
