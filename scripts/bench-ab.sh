#!/usr/bin/env bash
# The ingester side by side with an earlier revision of itself: a refactoring (or any change) is
# shown to cost nothing by this, in one run, not by figures from different days. Per fleet, one
# topic of N events; per round, `gpuledger ingest` of this checkout and of revision BASE take
# turns (which goes first alternates), each on a fresh database after a CHECKPOINT, and each
# reports events/s and the CPU time PostgreSQL's processes used. Medians at the end.
# Usage: bash scripts/bench-ab.sh BASE [ROUNDS] [N]      (defaults: 3 rounds, 1000000 events)
# BASE is built in a temporary worktree into target/bench-ab (the first run takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?usage: bash scripts/bench-ab.sh BASE [ROUNDS] [N]}
ROUNDS=${2:-3}
N=${3:-1000000}
source scripts/bench-common.sh

BASE_REV=$(git rev-parse --short "$BASE^{commit}")
WT=$(mktemp -d /tmp/gpuledger-ab.XXXXXX)
cleanup() { git worktree remove --force "$WT" >/dev/null 2>&1 || true; rm -rf "$WT"; }
trap cleanup EXIT
git worktree add --detach --force "$WT" "$BASE_REV" >/dev/null 2>&1
echo "building $BASE_REV into target/bench-ab ..."
seed_target target/bench-ab
if ! CARGO_TARGET_DIR=$PWD/target/bench-ab cargo build --release -p gpuledger --manifest-path "$WT/Cargo.toml" \
    >"$WT/build.log" 2>&1; then
    tail -30 "$WT/build.log" >&2
    exit 1
fi
A=$PWD/target/bench-ab/release/gpuledger


# run LABEL BINARY GROUP: one ingest of the topic on a fresh database; prints and records its rate.
run() {
    local label=$1 bin=$2 group=$3 db a b rate cpu
    db=$(fresh_db bench_ab)
    settle
    a=$(pg_ticks)
    rate=$(GPULEDGER_DATABASE_URL=$db $bin ingest --topic "$TOPIC" --idle-exit-secs 3 --group "$group" 2>/dev/null |
        grep -oE '= [0-9]+ messages/s' | grep -oE '[0-9]+')
    b=$(pg_ticks)
    cpu=$(pg_seconds "$a" "$b")
    printf '%-22s %9s /s   PostgreSQL CPU %s s\n' "$label" "$rate" "$cpu"
    echo "$rate $cpu" >>"$WT/$label"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

RUN=$(date +%s)
HEAD_REV=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo "+changes")
echo "== ingest side by side: $HEAD_REV against $BASE_REV, $(nproc) cores, $(date -u +%FT%TZ), N=$N, $ROUNDS rounds"
for f in "${FLEETS[@]}"; do
    read -r GPUS TENANTS <<<"$f"
    fleet "$GPUS" "$TENANTS"
    TOPIC=bench-ab.$RUN.$GPUS
    $B produce --topic "$TOPIC" "${FLEET[@]}" --limit "$N" >/dev/null
    rm -f "$WT/head" "$WT/base"
    for r in $(seq 1 "$ROUNDS"); do
        echo "---- fleet: $GPUS GPUs, $TENANTS tenants, round $r, $(date -u +%T)"
        if ((r % 2)); then
            run head "$B" "ab.$RUN.$GPUS.$r.h"
            run base "$A" "ab.$RUN.$GPUS.$r.b"
        else
            run base "$A" "ab.$RUN.$GPUS.$r.b"
            run head "$B" "ab.$RUN.$GPUS.$r.h"
        fi
    done
    for side in head base; do
        printf '%s GPUs, %-4s (%s): median %s events/s, PostgreSQL CPU %s s\n' "$GPUS" "$side" \
            "$([ $side = head ] && echo "$HEAD_REV" || echo "$BASE_REV")" \
            "$(awk '{print $1}' "$WT/$side" | median)" "$(awk '{print $2}' "$WT/$side" | median)"
    done
    drop_topic "$TOPIC"
done
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_ab" >/dev/null
