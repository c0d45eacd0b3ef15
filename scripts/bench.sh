#!/usr/bin/env bash
# The ingest benchmark of docs/benchmarks.md, in one run on this machine, for two fleets: the
# benchmark's long-standing one (96 GPUs, 20 tenants) and a full one (10,000 GPUs, 50 tenants:
# a million events is 100 minutes of it). For each:
#   1. end to end: N usage events produced to a fresh 6-partition topic (not timed), then
#      `gpuledger ingest` from Kafka to committed ledger rows (timed by the ingester: first message
#      to last commit), with a backlog of N and of N/10 (memory);
#   2. PostgreSQL's ceiling: a binary COPY of the same rows into the same table, 10,000 per commit,
#      by one session, and by two at once (the ingester writes through two);
#   3. a naive baseline: one INSERT and one COMMIT per event (on the first NAIVE events, first
#      fleet only).
# Usage: bash scripts/bench.sh [N] [NAIVE]     (defaults 1000000 and 20000)
# Environment: EVENT_IDS=v4 makes the producers use random UUIDv4 event ids instead of UUIDv7.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
NAIVE=${2:-20000}
IDS=${EVENT_IDS:-v7}
source scripts/bench-common.sh
RUN=$(date +%s)
echo "== gpuledger ingest benchmark, $(nproc) cores, $(date -u +%FT%TZ), N=$N, event ids $IDS"
for f in "${FLEETS[@]}"; do
    read -r GPUS TENANTS <<<"$f"
    fleet "$GPUS" "$TENANTS"
    FLEET+=(--event-ids "$IDS")
    echo "---- fleet: $GPUS GPUs, $TENANTS tenants"
    for n in "$N" "$((N / 10))"; do
        DB=$(fresh_db bench_e2e)
        TOPIC=bench.$RUN.$GPUS.$n
        $B produce --topic "$TOPIC" "${FLEET[@]}" --limit "$n" >/dev/null
        echo "-- end to end, backlog of $n events in Kafka:"
        settle
        GPULEDGER_DATABASE_URL=$DB $B ingest --topic "$TOPIC" --group "bench.$RUN.$GPUS.$n" --idle-exit-secs 3 2>/dev/null
        drop_topic "$TOPIC"
    done
    for sessions in 1 2; do
        DB=$(fresh_db bench_copy)
        echo "-- PostgreSQL ceiling, binary COPY of the same rows into the same table, $sessions session(s):"
        settle
        GPULEDGER_DATABASE_URL=$DB $BENCH copy "${FLEET[@]}" --limit "$N" --sessions "$sessions"
    done
    if [[ $GPUS == 96 ]]; then
        DB=$(fresh_db bench_naive)
        echo "-- naive baseline, one INSERT and COMMIT per event:"
        GPULEDGER_DATABASE_URL=$DB $BENCH naive "${FLEET[@]}" --limit "$NAIVE"
    fi
done
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_e2e" -c "DROP DATABASE IF EXISTS bench_copy" \
    -c "DROP DATABASE IF EXISTS bench_naive" >/dev/null
