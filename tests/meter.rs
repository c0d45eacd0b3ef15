//! The usage event's optional members (MIG slice, energy) on the real PostgreSQL and Kafka: typed
//! columns that give back every byte of the event, and the GPU-time guard that lets MIG instances
//! of one GPU share it while a whole-GPU interval over them is an overlap.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::energy::WattHours;
use domain::usage::{parse_usage_message, MigSlice, RejectionCode, UsageRecorded};
use integration::{brokers, connect, fresh_db, ingest_until, serial, unique};
use postgres::Client;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;
use store::append::{claim_partitions, AppendOutcome, Claim, InMessage, LedgerWriter, PartitionBatch};
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 31, 23, 0, 0).unwrap()
}

/// A one-minute event of `gpu` (on MIG instance `slot`, or the whole GPU), with its energy.
fn event(
    n: u128,
    tenant: &str,
    gpu: u128,
    slot: Option<u8>,
    minute: i64,
    seconds: &str,
    wh: Option<&str>,
) -> UsageRecorded {
    UsageRecorded {
        event_id: Uuid::from_u128(n),
        source: "//test/dcgm".into(),
        tenant_id: tenant.into(),
        gpu_sku: "nvidia-h200".into(),
        gpu_id: Uuid::from_u128(gpu),
        node: "fra1-r00-n000".into(),
        project: "p1".into(),
        job: None,
        labels: Default::default(),
        interval_start: t0() + Duration::minutes(minute),
        interval_end: t0() + Duration::minutes(minute + 1),
        gpu_seconds: domain::GpuSeconds::parse(seconds).unwrap(),
        mig: slot
            .map(|instance| MigSlice { instance, profile: if instance == 0 { "3g.71gb" } else { "1g.18gb" }.into() }),
        energy_wh: wh.map(|w| WattHours::parse(w).unwrap()),
    }
}

fn msg(offset: i64, e: &UsageRecorded) -> InMessage {
    let payload = serde_json::to_vec(&e.to_cloudevent()).unwrap();
    let key = Some(e.tenant_id.as_bytes().to_vec());
    let verdict = parse_usage_message(key.as_deref(), &payload, Utc::now());
    assert!(verdict.is_ok(), "{verdict:?}");
    InMessage::new(offset, key, payload, verdict)
}

fn claim(db: &mut Client, p: i32) -> Claim {
    claim_partitions(db, "gpu.usage.v1", &[p], "me").unwrap()[0]
}

fn append(w: &mut LedgerWriter, claim: Claim, messages: Vec<InMessage>) -> store::BatchCounts {
    match w.append("me", &[PartitionBatch { claim, messages }], Utc::now()).unwrap() {
        AppendOutcome::Committed(c) => c,
        other => panic!("expected a commit, got {other:?}"),
    }
}

#[test]
fn mig_and_energy_rows_give_back_every_byte_beside_rows_without_them() {
    let url = fresh_db("meter_typed").unwrap();
    let mut db = connect(&url);
    let mut w = LedgerWriter::new(connect(&url), connect(&url));
    let c = claim(&mut db, 0);
    let sliced = event(1, "rheinbank", 1, Some(3), 0, "60", Some("11.666667"));
    let plain = event(2, "rheinbank", 2, None, 0, "30", None);
    let energy_only = event(3, "rheinbank", 3, None, 0, "60", Some("0"));
    let sent = [&sliced, &plain, &energy_only];
    let counts = append(&mut w, c, sent.iter().enumerate().map(|(i, e)| msg(i as i64, e)).collect());
    assert_eq!(counts.ledgered, 3);

    let typed: Vec<(Option<i16>, Option<String>, Option<Decimal>)> = db
        .query("SELECT mig_instance, mig_profile, energy_wh FROM ledger_events ORDER BY stream_pos", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        typed,
        vec![
            (Some(3), Some("1g.18gb".into()), Some(Decimal::from_str("11.666667").unwrap())),
            (None, None, None),
            (None, None, Some(Decimal::ZERO)),
        ]
    );
    let rows = db
        .query(
            &format!(
                "SELECT event_id, tenant_id, occurred_at, {} FROM ledger_events ORDER BY stream_pos",
                store::ledger_row::content_columns("")
            ),
            &[],
        )
        .unwrap();
    for (row, sent) in rows.iter().zip(sent) {
        let tenant: String = row.get(1);
        let id = store::ledger_row::Identity { event_id: row.get(0), tenant_id: &tenant, occurred_at: row.get(2) };
        let content = store::ledger_row::content(row, 3, id).unwrap();
        assert_eq!(content.payload_bytes().unwrap(), sent.payload_bytes());
        assert_eq!(content.into_usage(sent.event_id).unwrap(), *sent);
    }
    assert!(store::read::verify_chains(&mut db).unwrap().iter().all(|r| r.result.is_ok()));
    assert_eq!(store::read::rebuild_hourly(&mut db).unwrap(), store::read::live_hourly(&mut db).unwrap());
    let mut exported = Vec::new();
    store::audit::export_rows(&mut db, &store::audit::ExportRange::default(), |r| {
        exported.push(r.payload.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(exported, sent.iter().map(|e| e.payload_bytes()).collect::<Vec<_>>());

    // Redelivered: duplicates; the same id with other energy or another slice: conflicts.
    let mut other_energy = sliced.clone();
    other_energy.energy_wh = WattHours::parse("11.666668");
    let mut other_slice = plain.clone();
    other_slice.mig = Some(MigSlice { instance: 1, profile: "1g.18gb".into() });
    let c = Claim { next_offset: Some(3), ..c };
    let counts = append(&mut w, c, vec![msg(3, &sliced), msg(4, &plain), msg(5, &other_energy), msg(6, &other_slice)]);
    assert_eq!((counts.ledgered, counts.duplicates, counts.quarantined), (0, 2, 2));
    assert_eq!(counts.by_reason, vec![(RejectionCode::Conflict, 2)]);

    // The database holds the pairing and the ranges too (a copy of the first row, rolled back).
    for (values, ok) in [
        ("2, '1g.18gb', 5", true),
        ("4, NULL, NULL", false),
        ("NULL, '1g.18gb', NULL", false),
        ("100, '1g.18gb', NULL", false),
        ("NULL, NULL, -1", false),
        ("NULL, NULL, 'NaN'", false),
    ] {
        let sql = format!(
            "INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, version, kind, tenant_id,
                 event_id, hash, gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, source,
                 mig_instance, mig_profile, energy_wh)
             SELECT occurred_at, recorded_at, stream_id, 99, version, kind, tenant_id, gen_random_uuid(), hash,
                 gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, source, {values}
               FROM ledger_events WHERE stream_pos = 1"
        );
        let mut tx = db.transaction().unwrap();
        let got = tx.batch_execute(&sql);
        let constraint =
            got.as_ref().err().and_then(|e| e.as_db_error()).and_then(|d| d.constraint().map(str::to_string));
        assert_eq!(got.is_ok(), ok, "{values}: {got:?}");
        if !ok {
            assert_eq!(constraint.as_deref(), Some("ledger_events_mig_energy"), "{values}");
        }
        tx.rollback().unwrap();
    }
}

/// Waits until `writers` connections wait for an advisory lock (the commit lock held by the test).
fn wait_for_the_commit_lock(url: &str, writers: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = connect(url)
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", &[])
            .unwrap()
            .get(0);
        if waiting == writers {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{writers} writer(s) should be waiting for the commit lock");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Two writers (as two processes: each probes the ledger's GPU-time index for the other's commit)
/// decide batches on one GPU at the same moment. Two MIG instances of it both commit; an
/// instance and the whole GPU, or one instance twice, do not: one is an overlap.
#[test]
fn writers_side_by_side_tell_mig_instances_apart() {
    let url = fresh_db("meter_side_by_side").unwrap();
    let mut setup = connect(&url);
    let (c0, c1) = (claim(&mut setup, 0), claim(&mut setup, 1));
    let cases = [(Some(1), Some(2), false), (Some(1), None, true), (None, Some(2), true), (Some(3), Some(3), true)];
    for (round, (slot_a, slot_b, overlapping)) in cases.into_iter().enumerate() {
        let gpu = 100 + round as u128;
        let a = event(1000 + 2 * round as u128, "rheinbank", gpu, slot_a, 0, "60", None);
        let b = event(1001 + 2 * round as u128, "seekr-ai-us", gpu, slot_b, 0, "60", Some("3.5"));
        let mut holder = connect(&url);
        let mut hold = holder.transaction().unwrap();
        hold.execute("SELECT pg_advisory_xact_lock($1)", &[&store::append::COMMIT_LOCK]).unwrap();
        let offset = round as i64;
        let claims = [
            Claim { next_offset: (round > 0).then_some(offset), ..c0 },
            Claim { next_offset: (round > 0).then_some(offset), ..c1 },
        ];
        let results: Vec<store::BatchCounts> = std::thread::scope(|scope| {
            let handles: Vec<_> = [(claims[0], a.clone()), (claims[1], b.clone())]
                .into_iter()
                .map(|(claim, e)| {
                    let mut w = LedgerWriter::new(connect(&url), connect(&url));
                    scope.spawn(move || append(&mut w, claim, vec![msg(offset, &e)]))
                })
                .collect();
            wait_for_the_commit_lock(&url, 2);
            hold.commit().unwrap();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ledgered: u64 = results.iter().map(|c| c.ledgered).sum();
        let overlaps: Vec<_> = results.iter().flat_map(|c| c.by_reason.clone()).collect();
        if overlapping {
            assert_eq!((ledgered, overlaps), (1, vec![(RejectionCode::Overlap, 1)]), "round {round}");
        } else {
            assert_eq!((ledgered, overlaps), (2, vec![]), "round {round}: two instances share the GPU");
        }
    }
    let mut db = connect(&url);
    assert!(store::read::verify_chains(&mut db).unwrap().iter().all(|r| r.result.is_ok()));
}

/// Through the real Kafka and the `gpuledger ingest` binary: two tenants on two MIG instances of
/// one GPU for half an hour are both billed in full; a third tenant's whole-GPU minute inside that
/// half hour is quarantined as an overlap, its minute after it is ledgered, and a redelivered
/// slice is a duplicate. GPU-seconds and watt-hours per tenant in the ledger equal the sums of
/// what was sent, exactly.
#[test]
fn two_tenants_on_mig_instances_of_one_gpu_through_kafka() {
    let _serial = serial();
    let db = fresh_db("meter_kafka").unwrap();
    let topic = unique("t.mig");
    ingest::producer::ensure_topic(&brokers(), &topic, 4).unwrap();
    let gpu = 0xfeed;
    let mut n = 0u128;
    let mut next = || {
        n += 1;
        n
    };
    let mut slices = Vec::new();
    for minute in 0..30i64 {
        let wh_a = format!("1.{:06}", 250_000 + minute);
        slices.push(event(next(), "rheinbank", gpu, Some(1), minute, "60", Some(&wh_a)));
        let seconds_b = format!("45.{}", minute % 10);
        slices.push(event(next(), "falke-drones", gpu, Some(2), minute, &seconds_b, Some("2.000001")));
    }
    let send = |events: &[&UsageRecorded]| {
        let messages = events
            .iter()
            .map(|e| (Some(e.tenant_id.as_bytes().to_vec()), serde_json::to_vec(&e.to_cloudevent()).unwrap()))
            .collect::<Vec<_>>();
        ingest::producer::produce(&brokers(), &topic, messages.into_iter()).unwrap();
    };
    send(&slices.iter().collect::<Vec<_>>());
    ingest_until(&db, &topic, &unique("g"), &[], slices.len() as i64).unwrap();

    // Afterwards (so that the order is known): the whole GPU inside the half hour, after it, and
    // a slice again.
    let whole_inside = event(next(), "seekr-ai-us", gpu, None, 10, "60", Some("5"));
    let whole_after = event(next(), "seekr-ai-us", gpu, None, 30, "60", Some("5"));
    send(&[&whole_inside, &whole_after, &slices[7]]);
    ingest_until(&db, &topic, &unique("g"), &[], slices.len() as i64 + 3).unwrap();

    let mut expected: BTreeMap<String, (Decimal, Decimal, i64)> = BTreeMap::new();
    for e in slices.iter().chain([&whole_after]) {
        let t = expected.entry(e.tenant_id.clone()).or_default();
        t.0 += e.gpu_seconds.value();
        t.1 += e.energy_wh.unwrap().value();
        t.2 += 1;
    }
    let mut c = connect(&db);
    let got: BTreeMap<String, (Decimal, Decimal, i64)> = c
        .query(
            "SELECT tenant_id, sum(gpu_seconds), sum(energy_wh), count(*) FROM ledger_events
              WHERE kind = 'usage.recorded' GROUP BY tenant_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    assert_eq!(got, expected);
    let quarantined: Vec<(String, String)> = c
        .query("SELECT reason, tenant_id FROM quarantine", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(quarantined, vec![("overlap".to_string(), "seekr-ai-us".to_string())]);
    let duplicates: i64 = c.query_one("SELECT sum(duplicates)::bigint FROM ledger_streams", &[]).unwrap().get(0);
    assert_eq!(duplicates, 1);
    assert!(store::read::verify_chains(&mut c).unwrap().iter().all(|r| r.result.is_ok()));
    assert_eq!(store::read::rebuild_hourly(&mut c).unwrap(), store::read::live_hourly(&mut c).unwrap());
}

/// A GPU model the code never heard of: its usage is quarantined as `unknown_sku` (and a price
/// list for it refused) until finance loads its `sku.set` with `gpuledger reference load`; from
/// then on the same writer ledgers it, from the entry's effective instant on.
#[test]
fn a_new_gpu_model_is_learnt_from_the_sku_catalogue() {
    let url = fresh_db("meter_catalogue").unwrap();
    let mut db = connect(&url);
    let mut w = LedgerWriter::new(connect(&url), connect(&url));
    let c = claim(&mut db, 0);
    let b300 = |n: u128, minute: i64| UsageRecorded {
        gpu_sku: "nvidia-b300".into(),
        ..event(n, "rheinbank", 9, None, minute, "60", None)
    };
    let counts = append(&mut w, c, vec![msg(0, &b300(1, 0))]);
    assert_eq!((counts.ledgered, counts.by_reason.clone()), (0, vec![(RejectionCode::UnknownSku, 1)]));

    let dir = std::env::temp_dir().join(unique("catalogue"));
    std::fs::create_dir_all(&dir).unwrap();
    let price = serde_json::json!({ "kind": "price_list.set", "data": { "sku": "nvidia-b300",
        "effective_from": "2026-10-31T23:00:00Z", "currency": "EUR",
        "tiers": [{ "from_gpu_hours": "0", "eur_per_gpu_hour": "7.50" }] } });
    let sku = serde_json::json!({ "kind": "sku.set", "data": { "sku": "nvidia-b300",
        "effective_from": "2026-10-31T23:00:00Z", "display_name": "NVIDIA B300",
        "model_names": ["NVIDIA B300"],
        "mig_profiles": [{ "profile": "1g.23gb", "gpu_fraction": "0.142857" }] } });
    let price_file = dir.join("price.json");
    std::fs::write(&price_file, serde_json::to_vec(&price).unwrap()).unwrap();
    let refused = integration::gpuledger(&url, &["reference", "load", price_file.to_str().unwrap()]).unwrap_err();
    assert!(refused.to_string().contains("not in the SKU catalogue"), "{refused}");
    let both = dir.join("catalogue.json");
    std::fs::write(&both, serde_json::to_vec(&serde_json::json!([sku, price])).unwrap()).unwrap();
    integration::gpuledger(&url, &["reference", "load", both.to_str().unwrap()]).unwrap();

    let c = Claim { next_offset: Some(1), ..c };
    let counts = append(&mut w, c, vec![msg(1, &b300(2, 0)), msg(2, &b300(3, -1))]);
    assert_eq!(counts.ledgered, 1, "the catalogue's entry is in force from 23:00");
    assert_eq!(counts.by_reason, vec![(RejectionCode::UnknownSku, 1)]);
    let state = store::billing::reference_state(&mut db).unwrap();
    assert_eq!(state.catalogue.sku_of_model("NVIDIA B300", t0()), Some("nvidia-b300"));
    assert!(store::read::verify_chains(&mut db).unwrap().iter().all(|r| r.result.is_ok()));
}

/// MIG pricing end to end: slices of one H200 for two tenants through Kafka, a profile with a
/// price list of its own (3g.71gb at 1.20) and one priced from its fraction of the GPU (1g.18gb:
/// 3.80 × 0.142857 = 0.5428566 → 0.5429), a close of November, and the slice lines' amounts
/// against a computation made here from the events; the documents replay byte for byte.
#[test]
fn mig_slices_are_priced_by_profile_and_invoiced_as_slices() {
    let _serial = serial();
    let db = fresh_db("meter_pricing").unwrap();
    let topic = unique("t.migprice");
    ingest::producer::ensure_topic(&brokers(), &topic, 4).unwrap();
    let (gpu, other_gpu) = (0xbeef, 0xcafe);
    let mut events = Vec::new();
    for minute in 0..90i64 {
        let n = 10 * minute as u128;
        let seconds = format!("{}.{}", 40 + minute % 20, minute % 7);
        events.push(event(n + 1, "rheinbank", gpu, Some(1), minute, &seconds, None)); // 1g.18gb
        events.push(event(n + 2, "robotik-nord", gpu, Some(0), minute, "60", None)); // 3g.71gb
        events.push(event(n + 3, "robotik-nord", gpu, Some(2), minute, "30.5", None)); // 1g.18gb
        events.push(event(n + 4, "seekr-ai-us", other_gpu, None, minute, "60", None));
        // whole GPU
    }
    let messages = events
        .iter()
        .map(|e| (Some(e.tenant_id.as_bytes().to_vec()), serde_json::to_vec(&e.to_cloudevent()).unwrap()))
        .collect::<Vec<_>>();
    ingest::producer::produce(&brokers(), &topic, messages.into_iter()).unwrap();
    ingest_until(&db, &topic, &unique("g"), &[], events.len() as i64).unwrap();

    let mut files: Vec<String> = ["seller", "prices", "profiles", "contracts"]
        .iter()
        .map(|f| integration::repo_root().join(format!("fixtures/billing/{f}.json")).display().to_string())
        .collect();
    let mig = serde_json::json!([
        { "kind": "sku.set", "data": { "sku": "nvidia-h200", "effective_from": "2026-01-01T00:00:00Z",
          "display_name": "NVIDIA H200 141GB", "model_names": ["NVIDIA H200"],
          "mig_profiles": [{ "profile": "1g.18gb", "gpu_fraction": "0.142857" },
                           { "profile": "3g.71gb", "gpu_fraction": "0.428571" }] } },
        { "kind": "price_list.set", "data": { "sku": "nvidia-h200", "mig_profile": "3g.71gb",
          "effective_from": "2026-01-01T00:00:00Z", "currency": "EUR",
          "tiers": [{ "from_gpu_hours": "0", "eur_per_gpu_hour": "1.20" }] } }
    ]);
    let mig_file = std::env::temp_dir().join(format!("{}.json", unique("mig")));
    std::fs::write(&mig_file, serde_json::to_vec(&mig).unwrap()).unwrap();
    files.push(mig_file.display().to_string());
    let mut args = vec!["reference", "load"];
    args.extend(files.iter().map(String::as_str));
    integration::gpuledger(&db, &args).unwrap();
    let shown: serde_json::Value =
        serde_json::from_str(&integration::gpuledger(&db, &["reference", "show"]).unwrap()).unwrap();
    let lists = shown["price_lists"].as_array().unwrap();
    assert!(lists.iter().any(|l| l["mig_profile"] == "3g.71gb"), "reference show lists the slice's price list");
    let out = integration::gpuledger(&db, &["invoices", "close", "--period", "2026-11"]).unwrap();
    assert!(out.contains("closed 2026-11"), "{out}");

    // The expectation, from the events: per (tenant, profile) the GPU-seconds, at the profile's
    // price (its own list, or the fraction's, 4 digits), rounded once to cents.
    let price = |profile: Option<&str>| match profile {
        None => Decimal::from_str("3.80").unwrap(),
        Some("3g.71gb") => Decimal::from_str("1.20").unwrap(),
        Some(_) => Decimal::from_str("0.5429").unwrap(),
    };
    let mut expected: BTreeMap<(String, Option<String>), Decimal> = BTreeMap::new();
    for e in &events {
        let profile = e.mig.as_ref().map(|m| m.profile.clone());
        *expected.entry((e.tenant_id.clone(), profile)).or_default() += e.gpu_seconds.value();
    }
    let mut c = connect(&db);
    let docs = store::billing::documents(&mut c, None, None).unwrap();
    let mut billed: BTreeMap<(String, Option<String>), Decimal> = BTreeMap::new();
    for d in docs.iter().filter(|d| d.tenant_id != "allgaeu-versicherung" && d.tenant_id != "falke-drones") {
        for l in &d.lines {
            let profile = l.charge.mig_profile.clone();
            let exact = l.gpu_seconds * price(profile.as_deref()) / Decimal::from(3600);
            assert_eq!(
                l.net.amount(),
                exact.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            );
            assert_eq!(l.unit_price.value(), price(profile.as_deref()), "{}", l.description);
            if let Some(p) = &profile {
                assert!(l.description.contains(&format!("nvidia-h200 MIG {p} GPU-hours")), "{}", l.description);
            }
            *billed.entry((d.tenant_id.clone(), profile)).or_default() += l.gpu_seconds;
        }
    }
    assert_eq!(billed, expected);

    let out = integration::gpuledger(&db, &["invoices", "verify"]).unwrap();
    assert!(out.contains("every document byte-identical"), "{out}");
    let out = integration::gpuledger(&db, &["verify"]).unwrap();
    assert!(!out.contains("BROKEN") && !out.contains("differ"), "{out}");
    assert_eq!(store::read::rebuild_hourly(&mut c).unwrap(), store::read::live_hourly(&mut c).unwrap());

    // The XRechnung of the slices passes the official rules and names them.
    let dir = std::env::temp_dir().join(unique("mig_exports"));
    integration::gpuledger(&db, &["invoices", "export", "--period", "2026-11", "--out", dir.to_str().unwrap()])
        .unwrap();
    let xml: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir.join("2026-11").join("xrechnung")).unwrap().map(|f| f.unwrap().path()).collect();
    let all_xml: String = xml.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    assert!(all_xml.contains("<cbc:Name>nvidia-h200 MIG 3g.71gb GPU-hours"), "no slice line in the XRechnung");
    integration::validate_xrechnung(&xml).unwrap();
}
