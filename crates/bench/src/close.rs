//! The month-close benchmark (docs/benchmarks.md): a fleet's month of hourly usage aggregates
//! written straight into `usage_hourly` (as if `events_per_gpu_minute` events per GPU and minute had
//! been ingested; producing hundreds of millions of raw events would take hours here), reference
//! data for every tenant, then the close timed beside its floor: the bare read of the same rows.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::billing::reference::ReferenceInput;
use domain::billing::Period;
use postgres::Client;
use rust_decimal::Decimal;
use serde_json::json;
use std::time::Instant;
use store::billing::{close_period, load_reference};

#[derive(Debug, Clone)]
pub struct CloseBenchSpec {
    pub tenants: u32,
    pub gpus: u32,
    pub projects: u32,
    pub period: Period,
    pub seed: u64,
    /// How many raw usage events each aggregate stands for, per GPU and minute.
    pub events_per_gpu_minute: u32,
}

#[derive(Debug, Clone)]
pub struct CloseBenchReport {
    pub hourly_rows: u64,
    pub raw_events: u64,
    pub seed: std::time::Duration,
    pub floor: std::time::Duration,
    pub close: std::time::Duration,
    pub documents: usize,
    pub gross_total: Decimal,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub fn tenant_name(i: u32) -> String {
    format!("tenant-{i:03}")
}

/// Seller, price lists for every SKU, a profile per tenant (a third each German, French and US),
/// and a take-or-pay contract for every fifth tenant.
fn reference(spec: &CloseBenchSpec) -> Vec<ReferenceInput> {
    let mut items = vec![ReferenceInput {
        event_id: None,
        kind: "seller.set".into(),
        data: json!({
            "legal_name": "Souveräne KI-Cloud Deutschland GmbH", "street": "Ridlerstraße 55", "city": "München",
            "postal_code": "80339", "country": "DE", "vat_id": "DE123456789", "tax_number": "143/123/45678",
            "contact_name": "Billing Desk", "contact_phone": "+49 89 1234560", "contact_email": "billing@ki-cloud.example",
            "electronic_address": "e-invoice@ki-cloud.example", "iban": "DE02120300000000202051", "series_prefix": "GL",
            "registered_office": "München", "register_court": "Amtsgericht München", "register_number": "HRB 276543",
            "managing_directors": ["Dr. Johanna Reiter", "Mehmet Aydın"]
        }),
    }];
    for (i, sku) in domain::sku::SKUS.iter().enumerate() {
        let base = Decimal::new(110 + 80 * i as i64, 2);
        items.push(ReferenceInput {
            event_id: None,
            kind: "price_list.set".into(),
            data: json!({ "sku": sku, "effective_from": "2020-01-01T00:00:00Z", "currency": "EUR", "tiers": [
                { "from_gpu_hours": "0", "eur_per_gpu_hour": base.to_string() },
                { "from_gpu_hours": "10000", "eur_per_gpu_hour": (base * Decimal::new(95, 2)).round_dp(4).to_string() },
                { "from_gpu_hours": "50000", "eur_per_gpu_hour": (base * Decimal::new(90, 2)).round_dp(4).to_string() }
            ] }),
        });
    }
    for t in 0..spec.tenants {
        let (country, vat_id, treatment) = match t % 3 {
            0 => ("DE", Some(format!("DE{:09}", 100_000_000 + t)), "domestic"),
            1 => ("FR", Some(format!("FR{:011}", 10_000_000_000u64 + u64::from(t))), "reverse_charge"),
            _ => ("US", None, "not_taxable"),
        };
        items.push(ReferenceInput {
            event_id: None,
            kind: "billing_profile.set".into(),
            data: json!({ "tenant_id": tenant_name(t), "legal_name": format!("Tenant {t} Ltd"), "street": "Main Street 1",
                "city": "City", "postal_code": "10115", "country": country, "vat_id": vat_id, "vat_treatment": treatment,
                "buyer_reference": format!("PO-{t}"), "payment_terms_days": 30, "invoice_email": format!("ap@tenant{t}.example"),
                "lines_by_project": t % 2 == 0 }),
        });
        if t % 5 == 0 {
            items.push(ReferenceInput {
                event_id: None,
                kind: "contract.set".into(),
                data: json!({ "contract_id": format!("C-{t}"), "tenant_id": tenant_name(t), "sku": domain::sku::SKUS[0],
                    "committed_gpu_hours_per_month": "5000", "committed_eur_per_gpu_hour": "1.00",
                    "overage_eur_per_gpu_hour": "1.20", "discount_percent": "3", "start_month": "2020-01", "end_month": "2099-12" }),
            });
        }
    }
    items
}

/// Writes the month's hourly aggregates: GPU i belongs to tenant i mod T, SKU (i / T) mod 6 and
/// project (i / 6T) mod P; each group's utilisation per hour is 55 % to 100 % (seeded).
fn seed_hourly(client: &mut Client, spec: &CloseBenchSpec) -> anyhow::Result<(u64, u64)> {
    let skus = domain::sku::SKUS;
    let mut groups: std::collections::BTreeMap<(u32, usize, u32), u64> = std::collections::BTreeMap::new();
    for i in 0..spec.gpus {
        let t = i % spec.tenants;
        let s = (i / spec.tenants) as usize % skus.len();
        let p = (i / (spec.tenants * skus.len() as u32)) % spec.projects;
        *groups.entry((t, s, p)).or_default() += 1;
    }
    let mut events = 0u64;
    let start = spec.period.start();
    let rows = (0..spec.period.hours()).flat_map(|h| {
        let hour: DateTime<Utc> = start + Duration::hours(h);
        groups.iter().enumerate().map(move |(g, (&(t, s, p), &count))| {
            let util_ppm = 550_000 + splitmix(spec.seed ^ ((g as u64) << 20) ^ h as u64) % 450_001;
            let secs = Decimal::from(count * 3600 * util_ppm) / Decimal::from(1_000_000u64);
            let n = (count * 60 * u64::from(spec.events_per_gpu_minute)) as i64;
            (tenant_name(t), skus[s], format!("project-{p}"), hour, secs, n)
        })
    });
    let rows = crate::write_hourly(client, rows.inspect(|r| events += r.5 as u64))?;
    Ok((rows, events))
}

/// Runs the benchmark in an empty, migrated database.
pub fn run_close_bench(client: &mut Client, spec: &CloseBenchSpec) -> anyhow::Result<CloseBenchReport> {
    let now = Utc.from_utc_datetime(&spec.period.end().naive_utc()) + Duration::days(1);
    let now = now.max(Utc::now());
    load_reference(client, &reference(spec), now)?;
    let t0 = Instant::now();
    let (hourly_rows, raw_events) = seed_hourly(client, spec)?;
    let seed = t0.elapsed();
    client.batch_execute("ANALYZE usage_hourly")?;
    // The floor: the same read of the period's aggregates that the close begins with.
    let t0 = Instant::now();
    let read = client.query(
        "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds FROM usage_hourly WHERE hour >= $1 AND hour < $2",
        &[&spec.period.start(), &spec.period.end()],
    )?;
    let floor = t0.elapsed();
    assert_eq!(read.len() as u64, hourly_rows);
    drop(read);
    let t0 = Instant::now();
    let outcome = close_period(client, spec.period, now)?;
    let close = t0.elapsed();
    Ok(CloseBenchReport {
        hourly_rows,
        raw_events,
        seed,
        floor,
        close,
        documents: outcome.documents.len(),
        gross_total: outcome.documents.iter().map(|d| d.gross_total.amount()).sum(),
    })
}
