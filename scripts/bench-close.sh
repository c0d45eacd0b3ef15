#!/usr/bin/env bash
# The month-close benchmark of docs/benchmarks.md, in one run on this machine. Each line is a fresh
# database with one month (September 2026, 720 hours) of hourly usage aggregates written directly
# (not produced as raw events: 432 million events would take hours to produce and ingest here),
# reference data for every tenant, then `invoices close` timed beside the bare read of the same
# hourly rows (its floor). Configurations:
#   1. 50 tenants, 10,000 GPUs, 1 event per GPU-minute (the target: ~430 million events' worth)
#   2. the same aggregates standing for 10 events per GPU-minute (4.3 billion events' worth)
#   3. 25 tenants, 5,000 GPUs (half the rows)       4. 100 tenants, 20,000 GPUs (twice the rows)
# Usage: bash scripts/bench-close.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
echo "== gpuledger month-close benchmark, $(nproc) cores, $(date -u +%FT%TZ)"
run() {
    local db
    db=$(fresh_db bench_close)
    GPULEDGER_DATABASE_URL=$db $BENCH close "$@" 2>/dev/null
}
run --tenants 50 --gpus 10000 --events-per-gpu-minute 1
run --tenants 50 --gpus 10000 --events-per-gpu-minute 10
run --tenants 25 --gpus 5000
run --tenants 100 --gpus 20000
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_close" >/dev/null 2>&1
