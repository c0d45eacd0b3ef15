//! Prometheus metrics: the middleware that counts and times every request, and `/metrics`,
//! which adds the usage cache's counters and the ingesters' counts per stream. `/metrics` is
//! served on its own listener (`gpuledger serve --metrics-listen`), never with the API. Every
//! label takes values from a fixed set (the method normalised, the route's template, the
//! status), so no client can grow the series without bound.

use crate::auth::Telemetry;
use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

/// (method, route, status).
type RequestKey = (&'static str, String, u16);
/// (count, total microseconds, cumulative histogram counts per bucket).
type RequestStats = (u64, u64, [u64; LATENCY_BUCKETS_MS.len()]);

#[derive(Default)]
pub(crate) struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, RequestStats>>,
}

const LATENCY_BUCKETS_MS: [u64; 8] = [1, 5, 10, 25, 50, 100, 250, 1000];

/// A method as a label: the standard ones by name, any other as `other`.
pub(crate) fn method_label(m: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(k, _)| k == m).map_or("other", |(_, name)| name)
}

pub(crate) async fn record_metrics(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched".to_string(), |m| m.as_str().to_string());
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let micros = t0.elapsed().as_micros() as u64;
    let mut m = s.metrics.requests.lock().expect("metrics lock");
    let e = m.entry((method, route, resp.status().as_u16())).or_insert((0, 0, [0; LATENCY_BUCKETS_MS.len()]));
    e.0 += 1;
    e.1 += micros;
    for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
        if micros <= b * 1000 {
            e.2[i] += 1;
        }
    }
    resp
}

/// Prometheus text format: request counts and latencies; the ingester's counts per partition
/// (from the database, where every ingester reports).
pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    write_requests(&mut out, &s.metrics);
    write_cache(&mut out, &s);
    if let Ok(t) = Telemetry::get(&s).await {
        if let Ok(streams) = t.streams().await {
            write_streams(&mut out, &streams);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn write_requests(out: &mut String, metrics: &Metrics) {
    out.push_str("# HELP gpuledger_http_requests_total HTTP requests by method, route and status.\n# TYPE gpuledger_http_requests_total counter\n");
    let snapshot = metrics.requests.lock().expect("metrics lock").clone();
    for ((m, r, st), (n, _, _)) in &snapshot {
        let _ = writeln!(out, "gpuledger_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {n}");
    }
    out.push_str("# HELP gpuledger_http_request_duration_seconds Request latency.\n# TYPE gpuledger_http_request_duration_seconds histogram\n");
    for ((m, r, st), (n, micros, buckets)) in &snapshot {
        let labels = format!("method=\"{m}\",route=\"{r}\",status=\"{st}\"");
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "gpuledger_http_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {}",
                Decimal::new(*b as i64, 3),
                buckets[i]
            );
        }
        let _ = writeln!(out, "gpuledger_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "gpuledger_http_request_duration_seconds_sum{{{labels}}} {}",
            Decimal::new(*micros as i64, 6)
        );
        let _ = writeln!(out, "gpuledger_http_request_duration_seconds_count{{{labels}}} {n}");
    }
}

fn write_cache(out: &mut String, s: &AppState) {
    let (entries, bytes) = s.cache.size();
    let _ = write!(
        out,
        "# HELP gpuledger_usage_cache_live Whether the usage response cache is in use (its listener is connected).\n\
         # TYPE gpuledger_usage_cache_live gauge\ngpuledger_usage_cache_live {}\n\
         # HELP gpuledger_usage_cache_requests_total Usage answers looked up in the cache, by result.\n\
         # TYPE gpuledger_usage_cache_requests_total counter\n\
         gpuledger_usage_cache_requests_total{{result=\"hit\"}} {}\ngpuledger_usage_cache_requests_total{{result=\"miss\"}} {}\n\
         # HELP gpuledger_usage_cache_changes_total Usage changes notified by the database.\n\
         # TYPE gpuledger_usage_cache_changes_total counter\ngpuledger_usage_cache_changes_total {}\n\
         # HELP gpuledger_usage_cache_entries Usage answers held.\n# TYPE gpuledger_usage_cache_entries gauge\ngpuledger_usage_cache_entries {entries}\n\
         # HELP gpuledger_usage_cache_bytes Bytes of usage answers held.\n# TYPE gpuledger_usage_cache_bytes gauge\ngpuledger_usage_cache_bytes {bytes}\n",
        u8::from(s.cache.is_live()),
        s.cache.hits.load(std::sync::atomic::Ordering::Relaxed),
        s.cache.misses.load(std::sync::atomic::Ordering::Relaxed),
        s.cache.invalidations.load(std::sync::atomic::Ordering::Relaxed),
    );
}

fn write_streams(out: &mut String, streams: &[crate::auth::StreamCounts]) {
    out.push_str("# HELP gpuledger_ingest_events_total Offsets accounted for per stream, by outcome.\n# TYPE gpuledger_ingest_events_total counter\n");
    for c in streams {
        let (t, p) = (&c.topic, c.partition);
        for (n, outcome) in [(c.ledgered, "ledgered"), (c.duplicates, "duplicate"), (c.quarantined, "quarantined")] {
            let _ = writeln!(
                out,
                "gpuledger_ingest_events_total{{topic=\"{t}\",partition=\"{p}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }
    out.push_str("# HELP gpuledger_ingest_next_offset Next Kafka offset to consume per partition.\n# TYPE gpuledger_ingest_next_offset gauge\n");
    for c in streams {
        let (t, p) = (&c.topic, c.partition);
        let _ = writeln!(out, "gpuledger_ingest_next_offset{{topic=\"{t}\",partition=\"{p}\"}} {}", c.next_offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_labelled_from_a_fixed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for odd in ["FOO", "get", "X1234567890", "BREW"] {
            assert_eq!(method_label(&Method::from_bytes(odd.as_bytes()).unwrap()), "other", "{odd}");
        }
    }
}
