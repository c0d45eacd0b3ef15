//! The web pages in a real headless browser (Debian's Chromium driven by ChromeDriver, installed
//! by scripts/browser.sh): a tenant signs in with its token, its dashboard's chart draws exactly
//! its own usage per day and SKU, its invoices print as one A4 page, another tenant's invoice is a
//! 404 page and none of the other tenant's data appears anywhere; finance sees the period's
//! invoices, the budget burn per cost centre and the fleet utilisation as charts.

use chrono::{Duration, Utc};
use domain::billing::Period;
use integration::{connect, fresh_db, gpuledger, repo_root, serial, serve_api, unique};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

fn token(db: &str, role: &str, tenant: Option<&str>) -> String {
    let mut c = connect(db);
    store::tokens::create_token(&mut c, role, tenant, "web test", Duration::days(1), Utc::now()).unwrap().1
}

fn python() -> String {
    std::env::var("GPULEDGER_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs tests/browser/pages.py over the visits and returns what the browser saw.
fn browse(port: u16, visits: Value) -> Vec<Value> {
    let status = Command::new("bash").arg(repo_root().join("scripts/browser.sh")).status().unwrap();
    assert!(status.success(), "scripts/browser.sh failed");
    let mut child = Command::new(python())
        .arg(repo_root().join("tests/browser/pages.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let job = json!({ "base": format!("http://127.0.0.1:{port}"), "visits": visits });
    child.stdin.take().unwrap().write_all(job.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "browser run failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn marks<'a>(page: &'a Value, chart: &str) -> Vec<&'a Value> {
    page["marks"].as_array().unwrap().iter().filter(|m| m["chart"] == chart).collect()
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn pages_render_in_chromium_and_show_a_tenant_only_its_own() {
    let _serial = serial();
    let db = fresh_db("web").unwrap();
    let mut files: Vec<String> = ["seller", "prices", "profiles", "contracts"]
        .iter()
        .map(|f| repo_root().join(format!("fixtures/billing/{f}.json")).display().to_string())
        .collect();
    // Usage in August 2026 (hour, SKU, GPU-seconds) per tenant, as adjustments.
    let start = Period::parse("2026-08").unwrap().start();
    let plan: [(&str, i64, &str, i64); 7] = [
        ("rheinbank", 2 * 24 + 10, "nvidia-h200", 7200),
        ("rheinbank", 2 * 24 + 11, "nvidia-b200", 3600),
        ("rheinbank", 9 * 24 + 3, "nvidia-h200", 10800),
        ("rheinbank", 30 * 24 + 20, "nvidia-b200", 1800),
        ("seekr-ai-us", 4 * 24 + 1, "nvidia-gb200", 36000),
        ("seekr-ai-us", 5 * 24 + 1, "nvidia-h200", 72000),
        // a big user, so that the fleet's utilisation shows: 20,000 of 2,496 × 744 H200 GPU-hours
        ("falke-drones", 6 * 24, "nvidia-h200", 72_000_000),
    ];
    let usage: Vec<Value> = plan
        .iter()
        .map(|(t, h, sku, secs)| {
            json!({ "kind": "usage.adjusted", "data": { "tenant_id": t, "gpu_sku": sku,
            "project": format!("project-of-{t}"),
            "hour": (start + Duration::hours(*h)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "gpu_seconds_delta": secs.to_string(), "reason": "metered" } })
        })
        .collect();
    let file = std::env::temp_dir().join(format!("{}.json", unique("web")));
    std::fs::write(&file, serde_json::to_vec(&usage).unwrap()).unwrap();
    files.push(file.display().to_string());
    let mut args = vec!["reference", "load"];
    args.extend(files.iter().map(String::as_str));
    gpuledger(&db, &args).unwrap();
    gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap();
    let budget: Vec<String> = ["master", "allocations", "bookings", "sap"]
        .iter()
        .map(|f| repo_root().join(format!("fixtures/budget/{f}.json")).display().to_string())
        .collect();
    let mut args = vec!["budget", "load"];
    args.extend(budget.iter().map(String::as_str));
    gpuledger(&db, &args).unwrap();

    let mut c = connect(&db);
    let docs: Vec<(String, String)> = c
        .query("SELECT number, tenant_id FROM invoices ORDER BY number", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let doc_of = |t: &str| docs.iter().find(|d| d.1 == t).unwrap().0.clone();
    let (doc_a, doc_b) = (doc_of("rheinbank"), doc_of("seekr-ai-us"));
    let cost_centres: i64 = {
        let s = store::budget::budget_report(&mut c, Period::parse("2026-08").unwrap().last_day()).unwrap();
        s.rows.iter().filter(|r| r.level == "cost_center").count() as i64
    };

    let (a, finance) = (token(&db, "tenant", Some("rheinbank")), token(&db, "finance", None));
    let s = serve_api(&db);
    let pdf_dir = std::env::temp_dir().join(unique("web-pdf"));
    std::fs::create_dir_all(&pdf_dir).unwrap();
    let seen = browse(
        s.port,
        json!([
            { "token": a, "paths": ["/ui/usage?month=2026-08", format!("/ui/invoices/{doc_a}"), format!("/ui/invoices/{doc_b}"),
                "/ui/usage?month=2026-08&tenant=seekr-ai-us", "/ui/finance?period=2026-08",
                format!("/ui/invoices/{doc_b}/download/invoice.json")],
              "print": [format!("/ui/invoices/{doc_a}")], "pdf_dir": pdf_dir },
            { "token": finance, "paths": ["/ui/finance?period=2026-08", "/ui/usage?month=2026-08&tenant=seekr-ai-us"] },
            { "token": "glt_not-a-token", "paths": ["/ui/usage"] },
        ]),
    );

    // The tenant: signed in, landed on its dashboard.
    let t = &seen[0];
    assert_eq!(t["landed"], "/ui/usage");
    let dash = &t["pages"][0];
    assert!(dash["h1"].as_str().unwrap().contains("rheinbank"), "{dash}");
    assert!(dash["styled"].as_str().unwrap().contains("system-ui"), "the stylesheet loaded");
    // The chart draws exactly the tenant's usage: GPU-hours per Berlin day and SKU.
    let mut expected: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for (tenant, h, sku, secs) in plan.iter().filter(|p| p.0 == "rheinbank") {
        let day = domain::billing::period::berlin_date(start + Duration::hours(*h)).format("%-d").to_string();
        *expected.entry((day, sku.to_string())).or_default() += Decimal::from(*secs) / Decimal::from(3600);
        let _ = tenant;
    }
    let bars = marks(dash, "usage-chart");
    let drawn: BTreeMap<(String, String), Decimal> = bars
        .iter()
        .map(|m| {
            ((m["category"].as_str().unwrap().to_string(), m["series"].as_str().unwrap().to_string()), dec(&m["value"]))
        })
        .collect();
    assert_eq!(drawn, expected, "the chart shows the tenant's usage per day and SKU");
    for m in &bars {
        assert!(m["width"].as_f64().unwrap() > 1.0 && m["height"].as_f64().unwrap() > 1.0, "rendered: {m}");
    }
    // Taller bars for more hours: the 3 h bar on the 10th is 1.5 times the 2 h bar on the 3rd.
    let h = |day: &str, sku: &str| {
        bars.iter().find(|m| m["category"] == day && m["series"] == sku).unwrap()["height"].as_f64().unwrap()
    };
    let ratio = h("10", "nvidia-h200") / h("3", "nvidia-h200");
    assert!((ratio - 1.5).abs() < 0.02, "bar heights are proportional ({ratio})");
    let text = dash["text"].as_str().unwrap();
    assert!(text.contains("6,50 GPU-hours"), "the month's total: {text}");
    assert!(text.contains(&doc_a) && text.contains("This month so far"), "{text}");
    let links: Vec<&str> = dash["links"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    assert!(links.contains(&format!("/ui/invoices/{doc_a}/download/xrechnung.xml").as_str()), "{links:?}");

    // The printable invoice: one A4 page, with what an invoice needs.
    let inv = &t["pages"][1];
    let text = inv["text"].as_str().unwrap();
    for needle in [
        "Rechnung",
        &doc_a,
        "Rheinbank AG",
        "Leistungszeitraum",
        "01.08.2026 – 31.08.2026",
        "USt-IdNr.",
        "Steuernummer",
        "IBAN",
        "Umsatzsteuer",
        "Gesamtbetrag",
        // § 35a GmbHG: seat, register court and number, every managing director.
        "Sitz der Gesellschaft: München; Registergericht: Amtsgericht München, HRB 276543; Geschäftsführer: Dr. Johanna Reiter, Mehmet Aydın",
    ] {
        assert!(text.contains(needle), "the invoice page lacks {needle}: {text}");
    }
    let printed = &t["printed"][0];
    assert_eq!(printed["pdf"], "%PDF-");
    assert_eq!(printed["pages"], 1, "the invoice prints on one page: {printed}");

    // Everything of the other tenant is invisible: its invoice is a 404 page, naming its tenant
    // in the URL changes nothing, finance is forbidden, the download is a 404 too.
    assert!(t["pages"][2]["h1"].as_str().unwrap().starts_with("404"), "{}", t["pages"][2]);
    assert!(t["pages"][3]["h1"].as_str().unwrap().contains("rheinbank"));
    assert_eq!(marks(&t["pages"][3], "usage-chart").len(), bars.len());
    assert!(t["pages"][4]["h1"].as_str().unwrap().starts_with("403"), "{}", t["pages"][4]);
    assert!(t["pages"][5]["h1"].as_str().unwrap().starts_with("404"), "{}", t["pages"][5]);
    for p in t["pages"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        for foreign in ["seekr-ai-us", "Seekr AI", "project-of-seekr", "nvidia-gb200", &doc_b] {
            if p["path"].as_str().unwrap().contains(foreign) {
                continue; // the URL it typed may be echoed nowhere but the address bar
            }
            assert!(!text.contains(foreign), "{} shows {foreign}: {text}", p["path"]);
        }
    }

    // Finance: the period's invoices, budget burn per cost centre, utilisation.
    let f = &seen[1];
    assert_eq!(f["landed"], "/ui/finance");
    let fin = &f["pages"][0];
    let text = fin["text"].as_str().unwrap();
    assert!(text.contains(&doc_a) && text.contains(&doc_b), "{text}");
    let budget = marks(fin, "budget-chart");
    assert_eq!(budget.len() as i64, 3 * cost_centres, "budget, committed, actual per cost centre");
    for m in budget.iter().filter(|m| dec(&m["value"]) > Decimal::ZERO) {
        assert!(m["width"].as_f64().unwrap() > 1.0, "drawn: {m}");
    }
    let util = marks(fin, "utilisation-chart");
    let h200 = util.iter().find(|m| m["category"] == "nvidia-h200").expect("an H200 utilisation bar");
    let today = domain::billing::period::berlin_date(Utc::now());
    let fleet = store::budget::budget_report(&mut c, today).unwrap().fleet;
    let expected = fleet.per_sku.iter().find(|f| f.sku == "nvidia-h200").unwrap().utilisation_percent;
    assert!(expected > Decimal::ZERO);
    assert_eq!(dec(&h200["value"]), expected, "the report's utilisation, as of today");
    assert!(h200["height"].as_f64().unwrap() > 1.0);
    let other = &f["pages"][1];
    assert!(other["h1"].as_str().unwrap().contains("seekr-ai-us"));
    let total: Decimal = marks(other, "usage-chart").iter().map(|m| dec(&m["value"])).sum();
    assert_eq!(total, Decimal::from(30), "finance sees seekr-ai-us's 30 GPU-hours");

    // A bad token stays on the sign-in page.
    assert_eq!(seen[2]["landed"], "/ui/login");
    assert!(seen[2]["pages"][0]["url"].as_str().unwrap().ends_with("/ui/login"));

    // Every page read by finance is in the access log.
    let logged: i64 = c.query_one("SELECT count(*) FROM access_log WHERE role = 'finance'", &[]).unwrap().get(0);
    assert!(logged >= 2, "{logged}");
}
