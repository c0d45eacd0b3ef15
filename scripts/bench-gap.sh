#!/usr/bin/env bash
# Where the ingester's distance to two COPY sessions goes (docs/benchmarks.md, "The gap to two COPY
# sessions"). In one run, per round and fleet, side by side on the same 1,000,000-event topic:
#   - `gpuledger ingest` as built from this checkout;
#   - the same ingester with its GPU-time probe off, with its event-id key off, and with both off:
#     a measurement build (the store's feature `measure-without-guards`, built into
#     target/bench-gap; crates/store/src/append/measure.rs), never in a product build: without them
#     it would bill a GPU-second twice and could not tell a redelivered event from a new one;
#   - PostgreSQL's ceiling, `gpuledger-bench copy` with one session and with two.
# Each step gets a fresh database and a CHECKPOINT first, and reports events/s and the CPU time
# PostgreSQL's processes used for it (all backends and background processes, from /proc).
# Usage: bash scripts/bench-gap.sh [ROUNDS] [N]      (defaults 3 and 1000000)
# The first run builds the measurement binary from scratch (several minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
N=${2:-1000000}
source scripts/bench-common.sh

echo "building the measurement binary (target/bench-gap) ..."
seed_target target/bench-gap
BUILD_LOG=$(mktemp /tmp/gpuledger-gap-build.XXXXXX)
trap 'rm -f "$BUILD_LOG"' EXIT
if ! CARGO_TARGET_DIR=$PWD/target/bench-gap cargo build --release -p gpuledger \
    --features store/measure-without-guards >"$BUILD_LOG" 2>&1; then
    tail -30 "$BUILD_LOG" >&2
    exit 1
fi
X=$PWD/target/bench-gap/release/gpuledger

# step NAME COMMAND...: runs one timed step on a fresh database, prints its rate and PostgreSQL's CPU.
step() {
    local name=$1 a b rate
    shift
    DB=$(fresh_db bench_gap)
    settle
    a=$(pg_ticks)
    rate=$(GPULEDGER_DATABASE_URL=$DB "$@" 2>/dev/null | grep -oE '= [0-9]+ (messages|rows)/s' | grep -oE '[0-9]+')
    b=$(pg_ticks)
    printf '%-26s %9s /s   PostgreSQL CPU %s s\n' "$name" "$rate" \
        "$(pg_seconds "$a" "$b")"
}

RUN=$(date +%s)
echo "== where the gap to two COPY sessions goes, $(nproc) cores, $(date -u +%FT%TZ), N=$N, $ROUNDS rounds"
for f in "${FLEETS[@]}"; do
    read -r GPUS TENANTS <<<"$f"
    fleet "$GPUS" "$TENANTS"
    TOPIC=bench-gap.$RUN.$GPUS
    $B produce --topic "$TOPIC" "${FLEET[@]}" --limit "$N" >/dev/null
    for r in $(seq 1 "$ROUNDS"); do
        echo "---- fleet: $GPUS GPUs, $TENANTS tenants, round $r, $(date -u +%T)"
        ingest=(ingest --topic "$TOPIC" --idle-exit-secs 3)
        step "ingest (main)" $B "${ingest[@]}" --group "gap.$RUN.$GPUS.$r.main"
        step "ingest, no GPU-time probe" env GAP_NO_PROBE=1 $X "${ingest[@]}" --group "gap.$RUN.$GPUS.$r.p"
        step "ingest, no event-id key" env GAP_NO_IDS=1 $X "${ingest[@]}" --group "gap.$RUN.$GPUS.$r.i"
        step "ingest, neither" env GAP_NO_PROBE=1 GAP_NO_IDS=1 $X "${ingest[@]}" --group "gap.$RUN.$GPUS.$r.n"
        step "COPY, 1 session" $BENCH copy "${FLEET[@]}" --limit "$N" --sessions 1
        step "COPY, 2 sessions" $BENCH copy "${FLEET[@]}" --limit "$N" --sessions 2
    done
    drop_topic "$TOPIC"
done
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_gap" >/dev/null
