//! Charts as inline SVG, drawn on the server: no script, nothing to download, they print, and a
//! page's numbers stay in one place. Coordinates are computed in `Decimal` (floats are not used
//! anywhere in gpuledger) and rounded to 0.01 px.

use maud::{html, Markup};
use rust_decimal::Decimal;

/// Colours for series, chosen to stay apart in print and for colour-blind readers (Okabe–Ito).
pub const PALETTE: [&str; 8] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];

pub struct Series {
    pub name: String,
    /// One value per category; never negative (a negative value is drawn as zero).
    pub values: Vec<Decimal>,
}

const W: i64 = 760;
const H: i64 = 260;
const LEFT: i64 = 64;
const RIGHT: i64 = 8;
const TOP: i64 = 10;
const BOTTOM: i64 = 28;

fn px(d: Decimal) -> String {
    d.round_dp(2).normalize().to_string()
}

/// The smallest of 1, 2, 5 × 10^k that is at least `d` (1 for nothing to show).
pub fn nice_max(d: Decimal) -> Decimal {
    if d <= Decimal::ZERO {
        return Decimal::ONE;
    }
    let mut p = Decimal::ONE;
    while p * Decimal::TEN <= d {
        p *= Decimal::TEN;
    }
    while p > d {
        p /= Decimal::TEN;
    }
    [1, 2, 5, 10].iter().map(|m| p * Decimal::from(*m)).find(|c| *c >= d).unwrap_or(p * Decimal::TEN)
}

/// A vertical bar per category, its series stacked. Each bar segment carries `data-series`,
/// `data-category` and `data-value`, and a tooltip.
pub fn stacked_bars(id: &str, title: &str, unit: &str, categories: &[String], series: &[Series]) -> Markup {
    let n = categories.len().max(1) as i64;
    let totals: Vec<Decimal> = (0..categories.len())
        .map(|i| series.iter().map(|s| s.values.get(i).copied().unwrap_or_default().max(Decimal::ZERO)).sum())
        .collect();
    let max = nice_max(totals.iter().copied().max().unwrap_or_default());
    let plot_w = Decimal::from(W - LEFT - RIGHT);
    let plot_h = Decimal::from(H - TOP - BOTTOM);
    let slot = plot_w / Decimal::from(n);
    let bar_w = slot * Decimal::new(8, 1);
    let base = Decimal::from(TOP) + plot_h;
    let ticks: Vec<Decimal> = (0..=4).map(|k| max * Decimal::from(k) / Decimal::from(4)).collect();
    let label_every = if n > 16 { 2 } else { 1 };
    let x_of = |i: usize| Decimal::from(LEFT) + slot * Decimal::from(i as i64) + (slot - bar_w) / Decimal::TWO;
    struct Seg {
        i: usize,
        k: usize,
        x: Decimal,
        y: Decimal,
        h: Decimal,
        v: Decimal,
    }
    let mut segments = Vec::new();
    for i in 0..categories.len() {
        let mut acc = Decimal::ZERO;
        for (k, s) in series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or_default().max(Decimal::ZERO);
            if v > Decimal::ZERO {
                let y = base - (acc + v) / max * plot_h;
                segments.push(Seg { i, k, x: x_of(i), y, h: v / max * plot_h, v });
                acc += v;
            }
        }
    }
    html! {
        figure.chart id=(id) {
            figcaption { (title) }
            svg role="img" aria-label=(title) viewBox={"0 0 " (W) " " (H)} width="100%" preserveAspectRatio="xMidYMid meet" {
                @for t in &ticks {
                    @let y = base - *t / max * plot_h;
                    line.grid x1=(LEFT) x2=(W - RIGHT) y1=(px(y)) y2=(px(y)) {}
                    text.tick x=(LEFT - 6) y=(px(y + Decimal::from(4))) text-anchor="end" { (t.round_dp(2).normalize()) }
                }
                @for seg in &segments {
                    rect.bar x=(px(seg.x)) y=(px(seg.y)) width=(px(bar_w)) height=(px(seg.h)) fill=(PALETTE[seg.k % PALETTE.len()])
                        data-series=(series[seg.k].name) data-category=(categories[seg.i]) data-value=(seg.v.normalize()) {
                        title { (categories[seg.i]) " · " (series[seg.k].name) ": " (seg.v.normalize()) " " (unit) }
                    }
                }
                @for (i, c) in categories.iter().enumerate() {
                    @if i as i64 % label_every == 0 {
                        text.tick x=(px(x_of(i) + bar_w / Decimal::TWO)) y=(H - BOTTOM + 16) text-anchor="middle" { (c) }
                    }
                }
                line.axis x1=(LEFT) x2=(W - RIGHT) y1=(px(base)) y2=(px(base)) {}
            }
            ul.legend {
                @for (k, s) in series.iter().enumerate() {
                    li { svg.swatch width="12" height="12" viewBox="0 0 12 12" { rect width="12" height="12" rx="2" fill=(PALETTE[k % PALETTE.len()]) {} } (s.name) }
                }
            }
        }
    }
}

/// Burn per item: one row each, scaled to the item's own budget (or its largest figure), so a
/// EUR 50,000 cost centre is as readable as the EUR 600 M one: the budget as an outline, the
/// committed amount lightly, the actual amount solidly, and the share spent as text. Rects carry
/// `data-item`, `data-measure` and `data-value`.
pub fn budget_bars(id: &str, title: &str, items: &[(String, Decimal, Decimal, Decimal)]) -> Markup {
    let row_h = Decimal::from(30);
    let label_w = Decimal::from(170);
    let pct_w = Decimal::from(95);
    let plot_w = Decimal::from(W - RIGHT) - label_w - pct_w;
    let height = Decimal::from(items.len() as i64) * row_h + Decimal::from(8);
    let row_max = |b: Decimal, c: Decimal, a: Decimal| b.max(c).max(a).max(Decimal::ONE);
    html! {
        figure.chart id=(id) {
            figcaption { (title) }
            svg role="img" aria-label=(title) viewBox={"0 0 " (W) " " (px(height))} width="100%" {
                @for (i, (name, budget, committed, actual)) in items.iter().enumerate() {
                    @let y = Decimal::from(i as i64) * row_h + Decimal::from(4);
                    @let max = row_max(*budget, *committed, *actual);
                    @let scale = |v: Decimal| v.max(Decimal::ZERO) / max * plot_w;
                    text.tick x="0" y=(px(y + Decimal::from(16))) { (name) }
                    rect.budget x=(px(label_w)) y=(px(y)) width=(px(scale(*budget))) height="22"
                        data-item=(name) data-measure="budget" data-value=(budget) {
                        title { (name) " budget: " (budget) " EUR" }
                    }
                    rect.committed x=(px(label_w)) y=(px(y + Decimal::from(4))) width=(px(scale(*committed))) height="14"
                        data-item=(name) data-measure="committed" data-value=(committed) {
                        title { (name) " committed: " (committed) " EUR" }
                    }
                    rect.actual x=(px(label_w)) y=(px(y + Decimal::from(7))) width=(px(scale(*actual))) height="8"
                        data-item=(name) data-measure="actual" data-value=(actual) {
                        title { (name) " actual: " (actual) " EUR" }
                    }
                    text.tick x=(W - RIGHT) y=(px(y + Decimal::from(16))) text-anchor="end" {
                        @if *budget > Decimal::ZERO { ((*actual * Decimal::ONE_HUNDRED / *budget).round_dp(1).normalize()) " % spent" } @else { "no budget" }
                    }
                }
            }
            ul.legend {
                li { span.swatch.budget {} "budget" }
                li { span.swatch.committed {} "committed (orders)" }
                li { span.swatch.actual {} "actual (invoices, postings)" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn nice_max_rounds_up_to_one_two_five() {
        for (i, o) in
            [("0", "1"), ("0.3", "0.5"), ("1", "1"), ("1.01", "2"), ("37", "50"), ("720", "1000"), ("2000", "2000")]
        {
            assert_eq!(nice_max(d(i)), d(o), "{i}");
        }
    }

    #[test]
    fn stacked_bar_heights_are_proportional_and_stack() {
        let cats = vec!["1".to_string(), "2".to_string()];
        let s = vec![
            Series { name: "a".into(), values: vec![d("50"), d("0")] },
            Series { name: "b".into(), values: vec![d("50"), d("25")] },
        ];
        let svg = stacked_bars("c", "t", "GPU-h", &cats, &s).into_string();
        // max 100 → plot height 222 px: 50 is 111 px, 25 is 55.5 px; zero is not drawn.
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3, "{svg}");
        assert_eq!(svg.matches("height=\"111\"").count(), 2, "{svg}");
        assert!(svg.contains("height=\"55.5\""), "{svg}");
        // the second segment of the first bar sits on top of the first: y = 232 - 222 = 10.
        assert!(svg.contains("y=\"10\" width"), "{svg}");
        assert!(svg.contains("data-value=\"25\""));
    }

    #[test]
    fn names_are_escaped() {
        let svg = stacked_bars("c", "t", "h", &["<x>".into()], &[Series { name: "\"&".into(), values: vec![d("1")] }])
            .into_string();
        assert!(!svg.contains("<x>") && svg.contains("&lt;x&gt;") && svg.contains("&quot;&amp;"), "{svg}");
    }

    #[test]
    fn budget_bars_scale_each_row_to_its_budget() {
        let svg = budget_bars("b", "t", &[("CC1".into(), d("100"), d("50"), d("25"))]).into_string();
        // plot width 760 - 8 - 170 - 95 = 487 px for the row's 100 EUR budget
        assert!(
            svg.contains("width=\"487\"") && svg.contains("width=\"243.5\"") && svg.contains("width=\"121.75\""),
            "{svg}"
        );
        assert!(svg.contains("25 % spent"), "{svg}");
        // each row has its own scale: a small budget is drawn as wide as a large one
        let rows = [("big".into(), d("600000000"), d("0"), d("0")), ("small".into(), d("50000"), d("0"), d("0"))];
        let two = budget_bars("b", "t", &rows).into_string();
        assert_eq!(two.matches("width=\"487\"").count(), 2, "{two}");
    }
}
