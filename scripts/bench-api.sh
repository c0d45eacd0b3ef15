#!/usr/bin/env bash
# The API latency benchmark of docs/benchmarks.md, in one run on this machine: a fresh database
# with the month-close benchmark's usage (50 tenants, 10,000 GPUs, September 2026, written as
# hourly aggregates), then `gpuledger-bench api`: 200 concurrent tenant clients asking
# GET /v1/usage for one tenant's month at hourly granularity, beside the same SQL run directly
# in PostgreSQL through a pool of the same size (the floor).
# Usage: bash scripts/bench-api.sh [extra `gpuledger-bench api` options, e.g. --clients 50 --seconds 30]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-common.sh
GPULEDGER_DATABASE_URL=$(fresh_db bench_api)
export GPULEDGER_DATABASE_URL
echo "== gpuledger API benchmark, $(nproc) cores, $(date -u +%FT%TZ)"
$BENCH close --tenants 50 --gpus 10000 2>/dev/null
$BENCH api "$@" 2>/dev/null
psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS bench_api" >/dev/null 2>&1
