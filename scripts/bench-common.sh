# Sourced by the benchmark scripts (bench.sh, bench-gap.sh, bench-close.sh, bench-api.sh,
# bench-replay.sh, bench-ab.sh), from the repository root: the services, the release binaries (`gpuledger` as B,
# the harnesses of crates/bench as BENCH), the two fleets the ingest benchmarks measure, fresh
# databases.
bash scripts/services.sh up >/dev/null
eval "$(bash scripts/services.sh env)"
cargo build --release -p gpuledger -p bench 2>/dev/null
B=$PWD/target/release/gpuledger
BENCH=$PWD/target/release/gpuledger-bench
ADMIN=${GPULEDGER_DATABASE_URL%/*}/postgres

# The fleets, as "GPUS TENANTS": the 96 GPUs and 20 tenants every ingest benchmark has used, and
# the full fleet (a million events is 100 minutes of it, so every batch touches thousands of GPUs).
FLEETS=("96 20" "10000 50")

# fleet GPUS TENANTS: sets FLEET to the generator's arguments for it (a run stops at --limit;
# --minutes only bounds the period).
fleet() {
    FLEET=(--seed 1 --gpus "$1" --tenants "$2" --start 2026-06-01T00:00:00Z --minutes 40000)
}

# fresh_db NAME: a new, migrated database NAME; prints its URL.
fresh_db() {
    PGOPTIONS='-c client_min_messages=warning' psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    GPULEDGER_DATABASE_URL=${GPULEDGER_DATABASE_URL%/*}/$1 $B migrate >/dev/null
    echo "${GPULEDGER_DATABASE_URL%/*}/$1"
}

# Every timed run starts from a checkpoint, so that none of them pays for another's dirty pages.
settle() { psql -q "$ADMIN" -c CHECKPOINT >/dev/null; }

# drop_topic TOPIC: deletes a benchmark's topic (best effort).
drop_topic() {
    bash scripts/services.sh kafka-class org.apache.kafka.tools.TopicCommand --bootstrap-server "$GPULEDGER_KAFKA_BROKERS" \
        --delete --topic "$1" >/dev/null 2>&1 || true
}

# PostgreSQL's CPU: pg_ticks prints the clock ticks of the whole cluster (the postmaster with its
# reaped children, plus the live ones, from /proc); pg_seconds A B prints ticks B - A in seconds.
PM=$(head -1 .services/pg/postmaster.pid)
TICK=$(getconf CLK_TCK)
pg_ticks() {
    local t c
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$PM/stat")
    for c in $(cat "/proc/$PM/task/$PM/children"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
pg_seconds() { awk -v t=$(($2 - $1)) -v h="$TICK" 'BEGIN { printf "%.2f", t / h }'; }

# seed_target DIR: a target dir of its own for a second build (bench-gap's measurement build,
# bench-ab's earlier revision), seeded once from this checkout's release build: the dependencies
# compile the same, and the workspace's own crates are built anew (their fingerprints dropped).
seed_target() {
    if [ ! -d "$1/release" ] && [ -d target/release ]; then
        mkdir -p "$1" && cp -a target/release "$1/"
        rm -rf "$1"/release/.fingerprint/{domain,store,ingest,api,gpuledger,integration,bench}-*
    fi
}
