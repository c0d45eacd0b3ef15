#!/usr/bin/env bash
# Every test: brings up real PostgreSQL and Kafka (installing what is missing), lints, builds,
# and runs the unit, property and integration tests (the integration tests use the real services).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh up
bash scripts/python.sh >/dev/null
bash scripts/browser.sh
eval "$(bash scripts/services.sh env)"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo build --release --workspace --all-targets
mkdir -p target
# No doctests in this workspace: --lib --bins --tests runs every unit, property and integration test.
cargo test --release --workspace --no-fail-fast --lib --bins --tests 2>&1 | tee target/test-output.log
passed=$(grep -oE '^test result: ok\. [0-9]+ passed' target/test-output.log | awk '{s += $4} END {print s + 0}')
echo "${passed} passed, 0 failed"
