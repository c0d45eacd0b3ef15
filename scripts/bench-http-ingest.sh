#!/usr/bin/env bash
# The HTTP ingest benchmark of docs/benchmarks.md, in one run on this machine: a fresh database
# (for the producer tokens only), then `gpuledger-bench http-ingest`: 200,000 usage events,
# produced straight to a new Kafka topic by the idempotent producer (acks=all) and posted in
# batches of 100 by 8 clients to `POST /v1/events` of a `gpuledger serve` started by the harness
# (which produces them to another new topic and answers 202 once Kafka acknowledged them), the
# two taking turns for 3 rounds. Events per second of each round and their medians, with the CPU
# time of the harness, the server, the Kafka broker and PostgreSQL.
# Usage: bash scripts/bench-http-ingest.sh [extra `gpuledger-bench http-ingest` options, e.g.
#   --clients 16, --rounds 5, --gpuledger OTHER_BINARY (another revision's server)]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
GPULEDGER_DATABASE_URL=$(fresh_db bench_http_ingest)
export GPULEDGER_DATABASE_URL
echo "== gpuledger HTTP ingest benchmark, $(nproc) cores, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
$BENCH http-ingest --broker-pid "$(cat .services/kafka/broker.pid)" --postgres-pid "$PM" "$@" 2>/dev/null
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_http_ingest" >/dev/null 2>&1
