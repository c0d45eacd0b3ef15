//! The investment budget on the real database: the fixture programme loads (and reloads as a
//! no-op), bad bookings are refused with nothing written, the report as of a past date does not
//! change when later events arrive, and the SAP journal of a closed month balances with revenue
//! equal to that month's invoices.

use domain::billing::Period;
use integration::{connect, fresh_db, gpuledger, repo_root, serial, unique};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;
use std::str::FromStr;

fn fixture(dir: &str, names: &[&str]) -> Vec<String> {
    names.iter().map(|f| repo_root().join(format!("fixtures/{dir}/{f}.json")).display().to_string()).collect()
}

fn budget_fixtures() -> Vec<String> {
    fixture("budget", &["master", "allocations", "bookings", "sap"])
}

fn load(db: &str, what: &str, files: &[String]) -> anyhow::Result<String> {
    let mut args = vec![what, "load"];
    args.extend(files.iter().map(String::as_str));
    gpuledger(db, &args)
}

fn write_json(v: &serde_json::Value) -> String {
    let p = std::env::temp_dir().join(format!("{}.json", unique("budget")));
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.display().to_string()
}

fn head(db: &str) -> i64 {
    connect(db).query_one("SELECT head_pos FROM ledger_streams WHERE topic = 'gpuledger.budget'", &[]).unwrap().get(0)
}

#[test]
fn the_programme_loads_and_bad_bookings_are_refused() {
    let _serial = serial();
    let db = fresh_db("budget_refusals").unwrap();
    let out = load(&db, "budget", &budget_fixtures()).unwrap();
    assert!(out.contains("41 new budget events"), "{out}");
    let out = load(&db, "budget", &budget_fixtures()).unwrap();
    assert!(out.contains("0 new budget events, 41 already in the ledger"), "{out}");
    let before = head(&db);
    let po = |cc: &str, wbs: &str, amount: &str, currency: &str| {
        json!({ "kind": "purchase_order.committed", "data": { "po_number": unique("PO").to_uppercase().replace('_', "-"),
            "supplier": "x", "cost_center": cc, "wbs": wbs, "category": "installation", "amount": amount,
            "currency": currency, "date": "2026-10-01" } })
    };
    let cases = vec![
        (po("NOWHERE", "P-KIC-03", "10.00", "EUR"), "unknown cost centre"),
        (po("SAP-INST", "P-KIC-03", "10.00", "USD"), "kept in EUR"),
        (po("SAP-INST", "P-KIC-03", "25000000.01", "EUR"), "would exceed the budget"),
        (po("SAP-INST", "P-KIC-01", "10.00", "EUR"), "belongs to cost centre OP-GPU"),
        (
            json!({ "kind": "budget.reallocated", "data": { "reallocation_id": "RA-X", "moves": [
                { "cost_center": "OP-RUN", "wbs": "P-KIC-04", "category": "operations", "amount": "-10.00" },
                { "cost_center": "SAP-INST", "wbs": "P-KIC-03", "category": "installation", "amount": "9.00" } ],
                "reason": "r", "approved_by": "b", "date": "2026-10-01" } }),
            "must net to zero",
        ),
        (
            json!({ "kind": "budget.allocated", "data": { "cost_center": "OP-RUN", "wbs": "P-KIC-04", "category": "operations",
                "amount": "30000000.01", "approved_by": "b", "date": "2026-10-01" } }),
            "not yet allocated",
        ),
    ];
    for (item, expected) in cases {
        // A valid event before the bad one: all or none.
        let good = json!({ "kind": "forecast.set", "data": { "cost_center": "OP-RUN", "wbs": "P-KIC-04",
            "category": "operations", "estimate_to_complete": "1.00", "date": "2026-10-01" } });
        let e = load(&db, "budget", &[write_json(&json!([good, item]))]).unwrap_err().to_string();
        assert!(e.contains("item 2") && e.contains(expected), "expected {expected:?} in: {e}");
    }
    // A closed cost centre takes no bookings; it can be closed only once the allocation key in
    // force gives it no revenue.
    let close = json!([{ "kind": "cost_center.set", "data": { "cost_center": "OP-RUN", "name": "Operations (operator)",
        "owner": "operator", "controlling_area": "1000", "sap_cost_center": "0000470400", "profit_center": "PC4704",
        "open": false, "date": "2026-10-02" } }]);
    assert_eq!(head(&db), before, "nothing was written");
    let e = load(&db, "budget", &[write_json(&close)]).unwrap_err().to_string();
    assert!(e.contains("OP-RUN still takes 5 % of revenue in allocation key KEY-2026"), "{e}");
    let key = json!([{ "kind": "allocation_key.set", "data": { "key_id": "KEY-2026-10", "effective_from": "2026-10",
        "shares": [{ "cost_center": "OP-GPU", "percent": "65" }, { "cost_center": "TEL-PREM", "percent": "25" },
                   { "cost_center": "SAP-INST", "percent": "10" }],
        "rationale": "operations leave the key", "date": "2026-10-02" } }]);
    load(&db, "budget", &[write_json(&key)]).unwrap();
    load(&db, "budget", &[write_json(&close)]).unwrap();
    let e = load(&db, "budget", &[write_json(&json!([po("OP-RUN", "P-KIC-04", "1.00", "EUR")]))]).unwrap_err();
    assert!(e.to_string().contains("cost centre OP-RUN is closed"), "{e}");
}

#[test]
fn the_report_of_a_past_date_is_reproducible_and_the_sap_journal_balances() {
    let _serial = serial();
    let db = fresh_db("budget_report").unwrap();
    load(&db, "budget", &budget_fixtures()).unwrap();
    load(&db, "reference", &fixture("billing", &["seller", "prices", "profiles", "contracts"])).unwrap();
    // August usage for three tenants (as finance adjustments: no Kafka needed here).
    let start = Period::parse("2026-08").unwrap().start();
    let usage: Vec<serde_json::Value> = ["rheinbank", "robotik-nord", "seekr-ai-us"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({ "kind": "usage.adjusted", "data": { "tenant_id": t, "gpu_sku": "nvidia-h200", "project": "p",
            "hour": (start + chrono::Duration::hours(10 + i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "gpu_seconds_delta": format!("{}", 3_600_000 + 12_345 * i), "reason": "metered" } })
        })
        .collect();
    load(&db, "reference", &[write_json(&serde_json::Value::Array(usage))]).unwrap();
    gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap();

    let report = |as_of: &str| gpuledger(&db, &["budget", "report", "--as-of", as_of, "--format", "json"]).unwrap();
    // Invoices count from their issue date (today); the later booking is dated after today.
    let today = domain::billing::period::berlin_date(chrono::Utc::now());
    let after = (today + chrono::Duration::days(40)).to_string();
    let today = today.to_string();
    let before = report(&today);
    let v: serde_json::Value = serde_json::from_str(&before).unwrap();
    for row in v["rows"].as_array().unwrap() {
        let d = |k: &str| Decimal::from_str(row[k].as_str().unwrap()).unwrap();
        assert_eq!(d("remaining"), d("budget") - d("committed") - d("actual"), "{row}");
    }
    let programme = v["rows"].as_array().unwrap().iter().find(|r| r["level"] == "programme").unwrap();
    let d = |x: &serde_json::Value| Decimal::from_str(x.as_str().unwrap()).unwrap();
    assert_eq!(d(&programme["budget"]) + d(&v["unallocated"]), Decimal::from(1_000_000_000));
    assert!(
        v["rows"].as_array().unwrap().iter().any(|r| r["warning"] == true),
        "SAP-INST's forecast exceeds its budget"
    );
    let revenue = d(&v["fleet"]["revenue_invoiced_net"]);
    assert!(revenue > Decimal::ZERO);
    let attributed: Decimal = v["revenue_attribution"].as_array().unwrap().iter().map(|a| d(&a["revenue"])).sum();
    assert_eq!(attributed, revenue);
    // Later events (dated after) leave the report of the past date unchanged, byte for byte.
    let later = json!([{ "kind": "cost.booked", "data": { "document": "5100000099", "supplier": "x", "po_number": "4500000004",
        "cost_center": "SAP-INST", "wbs": "P-KIC-03", "category": "installation", "amount": "1000000.00",
        "currency": "EUR", "date": after } }]);
    load(&db, "budget", &[write_json(&later)]).unwrap();
    assert_eq!(report(&today), before);
    assert_ne!(report(&after), before);
    for format in ["table", "csv"] {
        let out = gpuledger(&db, &["budget", "report", "--as-of", &after, "--format", format]).unwrap();
        assert!(out.contains("SAP-INST"), "{out}");
    }

    // The SAP journal of August: balanced per document, revenue = August's invoices.
    let path = std::env::temp_dir().join(format!("{}.csv", unique("sap")));
    gpuledger(&db, &["budget", "sap-export", "--period", "2026-08", "--out", path.to_str().unwrap()]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut rows = csv::ReaderBuilder::new().delimiter(b';').from_reader(text.as_bytes());
    let header = rows.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut balance: BTreeMap<String, Decimal> = BTreeMap::new();
    let (mut revenue_posted, mut depreciation) = (Decimal::ZERO, 0);
    for r in rows.records() {
        let r = r.unwrap();
        let amount = Decimal::from_str(&r[col("amount")]).unwrap();
        let signed = if &r[col("debit_credit")] == "S" { amount } else { -amount };
        *balance.entry(r[col("reference")].to_string()).or_default() += signed;
        // Revenue per VAT category (fixtures/budget/sap.json), each line with its tax code.
        if ["8400", "8336", "8338"].contains(&&r[col("gl_account")]) {
            assert!(!r[col("tax_code")].is_empty(), "{r:?}");
            revenue_posted -= signed;
        }
        if &r[col("account_type")] == "D" {
            assert!(r[col("customer")].starts_with("1000000"), "the tenant's customer account: {r:?}");
        }
        if &r[col("document_type")] == "AF" {
            depreciation += 1;
        }
    }
    assert!(balance.values().all(Decimal::is_zero), "{balance:?}");
    let mut c = connect(&db);
    let invoiced: Decimal = c
        .query_one(
            "SELECT sum(CASE WHEN type_code = 381 THEN -net_total ELSE net_total END) FROM invoices WHERE close_period = '2026-08'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(revenue_posted, invoiced);
    assert_eq!(depreciation, 2 * 2, "two assets in service in August, two lines each");
}

/// August's usage of three tenants (as finance adjustments: no Kafka needed here), closed.
fn august_closed(db: &str) {
    load(db, "reference", &fixture("billing", &["seller", "prices", "profiles", "contracts"])).unwrap();
    let start = Period::parse("2026-08").unwrap().start();
    let usage: Vec<serde_json::Value> = ["rheinbank", "robotik-nord", "seekr-ai-us"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({ "kind": "usage.adjusted", "data": { "tenant_id": t, "gpu_sku": "nvidia-h200", "project": "p",
            "hour": (start + chrono::Duration::hours(10 + i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "gpu_seconds_delta": format!("{}", 3_600_000 + 12_345 * i), "reason": "metered" } })
        })
        .collect();
    load(db, "reference", &[write_json(&serde_json::Value::Array(usage))]).unwrap();
    gpuledger(db, &["invoices", "close", "--period", "2026-08"]).unwrap();
}

fn export(db: &str, period: &str) -> anyhow::Result<Vec<u8>> {
    let path = std::env::temp_dir().join(format!("{}.csv", unique("sap")));
    gpuledger(db, &["budget", "sap-export", "--period", period, "--out", path.to_str().unwrap()])?;
    Ok(std::fs::read(&path).unwrap())
}

#[test]
fn a_handed_over_month_takes_no_bookings_and_its_journal_reexports_byte_for_byte() {
    let _serial = serial();
    let db = fresh_db("budget_period_lock").unwrap();
    load(&db, "budget", &budget_fixtures()).unwrap();
    let e = export(&db, "2026-09").unwrap_err().to_string();
    assert!(e.contains("no billing close"), "{e}");
    august_closed(&db);
    let first = export(&db, "2026-08").unwrap();
    let cost = |document: &str, date: &str| {
        json!({ "kind": "cost.booked", "data": { "document": document, "supplier": "x", "po_number": null,
            "cost_center": "OP-RUN", "wbs": "P-KIC-04", "category": "operations", "amount": "1000.00",
            "currency": "EUR", "date": date } })
    };
    let asset = |id: &str, in_service: &str| {
        json!({ "kind": "asset.commissioned", "data": { "asset_id": id, "description": "late servers", "sku": "nvidia-h200",
            "gpus": 8, "cost": "400000.00", "cost_center": "OP-GPU", "wbs": "P-KIC-01", "in_service": in_service,
            "depreciation_months": 60 } })
    };
    let before = head(&db);
    for (item, what) in [(cost("5100000100", "2026-08-20"), "cost"), (asset("AS-LATE-1", "2026-07-01"), "asset")] {
        let e = load(&db, "budget", &[write_json(&json!([item]))]).unwrap_err().to_string();
        assert!(e.contains("closed period") && e.contains("from 2026-09-01 on"), "{what}: {e}");
    }
    assert_eq!(head(&db), before, "nothing was written");
    // The open period takes them (the asset capitalised from servers invoiced in it); August's
    // journal stays the file handed over.
    let servers = json!({ "kind": "cost.booked", "data": { "document": "5100000102", "supplier": "x",
        "po_number": "4500000002", "cost_center": "OP-GPU", "wbs": "P-KIC-01", "category": "gpu_procurement",
        "amount": "400000.00", "currency": "EUR", "date": "2026-09-01" } });
    load(
        &db,
        "budget",
        &[write_json(&json!([cost("5100000101", "2026-09-02"), servers, asset("AS-LATE-2", "2026-09-01")]))],
    )
    .unwrap();
    assert_eq!(export(&db, "2026-08").unwrap(), first);
    assert_eq!(head(&db), before + 3, "a re-export records nothing new");
}

#[test]
fn a_reload_without_event_ids_books_nothing_twice_and_the_controls_name_the_excess() {
    let _serial = serial();
    let db = fresh_db("budget_keys").unwrap();
    load(&db, "budget", &budget_fixtures()).unwrap();
    let alloc = |amount: &str| {
        json!([{ "kind": "budget.allocated", "data": { "cost_center": "OP-RUN", "wbs": "P-KIC-04",
            "category": "operations", "amount": amount, "approved_by": "Steering committee 2026-10", "date": "2026-10-05" } }])
    };
    let out = load(&db, "budget", &[write_json(&alloc("1000000.00"))]).unwrap();
    assert!(out.contains("1 new budget events, 0 already"), "{out}");
    let before = head(&db);
    let out = load(&db, "budget", &[write_json(&alloc("1000000.00"))]).unwrap();
    assert!(out.contains("0 new budget events, 1 already in the ledger"), "the same allocation again: {out}");
    assert_eq!(head(&db), before, "booked once");
    let e = load(&db, "budget", &[write_json(&alloc("2000000.00"))]).unwrap_err().to_string();
    assert!(e.contains("already in the ledger with other content"), "{e}");
    let report = gpuledger(&db, &["budget", "report", "--as-of", "2026-10-31", "--format", "json"]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    let run = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["level"] == "cost_center" && r["cost_center"] == "OP-RUN")
        .unwrap();
    assert_eq!(run["budget"], "66000000.00", "65 M from the fixtures and 1 M once: {run}");

    // A EUR 5 bn asset with a one-month life on a WBS element with EUR 360 M of actual cost, all
    // capitalised; a WBS element of another cost centre; a cost centre with open orders.
    let asset = |cost: &str, cc: &str, wbs: &str| {
        json!([{ "kind": "asset.commissioned", "data": { "asset_id": "AS-HUGE", "description": "x", "sku": "nvidia-b200",
            "gpus": 8, "cost": cost, "cost_center": cc, "wbs": wbs, "in_service": "2026-10-01", "depreciation_months": 1 } }])
    };
    let e = load(&db, "budget", &[write_json(&asset("5000000000.00", "OP-GPU", "P-KIC-01"))]).unwrap_err().to_string();
    assert!(e.contains("5000000000.00 EUR exceeds the actual cost of WBS element P-KIC-01 not yet capitalised by 5000000000.00 EUR"), "{e}");
    let e = load(&db, "budget", &[write_json(&asset("1.00", "OP-RUN", "P-KIC-01"))]).unwrap_err().to_string();
    assert!(e.contains("WBS element P-KIC-01 belongs to cost centre OP-GPU, not OP-RUN"), "{e}");
    let close = json!([{ "kind": "cost_center.set", "data": { "cost_center": "SAP-INST", "name": "x", "owner": "sap",
        "controlling_area": "1000", "sap_cost_center": "0000470300", "profit_center": "PC4703", "open": false, "date": "2026-10-06" } }]);
    let e = load(&db, "budget", &[write_json(&close)]).unwrap_err().to_string();
    assert!(e.contains("SAP-INST has open commitments of 35000000.00 EUR (purchase orders 4500000004)"), "{e}");
    assert_eq!(head(&db), before, "nothing was written");
}

/// Whether a record (given a reader of its cells by column name) counts.
type Keep = dyn Fn(&dyn Fn(&str) -> String) -> bool;

/// The EC Sales List of August against the journal handed over and the invoices; the GDPdU export
/// with its typed tables, valid against the shipped DTD, against the ledger.
#[test]
fn the_ec_sales_list_and_the_typed_gdpdu_tables_reconcile_with_the_journal_the_invoices_and_the_ledger() {
    let _serial = serial();
    let db = fresh_db("budget_ec_sales").unwrap();
    load(&db, "budget", &budget_fixtures()).unwrap();
    august_closed(&db);
    let journal = String::from_utf8(export(&db, "2026-08").unwrap()).unwrap();
    let d = |s: &str| Decimal::from_str(&s.replace(',', ".")).unwrap();
    let mut j = csv::ReaderBuilder::new().delimiter(b';').from_reader(journal.as_bytes());
    let header = j.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let journal_rows: Vec<csv::StringRecord> = j.records().map(Result::unwrap).collect();
    let on_account = |account: &str| -> Decimal {
        journal_rows
            .iter()
            .filter(|r| &r[col("gl_account")] == account)
            .map(|r| if &r[col("debit_credit")] == "H" { d(&r[col("amount")]) } else { -d(&r[col("amount")]) })
            .sum()
    };

    let path = std::env::temp_dir().join(format!("{}.csv", unique("zm")));
    gpuledger(&db, &["budget", "ec-sales-list", "--period", "2026-08", "--out", path.to_str().unwrap()]).unwrap();
    let zm = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = zm.lines().collect();
    assert_eq!(lines[0], "period;country;vat_id;amount;kind;documents");
    assert_eq!(lines.len(), 2, "robotik-nord, the one reverse-charge customer: {zm}");
    let f: Vec<&str> = lines[1].split(';').collect();
    assert_eq!(&f[..3], ["2026-08", "DK", "DK12345678"]);
    let mut c = connect(&db);
    let invoiced: Decimal = c
        .query_one(
            "SELECT sum(CASE WHEN type_code = 381 THEN -net_total ELSE net_total END) FROM invoices
              WHERE close_period = '2026-08' AND tenant_id = 'robotik-nord'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(invoiced > Decimal::ZERO);
    assert_eq!(d(f[3]), invoiced, "the EC Sales List against the invoices");
    assert_eq!(d(f[3]), on_account("8336"), "against the journal's reverse-charge revenue account");

    // The GDPdU export: index.xml valid against gdpdu-01-09-2004.dtd, typed tables summing to
    // the ledger's figures.
    let dir = std::env::temp_dir().join(unique("gdpdu"));
    gpuledger(&db, &["audit", "export", "--out", dir.to_str().unwrap()]).unwrap();
    let tables = integration::gdpdu_index_columns(&dir.join("index.xml")).unwrap();
    let read = |file: &str| -> (Vec<String>, Vec<csv::StringRecord>) {
        let text = std::fs::read(dir.join(file)).unwrap();
        let mut r = csv::ReaderBuilder::new().delimiter(b';').from_reader(text.as_slice());
        let h = r.headers().unwrap().iter().map(str::to_string).collect();
        (h, r.records().map(Result::unwrap).collect())
    };
    let sum = |file: &str, column: &str, keep: &Keep| -> Decimal {
        let (h, rows) = read(file);
        assert!(
            tables.iter().any(|(url, cols)| url.starts_with(&format!("{file}:")) && cols == &h),
            "{file} described in index.xml"
        );
        let at = |r: &csv::StringRecord, c: &str| r[h.iter().position(|x| x == c).unwrap()].to_string();
        rows.iter().filter(|r| keep(&|c| at(r, c))).map(|r| d(&at(r, column))).sum()
    };
    let all = |_: &dyn Fn(&str) -> String| true;
    let sql = |q: &str| -> Decimal { connect(&db).query_one(q, &[]).unwrap().get(0) };
    assert_eq!(
        sum("invoices.csv", "signed_net", &all),
        sql("SELECT sum(CASE WHEN type_code = 381 THEN -net_total ELSE net_total END) FROM invoices")
    );
    assert_eq!(sum("invoices.csv", "gross_total", &all), sql("SELECT sum(gross_total) FROM invoices"));
    assert_eq!(sum("invoice_lines.csv", "net", &all), sql("SELECT sum(net_total) FROM invoices"));
    assert_eq!(
        sum("usage.csv", "gpu_seconds", &all),
        sql("SELECT sum((payload->'data'->>'gpu_seconds_delta')::numeric) FROM ledger_events WHERE kind = 'usage.adjusted'")
    );
    assert_eq!(
        sum("budget_bookings.csv", "amount", &|c| c("kind") == "cost.booked"),
        sql("SELECT sum((payload->'data'->>'amount')::numeric) FROM ledger_events WHERE kind = 'cost.booked'")
    );
    assert_eq!(
        sum("budget_bookings.csv", "amount", &|c| c("kind") == "budget.allocated"),
        sql("SELECT sum((payload->'data'->>'amount')::numeric) FROM ledger_events WHERE kind = 'budget.allocated'")
    );
    assert_eq!(
        sum("journal_lines.csv", "amount", &|c| c("gl_account") == "8336" && c("debit_credit") == "H"),
        on_account("8336")
    );
    let (_, jl) = read("journal_lines.csv");
    assert_eq!(jl.len(), journal_rows.len(), "the journal handed over, line for line");
    let (h, inv) = read("invoices.csv");
    let issue = h.iter().position(|c| c == "issue_date").unwrap();
    assert!(inv.iter().all(|r| chrono::NaiveDate::parse_from_str(&r[issue], "%d.%m.%Y").is_ok()), "Date as declared");
}
