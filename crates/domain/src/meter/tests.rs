use super::energy::reading_wh;
use super::event::{event_id, meter, Class};
use super::exposition::parse;
use super::scrape::{observations, Observation, Skipped};
use super::sku_map::SkuMap;
use super::timeline::{Held, MeterState, Run, MINUTE_MS};
use super::{DeviceKey, Tenants, Workload};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::str::FromStr;
use uuid::Uuid;

const README: &str = include_str!("../../../../fixtures/dcgm/readme-kubernetes.prom");
const MIG: &str = include_str!("../../../../fixtures/dcgm/issue-mig-a30.prom");
const TEMPLATE: &str = include_str!("../../../../fixtures/dcgm/render-template.prom");

struct Everyone;
impl Tenants for Everyone {
    fn tenant_of(&self, namespace: &str, _: DateTime<Utc>) -> Option<String> {
        (namespace != "nobody").then(|| format!("t-{namespace}"))
    }
}

#[test]
fn the_exporters_documented_scrapes_parse() {
    let (samples, bad) = parse(README);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[2].value, "9223372036854775794");
    let (devices, skipped) = observations(&samples);
    assert!(skipped.is_empty());
    let (key, o) = devices.iter().next().unwrap();
    assert_eq!(key.to_string(), "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52");
    assert_eq!(o.workload, None, "namespace=\"\" is idle");

    let (samples, bad) = parse(MIG);
    assert!(bad.is_empty(), "{bad:?}");
    let (devices, _) = observations(&samples);
    assert_eq!(devices.len(), 6, "each MIG instance is its own device");
    let o = devices.values().next().unwrap();
    assert_eq!(o.mig_profile.as_deref(), Some("1g.6gb"));
    assert_eq!(o.node, "yg-data-k8s-gpu-a30-node-test-test0003.mt");

    let (samples, bad) = parse(TEMPLATE);
    assert!(bad.is_empty() && samples.len() == 1, "{bad:?}");
    assert_eq!(samples[0].label("hostname"), Some("testhost"));
}

#[test]
fn escapes_are_undone_and_a_malformed_line_is_skipped_alone() {
    let text = "# HELP x\nDCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52\",modelName=\"A \\\"quoted\\\" \\\\ model\\nline\",namespace=\"ns\"} 1\nDCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-x\" 1\nDCGM_FI_DEV_GPU_UTIL{a=\"b\"} one\n";
    let (samples, bad) = parse(text);
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].label("modelName"), Some("A \"quoted\" \\ model\nline"));
    assert_eq!(bad.iter().map(|m| m.line).collect::<Vec<_>>(), vec![3, 4]);
}

#[test]
fn a_device_named_by_two_workloads_at_once_is_skipped() {
    let text = "DCGM_FI_DEV_GPU_UTIL{UUID=\"GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52\",namespace=\"a\",pod=\"p\"} 1\nDCGM_FI_DEV_POWER_USAGE{UUID=\"GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52\",namespace=\"b\",pod=\"q\"} 1\n";
    let (samples, _) = parse(text);
    let (devices, skipped) = observations(&samples);
    assert!(devices.is_empty());
    assert!(matches!(&skipped[0], Skipped::Device { .. }));
}

#[test]
fn energy_readings_round_to_micro_watt_hours() {
    assert_eq!(reading_wh(Decimal::from(3_600_000)), Decimal::ONE);
    assert_eq!(reading_wh(Decimal::from(1)), Decimal::from_str("0.000000").unwrap());
    assert_eq!(reading_wh(Decimal::from(2)), Decimal::from_str("0.000001").unwrap(), "0.00000055… rounds up");
}

fn obs(ns: Option<&str>, mj: Option<i64>) -> Observation {
    Observation {
        model_name: "NVIDIA H200".into(),
        node: "node-1".into(),
        mig_profile: None,
        workload: ns.map(|n| Workload { namespace: n.into(), pod: format!("{n}-pod"), container: "main".into() }),
        energy_mj: mj.map(Decimal::from),
    }
}

const GPU: DeviceKey = DeviceKey { gpu: Uuid::from_u128(7), mig_instance: None };
const BRIDGE_MS: i64 = 30_000;

/// Feeds one device's scrapes, then closes everything by a round far later.
fn run_all(scrapes: &[(i64, Observation)]) -> Vec<Run> {
    let mut state = MeterState::default();
    let mut runs = Vec::new();
    for (t, o) in scrapes {
        runs.extend(state.observe(vec![(GPU, *t, o.clone())], *t, BRIDGE_MS));
    }
    let last = scrapes.last().map_or(0, |s| s.0);
    runs.extend(state.observe(Vec::new(), last + BRIDGE_MS + 1, BRIDGE_MS));
    runs
}

#[test]
fn a_tenant_change_mid_minute_gives_two_runs_and_the_gap_is_unmetered() {
    let t0 = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE_MS;
    let scrapes = vec![
        (t0, obs(Some("a"), Some(0))),
        (t0 + 20_000, obs(Some("a"), Some(72_000_000))),
        (t0 + 40_000, obs(Some("b"), Some(144_000_000))),
        (t0 + 60_000, obs(None, Some(216_000_000))),
        (t0 + 160_000, obs(None, Some(300_000_000))),
    ];
    let runs = run_all(&scrapes);
    let metered: Vec<_> = runs.into_iter().map(|r| meter(r, "src", &SkuMap::default(), &Everyone)).collect();
    let summary: Vec<_> =
        metered.iter().map(|m| (m.class.name(), m.run.start_ms - t0, m.gpu_seconds.to_string())).collect();
    assert_eq!(
        summary,
        vec![
            ("billed", 0, "40".to_string()),
            ("billed", 40_000, "20".to_string()),
            ("unmetered", 60_000, "60".to_string()),
            ("unmetered", 120_000, "40".to_string()),
        ]
    );
    assert_eq!(metered[0].class, Class::Billed { tenant_id: "t-a".into() });
    let data = &metered[1].event.as_ref().unwrap()["data"];
    assert_eq!(data["energy_wh"], "20", "72,000,000 mJ is 20 Wh");
    assert_eq!(data["tenant_id"], "t-b");
    assert_eq!(metered[1].event.as_ref().unwrap()["id"], event_id("src", &GPU.to_string(), t0 + 40_000).to_string());
}

#[test]
fn a_counter_reset_gives_no_energy_for_its_interval() {
    let t0 = 1_790_000_000_000 - 1_790_000_000_000 % MINUTE_MS;
    let runs = run_all(&[
        (t0, obs(Some("a"), Some(500_000_000))),
        (t0 + 30_000, obs(Some("a"), Some(10_000))),
        (t0 + 60_000, obs(Some("a"), Some(3_610_000))),
    ]);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].energy_wh, Some(Decimal::ONE), "only the interval after the reset: 3,600,000 mJ");
}

fn workload_strategy() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![Just(None), Just(Some("a")), Just(Some("b")), Just(Some("nobody"))]
}

proptest! {
    /// Every millisecond between the first and the last scrape is in exactly one run, runs never
    /// overlap or cross a minute, and with a counter that never goes down the runs' energy adds
    /// up to the difference of the rounded first and last readings (the rounding telescopes).
    #[test]
    fn runs_partition_time_and_energy_telescopes(
        steps in prop::collection::vec((1i64..45_000, workload_strategy(), 0i64..5_000_000), 1..40),
        start in 0i64..MINUTE_MS,
    ) {
        let t0 = 1_790_000_000_000 + start;
        let mut t = t0;
        let mut mj = 123_456_789i64;
        let mut scrapes = vec![(t, obs(Some("a"), Some(mj)))];
        for (dt, w, de) in &steps {
            t += dt;
            mj += de;
            scrapes.push((t, obs(*w, Some(mj))));
        }
        let runs = run_all(&scrapes);
        let mut at = t0;
        let mut energy = Decimal::ZERO;
        let mut bridged_energy_known = true;
        for r in &runs {
            prop_assert_eq!(r.start_ms, at);
            prop_assert!(r.end_ms > r.start_ms);
            prop_assert_eq!(r.start_ms.div_euclid(MINUTE_MS), (r.end_ms - 1).div_euclid(MINUTE_MS));
            at = r.end_ms;
            match (r.held != Held::Unmetered, r.energy_wh) {
                (true, Some(e)) => energy += e,
                (true, None) => bridged_energy_known = false,
                (false, _) => {}
            }
        }
        prop_assert_eq!(at, t);
        let all_bridged = steps.iter().all(|s| s.0 <= BRIDGE_MS);
        if all_bridged && bridged_energy_known {
            prop_assert_eq!(energy, reading_wh(Decimal::from(mj)) - reading_wh(Decimal::from(123_456_789)));
        }
    }

    /// Any split of the scrapes into rounds, and any restart (the state serialized and read
    /// back between rounds), gives the same runs.
    #[test]
    fn a_restart_from_the_saved_state_changes_nothing(
        steps in prop::collection::vec((1i64..45_000, workload_strategy()), 1..30),
        restart_at in 0usize..30,
    ) {
        let mut t = 1_790_000_000_000i64;
        let mut scrapes = vec![(t, obs(Some("a"), Some(0)))];
        for (i, (dt, w)) in steps.iter().enumerate() {
            t += dt;
            scrapes.push((t, obs(*w, Some(i as i64 * 1000))));
        }
        let straight = run_all(&scrapes);
        let mut state = MeterState::default();
        let mut runs = Vec::new();
        for (i, (t, o)) in scrapes.iter().enumerate() {
            if i == restart_at {
                let saved = serde_json::to_vec(&state).unwrap();
                state = serde_json::from_slice(&saved).unwrap();
            }
            runs.extend(state.observe(vec![(GPU, *t, o.clone())], *t, BRIDGE_MS));
        }
        runs.extend(state.observe(Vec::new(), t + BRIDGE_MS + 1, BRIDGE_MS));
        prop_assert_eq!(runs, straight);
    }
}
