#!/bin/sh
# gpuledger's database set-up for the postgres image (docker-compose.yml mounts this file into
# /docker-entrypoint-initdb.d/, where the image runs it once, on an empty data directory, as the
# bootstrap superuser "postgres"). The same steps as scripts/services.sh's pg_bootstrap_db:
# scripts/pg-bootstrap.sql in template1 (new databases, the tests' too, copy it), the database
# gpuledger owned by the login gpuledger (no superuser, no CREATEROLE), then the bootstrap in it.
set -eu
BOOTSTRAP=${GPULEDGER_BOOTSTRAP_SQL:-/gpuledger/pg-bootstrap.sql}
OWNER=${GPULEDGER_OWNER:-gpuledger}
DB=${GPULEDGER_DB:-gpuledger}
run_psql() {
    psql -X -q -v ON_ERROR_STOP=1 --no-password --username "${POSTGRES_USER:-postgres}" "$@"
}
run_psql -d template1 -v owner="$OWNER" -f "$BOOTSTRAP"
run_psql -d postgres -c "CREATE DATABASE \"$DB\" OWNER \"$OWNER\""
run_psql -d "$DB" -v owner="$OWNER" -f "$BOOTSTRAP"
