#!/usr/bin/env bash
# The HTTP ingest benchmark of docs/benchmarks.md, in one run on this machine: a fresh database
# (for the producer tokens only), then `gpuledger-bench http-ingest`: 200,000 usage events
# produced straight to a new Kafka topic by the idempotent producer (acks=all), then the same
# events posted in batches of 100 by 8 clients to `POST /v1/events` of a `gpuledger serve`
# started by the harness, which produces them to another new topic and answers 202 once Kafka
# acknowledged them. Events per second of each, side by side.
# Usage: bash scripts/bench-http-ingest.sh [extra `gpuledger-bench http-ingest` options, e.g. --clients 16]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
GPULEDGER_DATABASE_URL=$(fresh_db bench_http_ingest)
export GPULEDGER_DATABASE_URL
echo "== gpuledger HTTP ingest benchmark, $(nproc) cores, $(date -u +%FT%TZ)"
$BENCH http-ingest "$@" 2>/dev/null
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_http_ingest" >/dev/null 2>&1
