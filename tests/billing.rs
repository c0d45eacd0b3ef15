//! Billing on the real services: usage through Kafka into the ledger, finance's reference data
//! from the fixtures, month closes issuing invoices, late usage and a correction in the next close
//! (late lines, a credit note), replay byte for byte, the exports against the official XRechnung
//! rules; a close that fails midway leaves nothing; bad finance input is refused clearly.

use chrono::{Duration, Utc};
use domain::billing::invoice::{InvoiceDoc, TYPE_CREDIT_NOTE};
use domain::billing::rating::LineKind;
use domain::billing::Period;
use integration::{
    connect, fresh_db, gpuledger, produce, produce_and_ingest, repo_root, serial, superuser_url, unique,
    validate_xrechnung,
};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn fixtures() -> Vec<String> {
    ["seller", "prices", "profiles", "contracts"]
        .iter()
        .map(|f| repo_root().join(format!("fixtures/billing/{f}.json")).display().to_string())
        .collect()
}

fn load(db: &str, files: &[String]) -> anyhow::Result<String> {
    let mut args = vec!["reference", "load"];
    args.extend(files.iter().map(String::as_str));
    gpuledger(db, &args)
}

fn write_json(v: &serde_json::Value) -> String {
    let p = std::env::temp_dir().join(format!("{}.json", unique("ref")));
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.display().to_string()
}

/// Produces a slice of fleet usage and ingests it completely.
fn usage(db: &str, topic: &str, seed: &str, gpus: &str, start: &str, minutes: &str) {
    let args = ["--seed", seed, "--gpus", gpus, "--tenants", "5", "--start", start, "--minutes", minutes];
    produce_and_ingest(db, topic, &args).unwrap();
}

/// GPU-seconds per tenant and period in the hourly projection.
fn usage_seconds(db: &str) -> BTreeMap<(String, Period), Decimal> {
    let mut c = connect(db);
    let mut out = BTreeMap::new();
    for r in c.query("SELECT tenant_id, hour, gpu_seconds FROM usage_hourly", &[]).unwrap() {
        *out.entry((r.get::<_, String>(0), Period::of(r.get(1)))).or_insert(Decimal::ZERO) += r.get::<_, Decimal>(2);
    }
    out
}

fn billed_seconds(docs: &[InvoiceDoc]) -> BTreeMap<(String, Period), Decimal> {
    let mut out = BTreeMap::new();
    for ((tenant, period, _sku), secs) in domain::billing::close::billed_seconds(docs) {
        *out.entry((tenant, period)).or_insert(Decimal::ZERO) += secs;
    }
    out
}

#[test]
fn months_close_into_invoices_that_replay_byte_for_byte_and_pass_xrechnung() {
    let _serial = serial();
    let db = fresh_db("billing").unwrap();
    let topic = unique("t.bill");
    // One day of September for 8 GPUs and 5 tenants.
    usage(&db, &topic, "21", "8", "2026-09-01T00:00:00Z", "1440");
    let out = load(&db, &fixtures()).unwrap();
    assert!(out.contains("15 new reference events"), "{out}");
    let out = load(&db, &fixtures()).unwrap();
    assert!(out.contains("0 new reference events, 15 already in the ledger"), "{out}");

    let out = gpuledger(&db, &["invoices", "close", "--period", "2026-09"]).unwrap();
    assert!(out.contains("closed 2026-09"), "{out}");
    let out = gpuledger(&db, &["invoices", "close", "--period", "2026-09"]).unwrap();
    assert!(out.contains("closed before; nothing new issued"), "{out}");
    let mut c = connect(&db);
    let september = store::billing::documents(&mut c, None, None).unwrap();
    assert_eq!(september.len(), 5, "one invoice per tenant (usage or minimum charge)");

    // Late September usage (after its close), a correction taking GPU time away from a tenant
    // without late usage, and October's usage.
    let late = produce(
        &db,
        &unique("t.probe"),
        &["--seed", "22", "--gpus", "3", "--tenants", "5", "--start", "2026-09-20T00:00:00Z", "--minutes", "120"],
    )
    .unwrap();
    let late_tenants: BTreeSet<String> = late["gpu_seconds"].as_object().unwrap().keys().cloned().collect();
    usage(&db, &topic, "22", "3", "2026-09-20T00:00:00Z", "120");
    usage(&db, &topic, "23", "8", "2026-10-03T00:00:00Z", "600");
    let corrected = september
        .iter()
        .map(|d| d.tenant_id.clone())
        .find(|t| !late_tenants.contains(t) && t != "allgaeu-versicherung")
        .expect("a tenant without late usage");
    let row = c
        .query_one(
            "SELECT gpu_sku, project, hour, gpu_seconds FROM usage_hourly WHERE tenant_id = $1 AND hour < $2
              ORDER BY gpu_seconds DESC LIMIT 1",
            &[&corrected, &Period::parse("2026-10").unwrap().start()],
        )
        .unwrap();
    let (sku, project, hour, secs): (String, String, chrono::DateTime<Utc>, Decimal) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let take = (secs / Decimal::from(2)).round_dp(3);
    let adj = json!([{ "kind": "usage.adjusted", "data": {
        "tenant_id": corrected, "gpu_sku": sku, "project": project,
        "hour": hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "gpu_seconds_delta": format!("-{take}"), "reason": "GPU reported while in maintenance (ticket OPS-1234)" } }]);
    load(&db, &[write_json(&adj)]).unwrap();

    let out = gpuledger(&db, &["invoices", "close", "--period", "2026-10"]).unwrap();
    assert!(out.contains("closed 2026-10"), "{out}");
    let all = store::billing::documents(&mut c, None, None).unwrap();
    let credit = all.iter().find(|d| d.type_code == TYPE_CREDIT_NOTE).expect("a credit note for the correction");
    assert_eq!(credit.tenant_id, corrected);
    assert_eq!(credit.period.to_string(), "2026-09");
    let original = september.iter().find(|d| d.tenant_id == corrected).unwrap();
    assert_eq!(credit.corrects.as_ref().unwrap().number, original.number);
    assert!(credit.number.starts_with("GLC-2026-"), "{}", credit.number);
    let late_invoice = all
        .iter()
        .find(|d| d.type_code == 380 && d.lines.iter().any(|l| l.late && l.period.to_string() == "2026-09"))
        .expect("an invoice with late-usage lines of September");
    assert!(late_tenants.contains(&late_invoice.tenant_id));

    // Every GPU-second of usage is billed exactly once, per tenant and period.
    let used = usage_seconds(&db);
    let billed = billed_seconds(&all);
    for (k, secs) in &used {
        assert_eq!(billed.get(k).copied().unwrap_or_default(), *secs, "{k:?}");
    }
    for (k, secs) in &billed {
        assert_eq!(used.get(k).copied().unwrap_or_default(), *secs, "{k:?}");
    }

    // Numbers are gapless per series; the documents replay byte for byte; the chains hold.
    let mut series: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for r in c.query("SELECT series, series_no FROM invoices ORDER BY series, series_no", &[]).unwrap() {
        series.entry(r.get(0)).or_default().push(r.get(1));
    }
    for nums in series.values() {
        assert_eq!(*nums, (1..=nums.len() as i32).collect::<Vec<_>>());
    }
    let out = gpuledger(&db, &["invoices", "verify"]).unwrap();
    assert!(out.contains("2 closes replayed, every document byte-identical"), "{out}");
    let out = gpuledger(&db, &["verify"]).unwrap();
    assert!(!out.contains("BROKEN") && !out.contains("differ"), "{out}");
    assert_eq!(store::read::rebuild_hourly(&mut c).unwrap(), store::read::live_hourly(&mut c).unwrap());

    // Issued documents never change.
    let e = c.execute("UPDATE invoices SET gross_total = 0", &[]).unwrap_err();
    assert!(e.to_string().contains("append-only") || format!("{e:?}").contains("append-only"), "{e:?}");

    // Every export; every XRechnung file passes the official rules.
    let dir = std::env::temp_dir().join(unique("exports"));
    let mut xml: Vec<PathBuf> = Vec::new();
    let mut focus_rows: Vec<BTreeMap<String, String>> = Vec::new();
    for p in ["2026-09", "2026-10"] {
        let out = gpuledger(&db, &["invoices", "export", "--period", p, "--out", dir.to_str().unwrap()]).unwrap();
        assert!(out.contains("files written"), "{out}");
        for f in std::fs::read_dir(dir.join(p).join("xrechnung")).unwrap() {
            xml.push(f.unwrap().path());
        }
        for name in ["invoices.csv", "invoices.json"] {
            assert!(dir.join(p).join(name).exists());
        }
        let focus: Vec<PathBuf> =
            std::fs::read_dir(dir.join(p).join("focus")).unwrap().map(|f| f.unwrap().path()).collect();
        for f in &focus {
            let by_invoice = domain::billing::focus::billed_cost_by_invoice(&std::fs::read(f).unwrap());
            for (number, cost) in by_invoice {
                let d = all.iter().find(|d| d.number == number).unwrap();
                let expected = if d.type_code == TYPE_CREDIT_NOTE { -d.gross_total } else { d.gross_total }.amount();
                assert_eq!(cost, expected, "FOCUS BilledCost of {number}");
            }
            focus_rows.extend(focus_of(f));
        }
    }
    // The fixtures' contracts in FOCUS: usage-based commitment discounts whose list prices are the
    // published price list's (H100-SXM 2.90 up to 1,000 GPU-hours, B200 4.90 up to 500), whose
    // unused part is an "Unused" row, and whose discount (AV-2026-H100: 5 %) is in the rows.
    let contract_rows = |id: &str| -> Vec<&BTreeMap<String, String>> {
        focus_rows.iter().filter(|r| r["x_ContractId"] == id && r["ChargeClass"].is_empty()).collect()
    };
    for (id, list, contracted, committed) in
        [("AV-2026-H100", "2.90", "2.09", "2.20"), ("FD-2026-B200", "4.90", "4.1000", "4.10")]
    {
        let rows = contract_rows(id);
        assert!(rows.iter().any(|r| r["CommitmentDiscountStatus"] == "Unused"), "{id}: {rows:?}");
        for r in &rows {
            assert_eq!(r["ChargeCategory"], "Usage", "{r:?}");
            assert_ne!(r["x_ChargeKind"], "discount", "the discount is folded into the rows");
            match r["x_ChargeKind"].as_str() {
                "commitment" => {
                    assert_eq!(
                        (r["CommitmentDiscountId"].as_str(), r["CommitmentDiscountStatus"].as_str()),
                        (id, "Used")
                    );
                    assert_eq!((r["ListUnitPrice"].as_str(), r["ContractedUnitPrice"].as_str()), (list, contracted));
                }
                "minimum_top_up" => {
                    assert_eq!(
                        (r["CommitmentDiscountId"].as_str(), r["CommitmentDiscountStatus"].as_str()),
                        (id, "Unused")
                    );
                    assert_eq!(r["CommitmentDiscountQuantity"], r["PricingQuantity"]);
                    assert_eq!(r["ListUnitPrice"], committed, "no GPU used: the committed rate");
                }
                other => assert_eq!(other, "overage"),
            }
        }
    }
    assert_eq!(xml.len(), all.len());
    let report = validate_xrechnung(&xml).unwrap();
    assert_eq!(report.matches(": valid (").count(), all.len(), "{report}");
    let categories: BTreeSet<&str> = all.iter().map(|d| d.vat.category.as_str()).collect();
    assert_eq!(categories, ["AE", "O", "S"].into_iter().collect());
    assert!(all.iter().any(|d| d.lines.iter().any(|l| l.charge.kind == LineKind::MinimumTopUp)));
    assert!(all.iter().any(|d| d.lines.iter().any(|l| l.charge.kind == LineKind::Discount)));
}

/// The rows of a FOCUS file, by column name.
fn focus_of(f: &std::path::Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(f).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records().map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(String::from)).collect()).collect()
}

/// Usage without Kafka, through positive usage adjustments (finance's own reference events).
fn adjustments(period: &str, tenants: &[&str]) -> serde_json::Value {
    let start = Period::parse(period).unwrap().start();
    let items: Vec<serde_json::Value> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({ "kind": "usage.adjusted", "data": {
                "tenant_id": t, "gpu_sku": "nvidia-h200", "project": "p",
                "hour": (start + Duration::hours(i as i64 + 3)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "gpu_seconds_delta": "7200.5", "reason": "metered by hand" } })
        })
        .collect();
    serde_json::Value::Array(items)
}

#[test]
fn a_close_that_fails_midway_leaves_nothing_and_numbers_stay_gapless() {
    let _serial = serial();
    let db = fresh_db("close_crash").unwrap();
    load(&db, &fixtures()).unwrap();
    load(&db, &[write_json(&adjustments("2026-08", &["rheinbank", "robotik-nord", "seekr-ai-us"]))]).unwrap();
    let mut c = connect(&db);
    // The third invoice row fails (as a crash at that moment would).
    c.batch_execute(
        "CREATE FUNCTION fail_third() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.series_no = 3 THEN RAISE EXCEPTION 'simulated crash'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER fail_third BEFORE INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION fail_third();",
    )
    .unwrap();
    let e = gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap_err();
    assert!(e.to_string().contains("database error"), "{e}");
    let counts: (i64, i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM invoices), (SELECT count(*) FROM billing_closes),
                        (SELECT count(*) FROM ledger_events WHERE kind IN ('invoice.issued', 'period.closed'))",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(counts, (0, 0, 0), "a failed close leaves no invoice, no close, no ledger row");
    c.batch_execute("DROP TRIGGER fail_third ON invoices").unwrap();
    let out = gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap();
    // Three tenants with usage, and allgaeu-versicherung's minimum charge.
    assert!(out.contains("4 documents issued"), "{out}");
    for n in 1..=4 {
        assert!(out.contains(&format!("GL-2026-00000{n}")), "{out}");
    }
    let out = gpuledger(&db, &["invoices", "verify"]).unwrap();
    assert!(out.contains("every document byte-identical"), "{out}");
}

#[test]
fn bad_finance_input_is_refused_clearly_and_nothing_is_written() {
    let _serial = serial();
    let db = fresh_db("billing_refusals").unwrap();
    load(&db, &fixtures()).unwrap();
    let mut c = connect(&db);
    let head = |c: &mut postgres::Client| -> i64 {
        c.query_one("SELECT head_pos FROM ledger_streams WHERE topic = 'gpuledger.reference'", &[]).unwrap().get(0)
    };
    let before = head(&mut c);
    let profile_ref = |vat_id: &str, country: &str, treatment: &str, reference: &str| {
        json!({ "kind": "billing_profile.set", "data": {
            "tenant_id": "new-tenant", "legal_name": "New GmbH", "street": "A 1", "city": "B", "postal_code": "1",
            "country": country, "vat_id": vat_id, "vat_treatment": treatment, "buyer_reference": reference,
            "payment_terms_days": 30, "invoice_email": "a@b.example" } })
    };
    let profile = |vat_id: &str, country: &str, treatment: &str| profile_ref(vat_id, country, treatment, "R");
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (profile("FR123", "FR", "reverse_charge"), "vat_id"),
        (profile("DE811111111", "FR", "domestic"), "domestic (19 %) is for customers in Germany"),
        (profile("DE811111111", "US", "not_taxable"), "no EU VAT id"),
        (
            profile_ref("DE811111111", "DE", "domestic", "04011000-12345-67"),
            "buyer_reference: \"04011000-12345-67\" is a Leitweg-ID whose check digits are wrong (ISO 7064 MOD 97-10): 67 given, 04011000-12345-03 would be right",
        ),
        (
            json!({ "kind": "price_list.set", "data": { "sku": "nvidia-a100", "effective_from": "2027-01-01T00:00:00Z", "currency": "EUR", "tiers": [{ "from_gpu_hours": "0", "eur_per_gpu_hour": "1.00" }] } }),
            "not in the SKU catalogue",
        ),
        (
            json!({ "kind": "price_list.set", "data": { "sku": "nvidia-l40s", "effective_from": "2027-01-01T00:00:00Z", "currency": "EUR", "tiers": [{ "from_gpu_hours": "0", "eur_per_gpu_hour": 1.0 }] } }),
            "plain decimal",
        ),
        (
            json!({ "kind": "contract.set", "data": { "contract_id": "AV-OTHER", "tenant_id": "allgaeu-versicherung", "sku": "nvidia-h100-sxm",
                "committed_gpu_hours_per_month": "10", "committed_eur_per_gpu_hour": "2.00", "overage_eur_per_gpu_hour": "2.50",
                "discount_percent": "0", "start_month": "2027-01", "end_month": "2027-03" } }),
            "overlapping months",
        ),
        (
            json!({ "kind": "usage.adjusted", "data": { "tenant_id": "rheinbank", "gpu_sku": "nvidia-h200", "project": "p",
                "hour": "2026-08-01T10:00:00Z", "gpu_seconds_delta": "-1", "reason": "x" } }),
            "would make it negative",
        ),
        (json!({ "kind": "invoice.issued", "data": {} }), "is not one of"),
    ];
    for (item, expected) in cases {
        let e = load(&db, &[write_json(&json!([item]))]).unwrap_err().to_string();
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
    }
    assert_eq!(head(&mut c), before, "nothing was written");

    // A period that is not over yet cannot be closed; nor one with a tenant lacking a profile.
    let now = Utc::now();
    let this_month = Period::of(now);
    let e = gpuledger(&db, &["invoices", "close", "--period", &this_month.to_string()]).unwrap_err();
    assert!(e.to_string().contains("is not over yet"), "{e}");
    load(&db, &[write_json(&adjustments("2026-07", &["unknown-tenant"]))]).unwrap();
    let e = gpuledger(&db, &["invoices", "close", "--period", "2026-07"]).unwrap_err();
    assert!(e.to_string().contains("tenants without a billing profile: [\"unknown-tenant\"]"), "{e}");
    // After a close, prices may no longer change for the closed period.
    load(&db, &[write_json(&adjustments("2026-06", &["rheinbank"]))]).unwrap();
    gpuledger(&db, &["invoices", "close", "--period", "2026-06"]).unwrap();
    let late_price = json!([{ "kind": "price_list.set", "data": { "sku": "nvidia-h200", "effective_from": "2026-06-10T00:00:00Z", "currency": "EUR", "tiers": [{ "from_gpu_hours": "0", "eur_per_gpu_hour": "1.00" }] } }]);
    let e = load(&db, &[write_json(&late_price)]).unwrap_err();
    assert!(e.to_string().contains("which is closed"), "{e}");
}

/// Runs one statement with the ordinary triggers off (`session_replication_role = replica`, as a
/// superuser could): the tampering `invoices verify` must notice.
fn tamper(c: &mut postgres::Client, sql: &str) {
    c.batch_execute(&format!("BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;")).unwrap();
}

#[test]
fn verify_covers_every_billing_table_and_the_database_refuses_rows_without_their_event() {
    let _serial = serial();
    let db = fresh_db("billing_index").unwrap();
    load(&db, &fixtures()).unwrap();
    load(&db, &[write_json(&adjustments("2026-08", &["rheinbank", "robotik-nord"]))]).unwrap();
    let out = gpuledger(&db, &["invoices", "close", "--period", "2026-08"]).unwrap();
    // Issued in the test's present, long after 15 September: the reverse-charge invoice is late
    // (§ 14a Abs. 1 Satz 2 UStG), the domestic one has no such deadline.
    assert_eq!(out.matches("warning: ").count(), 1, "{out}");
    assert!(out.contains("to robotik-nord (reverse charge) is issued on"), "{out}");
    assert!(
        out.contains("after the § 14a Abs. 1 Satz 2 UStG deadline of 2026-09-15 for the service of 2026-08"),
        "{out}"
    );
    let out = gpuledger(&db, &["invoices", "verify"]).unwrap();
    assert!(out.contains("every row matches its ledger event"), "{out}");
    let mut c = connect(&superuser_url(&db));
    let first = "(SELECT min(number) FROM invoices)";

    // Each table people read, changed behind the triggers' back: verify names it.
    let cases = [
        (
            format!("UPDATE invoices SET gross_total = gross_total + 10 WHERE number = {first}"),
            "table invoices: row GL-2026-000001: gross_total is",
        ),
        (format!("UPDATE invoices SET tenant_id = 'someone-else' WHERE number = {first}"), "tenant_id is someone-else"),
        (
            "UPDATE billing_closes SET closed_at = closed_at - interval '1 day'".to_string(),
            "table billing_closes: row 2026-08: closed_at is",
        ),
        (format!("DELETE FROM invoices WHERE number = {first}"), "table invoices: no row for GL-2026-000001"),
    ];
    for (sql, expected) in &cases {
        c.batch_execute("CREATE TEMP TABLE saved_i AS SELECT * FROM invoices; CREATE TEMP TABLE saved_c AS SELECT * FROM billing_closes").unwrap();
        tamper(&mut c, sql);
        let e = gpuledger(&db, &["invoices", "verify"]).unwrap_err().to_string();
        assert!(e.contains(expected), "{sql}: expected {expected:?} in: {e}");
        assert!(e.contains("differences between the billing tables"), "{e}");
        tamper(
            &mut c,
            "DELETE FROM invoices; INSERT INTO invoices SELECT * FROM saved_i; DELETE FROM billing_closes;
             INSERT INTO billing_closes SELECT * FROM saved_c; DROP TABLE saved_i; DROP TABLE saved_c",
        );
        let out = gpuledger(&db, &["invoices", "verify"]).unwrap();
        assert!(out.contains("every row matches its ledger event"), "{out}");
    }

    // A row without its invoice.issued event, or unlike it, is refused by the database itself,
    // with the ordinary triggers on or off.
    let n: i64 = c.query_one("SELECT count(*) FROM invoices", &[]).unwrap().get(0);
    let columns = "number, series, series_no, type_code, tenant_id, period, close_period, issued_at,
                   net_total, vat_total, gross_total, event_id, stream_id, stream_pos";
    let no_event = format!(
        "INSERT INTO invoices ({columns})
         SELECT 'GL-2026-{:06}', series, {}, type_code, tenant_id, period, close_period, issued_at,
                net_total, vat_total, gross_total, gen_random_uuid(), stream_id, stream_pos FROM invoices WHERE number = {first}",
        n + 1,
        n + 1
    );
    let e = c.batch_execute(&no_event).unwrap_err();
    assert!(format!("{e:?}").contains("has no invoice.issued event"), "{e:?}");
    let replica = |sql: &str| format!("BEGIN; SET LOCAL session_replication_role = replica; {sql}; COMMIT;");
    let e = c.batch_execute(&replica(&no_event)).unwrap_err();
    assert!(format!("{e:?}").contains("has no invoice.issued event"), "replica mode: {e:?}");
    c.batch_execute("ROLLBACK").unwrap();
    // The row of an existing event, put back with another total.
    let unlike = format!(
        "CREATE TEMP TABLE one AS SELECT * FROM invoices WHERE number = {first};
         DELETE FROM invoices WHERE number = (SELECT number FROM one);
         INSERT INTO invoices ({columns}) SELECT number, series, series_no, type_code, tenant_id, period,
                close_period, issued_at, net_total, vat_total, gross_total + 1, event_id, stream_id, stream_pos FROM one"
    );
    let e = c.batch_execute(&replica(&unlike)).unwrap_err();
    assert!(format!("{e:?}").contains("differs from its invoice.issued event"), "{e:?}");
    c.batch_execute("ROLLBACK").unwrap();
    let e = c
        .batch_execute(
            "INSERT INTO billing_closes (period, event_id, closed_at, stream_id, stream_pos)
             SELECT '2026-07', gen_random_uuid(), closed_at, stream_id, stream_pos FROM billing_closes",
        )
        .unwrap_err();
    assert!(format!("{e:?}").contains("has no period.closed event"), "{e:?}");
    let after: i64 = c.query_one("SELECT count(*) FROM invoices", &[]).unwrap().get(0);
    assert_eq!(after, n);
}
