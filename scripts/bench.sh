#!/usr/bin/env bash
# The ingest benchmark of docs/benchmarks.md, in one run on this machine:
#   1. end to end: N usage events produced to a fresh topic (not timed), then `gpuledger ingest`
#      from Kafka to committed ledger rows (timed by the ingester: first message to last commit);
#   2. PostgreSQL's ceiling: a binary COPY of the same rows into the same table, per 10,000;
#   3. a naive baseline: one INSERT and one COMMIT per event (on the first NAIVE events);
#   4. the ingester's peak resident memory with a backlog of N and of N/10.
# Usage: bash scripts/bench.sh [N] [NAIVE]     (defaults 1000000 and 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NAIVE=${2:-20000}
bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"
cargo build --release -p gpuledger 2>/dev/null
B=target/release/gpuledger
ADMIN=${GPULEDGER_DATABASE_URL%/*}/postgres
RUN=$(date +%s)
fresh_db() {
    psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    GPULEDGER_DATABASE_URL=${GPULEDGER_DATABASE_URL%/*}/$1 $B migrate >/dev/null
    echo "${GPULEDGER_DATABASE_URL%/*}/$1"
}
# 96 GPUs for ~12,000 minutes is about a million events; the generator stops at N.
FLEET=(--seed 1 --gpus 96 --tenants 20 --start 2026-06-01T00:00:00Z --minutes 40000)

echo "== gpuledger ingest benchmark, $(nproc) cores, $(date -u +%FT%TZ), N=$N"
for n in "$N" "$((N / 10))"; do
    DB=$(fresh_db bench_e2e_$n)
    TOPIC=bench.$RUN.$n
    $B produce --topic "$TOPIC" "${FLEET[@]}" --limit "$n" >/dev/null
    echo "-- end to end, backlog of $n events in Kafka:"
    GPULEDGER_DATABASE_URL=$DB $B ingest --topic "$TOPIC" --group "bench.$RUN.$n" --idle-exit-secs 3 2>/dev/null
done
DB=$(fresh_db bench_copy)
echo "-- PostgreSQL ceiling, binary COPY of the same rows into the same table:"
GPULEDGER_DATABASE_URL=$DB $B bench copy "${FLEET[@]}" --limit "$N"
DB=$(fresh_db bench_naive)
echo "-- naive baseline, one INSERT and COMMIT per event:"
GPULEDGER_DATABASE_URL=$DB $B bench naive "${FLEET[@]}" --limit "$NAIVE"
