#!/usr/bin/env bash
# The main job end to end: real PostgreSQL and Kafka up, migrations, a month (October 2026) of
# usage for a fleet of GPUs and 5 tenants produced to Kafka (with duplicates and poison messages
# mixed in), ingested exactly once, then per-tenant GPU-hours by SKU, checked against the
# generator's own exact totals. Safe to run again: the second run's messages are all duplicates.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"
cargo build --release -p gpuledger
B=target/release/gpuledger
mkdir -p out
$B migrate
$B produce --seed 2026 --gpus "${DEMO_GPUS:-12}" --tenants 5 --start 2026-10-01T00:00:00Z --minutes 44640 \
    --duplicates-ppm 2000 --conflicts-ppm 200 --overlaps-ppm 200 --poison-ppm 500 --totals out/demo-totals.json
$B ingest --idle-exit-secs 5
echo
echo "== what happened to every Kafka offset, per partition"
$B status
echo
echo "== GPU-hours per tenant and SKU, October 2026"
$B report
echo
$B check --totals out/demo-totals.json
$B verify | tail -n 2
