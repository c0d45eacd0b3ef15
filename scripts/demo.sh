#!/usr/bin/env bash
# The main job end to end: real PostgreSQL and Kafka up, migrations, a month (October 2026) of
# usage for a fleet of GPUs and 5 tenants produced to Kafka (with duplicates and poison messages
# mixed in), plus two hours of one H200 node metered by `gpuledger collect dcgm` from recorded
# dcgm-exporter scrapes served over HTTP (fixtures/dcgm/demo/, by dcgm-playback), ingested
# exactly once, then per-tenant GPU-hours by SKU, checked against the generator's and the
# recording's own exact totals; then finance's reference data, the close of October with an invoice
# per tenant, every export (CSV, JSON, XRechnung checked by the official rules, FOCUS) in
# out/invoices/; then the investment budget (fixtures/budget/) and its report, and the SAP journal
# of October in out/sap/. Safe to run again: the second run's messages are all duplicates, the close
# issues nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"
cargo build --release -p gpuledger -p playback
B=target/release/gpuledger
mkdir -p out
$B migrate
$B produce --seed 2026 --gpus "${DEMO_GPUS:-12}" --tenants 5 --start 2026-10-01T00:00:00Z --minutes 44640 \
    --duplicates-ppm 2000 --conflicts-ppm 200 --overlaps-ppm 200 --poison-ppm 500 --totals out/demo-totals.json
echo
echo "== metering 14 October 2026, 10:00-12:00 in Frankfurt, of node fra1-h200-07 (2 H200s, 1 H200 in 2 MIG"
echo "   instances) through gpuledger collect dcgm: recorded dcgm-exporter scrapes served over HTTP"
$B reference load fixtures/billing/namespaces.json | tail -n 1
REC=fixtures/dcgm/demo
rm -f out/playback.port
target/release/dcgm-playback serve --dir $REC/scrapes --port-file out/playback.port 2>/dev/null &
PLAYBACK=$!
trap 'kill $PLAYBACK 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s out/playback.port ] && break; sleep 0.1; done
# One round per recorded scrape; the scrapes carry their own timestamps, so rounds 20 ms apart
# meter two hours of October. Warnings (the unmapped namespace's minutes) go to the log.
$B collect dcgm --endpoint "http://127.0.0.1:$(cat out/playback.port)/metrics" --source //fra1/collect-dcgm \
    --cluster fra1 --interval-ms 20 --max-rounds "$(ls $REC/scrapes/*.prom | wc -l)" 2>out/collect-dcgm.log \
    | tee out/collect-dcgm.txt
kill $PLAYBACK 2>/dev/null || true
BILLED=$(sed -n 's/.*billed GPU-seconds: \([0-9.]*\).*/\1/p' out/collect-dcgm.txt)
EXPECTED=$(sed -n 's/.*"billed_gpu_seconds": "\([0-9.]*\)".*/\1/p' $REC/expected.json)
echo "from the collector: $BILLED GPU-seconds billed in this run (the recording holds $EXPECTED; 0 if an earlier run collected it)"
$B ingest --idle-exit-secs 5
echo
echo "== what happened to every Kafka offset, per partition"
$B status
echo
echo "== GPU-hours per tenant and SKU, October 2026"
$B report
echo
$B check --totals out/demo-totals.json --totals $REC/expected.json
$B verify | tail -n 2
echo
echo "== billing: the seller, the H200's MIG profiles, price lists (with a mid-October price change), profiles and contracts"
$B reference load fixtures/billing/seller.json fixtures/billing/catalogue.json fixtures/billing/prices.json \
    fixtures/billing/profiles.json fixtures/billing/contracts.json | tail -n 1
echo
echo "== closing October 2026 (Europe/Berlin): one invoice per tenant"
$B invoices close --period 2026-10
$B invoices export --period 2026-10 --out out/invoices
PY="$(bash scripts/python.sh)"
"$PY" ../shared/einvoice-rules/validate.py out/invoices/2026-10/xrechnung/*.xml | sed 's/^/  /'
$B invoices verify | tail -n 1
echo "exports (CSV, JSON, XRechnung, FOCUS) are in out/invoices/2026-10/"
echo
echo "== the investment budget: EUR 1 bn programme, Telekom and SAP cost centres, orders, invoices, GPUs in service"
$B budget load fixtures/budget/master.json fixtures/budget/allocations.json fixtures/budget/bookings.json fixtures/budget/sap.json
$B budget report --as-of "$(date -u +%F)"
mkdir -p out/sap
$B budget sap-export --period 2026-10 --out out/sap/journal-2026-10.csv
echo
echo "== the auditors' view: every hash chain checked, today's checkpoint sealed (keep the receipt elsewhere)"
$B audit verify | tail -n 2
$B audit checkpoint
echo
echo "== the web pages and the API: gpuledger serve, signed in with a tenant's and finance's token"
PORT=${DEMO_PORT:-18080}
$B serve --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true; kill $PLAYBACK 2>/dev/null || true' EXIT
TENANT_TOKEN=$($B tokens create --role tenant --tenant rheinbank --days 1 --label demo 2>/dev/null | sed -n 's/^token: *//p')
FINANCE_TOKEN=$($B tokens create --role finance --days 1 --label demo 2>/dev/null | sed -n 's/^token: *//p')
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p out/web
for page in "usage?month=2026-10" "invoices/$(curl -fsS -H "Authorization: Bearer $TENANT_TOKEN" "http://127.0.0.1:$PORT/v1/invoices?period=2026-10" | sed -n 's/.*"number":"\([^"]*\)".*/\1/p' | head -n 1)"; do
    name=$(echo "${page%%\?*}" | tr '/' '-')
    curl -fsS -b "gpuledger_token=$TENANT_TOKEN" "http://127.0.0.1:$PORT/ui/$page" -o "out/web/rheinbank-$name.html"
done
curl -fsS -b "gpuledger_token=$FINANCE_TOKEN" "http://127.0.0.1:$PORT/ui/finance?period=2026-10" -o out/web/finance-2026-10.html
echo "pages fetched through the walls: $(ls out/web | tr '\n' ' ')"
echo "GET /v1/usage for rheinbank, October by SKU:"
curl -fsS -H "Authorization: Bearer $TENANT_TOKEN" \
    "http://127.0.0.1:$PORT/v1/usage?from=2026-09-30T22:00:00Z&to=2026-10-31T23:00:00Z&granularity=month&group_by=sku" | head -c 600
echo
echo "To browse: $B serve --listen 127.0.0.1:8080, open http://127.0.0.1:8080/ui/login and paste a token"
echo "from: $B tokens create --role tenant --tenant rheinbank   (or --role finance)"
