#!/usr/bin/env bash
# Every test: brings up real PostgreSQL and Kafka (installing what is missing), lints, builds,
# and runs the unit, property and integration tests (the integration tests use the real services).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo build --release --workspace --all-targets
cargo test --release --workspace
