//! The finance dashboard's coverage section: what the collector observed in the period per SKU
//! (or MIG slice), what became of it, and per day (the report of `GET /v1/finance/coverage`).

use super::layout::de;
use domain::billing::Period;
use domain::meter::coverage::{CoverageKey, CoverageReport, Figures};
use maud::{html, Markup};
use rust_decimal::Decimal;

/// GPU-seconds as GPU-hours, German style, two decimals.
fn gpu_h(secs: Decimal) -> String {
    de(secs / Decimal::from(3600), 2)
}

fn sku(k: &CoverageKey) -> String {
    match (&k.sku, &k.model_name) {
        (Some(s), _) => s.clone(),
        (None, Some(m)) => format!("no SKU: {m}"),
        (None, None) => "no SKU".into(),
    }
}

fn slice(k: &CoverageKey) -> String {
    match &k.mig_profile {
        Some(p) => format!("MIG {p}"),
        None => "whole GPU".into(),
    }
}

fn cells(f: &Figures) -> Markup {
    html! {
        td.num { (gpu_h(f.capacity)) } td.num { (gpu_h(f.metered)) } td.num { (gpu_h(f.in_ledger)) }
        td.num { (gpu_h(f.idle)) } td.num { (gpu_h(f.unmetered)) } td.num { (gpu_h(f.unmapped)) }
        td.num { (gpu_h(f.unbillable)) }
    }
}

fn head(first: &[&str]) -> Markup {
    html! {
        thead { tr {
            @for h in first { th { (h) } }
            th.num { "Capacity" } th.num { "Metered" } th.num { "In ledger" } th.num { "Idle" }
            th.num { "Unmetered" } th.num { "Unmapped" } th.num { "Unbillable" }
        } }
    }
}

/// The section; `None` for callers who may not read it (auditors: the route is finance's).
pub(super) fn coverage_section(period: Period, report: Option<&CoverageReport>) -> Markup {
    let Some(r) = report else {
        return html! { section #coverage { h2 { "Coverage of " (period) } p { "Shown to finance only." } } };
    };
    html! {
        section #coverage {
            h2 { "Coverage of " (period) " (collector, GPU-hours)" }
            p { "Device-time the collector observed (capacity) and what became of it, per SKU and Berlin day: "
                "metered (usage events produced; in ledger: those already ingested), idle, unmetered (gaps longer "
                "than the bridge), unmapped (a namespace mapped to no tenant), unbillable (no SKU, or a name an "
                "event cannot carry). MIG slices count in slice-hours, apart from whole GPUs." }
            @if r.totals.is_empty() { p { "The collector recorded nothing for this period." } } @else {
                table #coverage-totals {
                    (head(&["SKU", "Device"]))
                    tbody {
                        @for t in &r.totals {
                            tr data-sku=(sku(&t.key)) { td { (sku(&t.key)) } td { (slice(&t.key)) } (cells(&t.figures)) }
                        }
                    }
                }
                details {
                    summary { "Per day" }
                    table #coverage-days {
                        (head(&["Day", "SKU", "Device"]))
                        tbody {
                            @for d in r.days.iter().filter(|d| !d.figures.capacity.is_zero()) {
                                tr { td { (d.day) } td { (sku(&d.key)) } td { (slice(&d.key)) } (cells(&d.figures)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
