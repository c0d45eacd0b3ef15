#!/usr/bin/env bash
# The audit-replay benchmark of docs/benchmarks.md, in one run on this machine:
#   1. a fresh database with N usage events written straight into ledger_events (generated,
#      hash-chained, binary COPY; one Kafka-like stream whose head and counters agree, so
#      `audit verify` passes) and the live hourly projection folded in Rust beside them
#      (`gpuledger-bench replay`; not through Kafka: 10 million events would take hours here);
#   2. the floors on the same rows: a bare count(*) and a bare read of every payload as text;
#   3. `gpuledger audit replay` three times (timed by the command: usage events folded per
#      second; the three output hashes must be equal), then the floors again.
# Usage: bash scripts/bench-replay.sh [N]     (default 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000000}
source scripts/bench-common.sh
DB=$(fresh_db bench_replay)
echo "== gpuledger audit-replay benchmark, $(nproc) cores, $(date -u +%FT%TZ), N=$N"
GPULEDGER_DATABASE_URL=$DB $BENCH replay --events "$N" 2>/dev/null
hashes=()
for i in 1 2 3; do
    out=$(GPULEDGER_DATABASE_URL=$DB $B audit replay --json 2>/dev/null)
    field() { echo "$out" | grep -o "\"$1\": [^,]*" | head -1 | sed 's/.*: //; s/"//g'; }
    hash=$(field output_sha256)
    hashes+=("$hash")
    echo "replay $i: $(field usage_events) usage events in $(field millis) ms = $(field usage_events_per_second) events/s," \
         "$(field differences_total) differences, output sha256 $hash"
done
if [ "${hashes[0]}" != "${hashes[1]}" ] || [ "${hashes[0]}" != "${hashes[2]}" ]; then
    echo "the three replays hashed differently" >&2
    exit 1
fi
GPULEDGER_DATABASE_URL=$DB $BENCH replay --events "$N" --floors-only 2>/dev/null
