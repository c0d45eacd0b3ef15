//! The collector's coverage rows of a range of Berlin days (migration 0014, 0018), for the pure
//! fold `domain::meter::coverage`. Runs that lie inside one Berlin day are summed here per key,
//! class, day and whether their event is in the ledger (a month of a large fleet is hundreds of
//! millions of runs); a run that crosses a midnight comes back alone, for the fold to split.

use crate::StoreError;
use chrono::{DateTime, NaiveDate, Utc};
use domain::meter::coverage::{instants, CoverageClass, CoverageKey, CoverageReport, CoverageRow};
use postgres::Client;
use rust_decimal::Decimal;

/// The collector writes runs of at most one minute (the meter closes minutes): a run that
/// reaches into the range starts less than a day before it, which lets the index on
/// `interval_start` bound the scan from below too.
const SQL: &str = "
WITH runs AS (
    SELECT c.class, c.gpu_sku, c.model_name,
           CASE WHEN c.device LIKE '%/mig-%' THEN coalesce(c.mig_profile, 'unrecorded') END AS mig_profile,
           c.interval_start, c.interval_end, c.gpu_seconds,
           (l.event_id IS NOT NULL) AS in_ledger,
           (c.interval_start AT TIME ZONE 'Europe/Berlin')::date AS day,
           (c.interval_start AT TIME ZONE 'Europe/Berlin')::date
               = ((c.interval_end - interval '1 microsecond') AT TIME ZONE 'Europe/Berlin')::date AS one_day
      FROM collector_coverage c
      LEFT JOIN ledger_event_ids l
        ON c.class = 'billed' AND l.tenant_id = c.tenant_id COLLATE \"C\" AND l.event_id = c.event_id
     WHERE c.interval_start >= $1::timestamptz - interval '1 day' AND c.interval_start < $2 AND c.interval_end > $1
)
SELECT class, gpu_sku, model_name, mig_profile, min(interval_start), max(interval_end), sum(gpu_seconds), in_ledger
  FROM runs WHERE one_day
 GROUP BY class, gpu_sku, model_name, mig_profile, in_ledger, day
UNION ALL
SELECT class, gpu_sku, model_name, mig_profile, interval_start, interval_end, gpu_seconds, in_ledger
  FROM runs WHERE NOT one_day";

/// The coverage rows touching the instants `[start, end)`, runs of one day summed.
pub fn coverage_rows(c: &mut Client, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Vec<CoverageRow>, StoreError> {
    let mut out = Vec::new();
    for r in c.query(SQL, &[&start, &end])? {
        let class: String = r.get(0);
        let class = CoverageClass::parse(&class)
            .ok_or_else(|| StoreError::Invariant(format!("collector_coverage holds the class {class:?}")))?;
        out.push(CoverageRow {
            key: CoverageKey::new(r.get(1), r.get(2), r.get(3)),
            class,
            start: r.get(4),
            end: r.get(5),
            gpu_seconds: r.get::<_, Decimal>(6),
            in_ledger: r.get(7),
        });
    }
    Ok(out)
}

/// The coverage report over Berlin days `from..=to` (see `domain::meter::coverage`).
pub fn coverage_report(c: &mut Client, from: NaiveDate, to: NaiveDate) -> Result<CoverageReport, StoreError> {
    let (start, end) = instants(from, to);
    let rows = coverage_rows(c, start, end)?;
    Ok(domain::meter::coverage::fold(&rows, from, to))
}
