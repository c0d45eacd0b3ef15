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
# Every timed run starts from a checkpoint, so that none of them pays for another's dirty pages.
settle() { psql -q "$ADMIN" -c CHECKPOINT >/dev/null; }
echo "== gpuledger ingest benchmark, $(nproc) cores, $(date -u +%FT%TZ), N=$N, event ids $IDS"
for fleet in "96 20" "10000 50"; do
    read -r GPUS TENANTS <<<"$fleet"
    # The generator stops at N; --minutes only bounds the period.
    FLEET=(--seed 1 --gpus "$GPUS" --tenants "$TENANTS" --start 2026-06-01T00:00:00Z --minutes 40000 --event-ids "$IDS")
    echo "---- fleet: $GPUS GPUs, $TENANTS tenants"
    for n in "$N" "$((N / 10))"; do
        DB=$(fresh_db bench_e2e)
        TOPIC=bench.$RUN.$GPUS.$n
        $B produce --topic "$TOPIC" "${FLEET[@]}" --limit "$n" >/dev/null
        echo "-- end to end, backlog of $n events in Kafka:"
        settle
        GPULEDGER_DATABASE_URL=$DB $B ingest --topic "$TOPIC" --group "bench.$RUN.$GPUS.$n" --idle-exit-secs 3 2>/dev/null
        bash scripts/services.sh kafka-class org.apache.kafka.tools.TopicCommand --bootstrap-server "$GPULEDGER_KAFKA_BROKERS" \
            --delete --topic "$TOPIC" >/dev/null 2>&1 || true
    done
    for sessions in 1 2; do
        DB=$(fresh_db bench_copy)
        echo "-- PostgreSQL ceiling, binary COPY of the same rows into the same table, $sessions session(s):"
        settle
        GPULEDGER_DATABASE_URL=$DB $B bench copy "${FLEET[@]}" --limit "$N" --sessions "$sessions"
    done
    if [[ $GPUS == 96 ]]; then
        DB=$(fresh_db bench_naive)
        echo "-- naive baseline, one INSERT and COMMIT per event:"
        GPULEDGER_DATABASE_URL=$DB $B bench naive "${FLEET[@]}" --limit "$NAIVE"
    fi
done
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_e2e" -c "DROP DATABASE IF EXISTS bench_copy" \
    -c "DROP DATABASE IF EXISTS bench_naive" >/dev/null
