#!/usr/bin/env bash
# Local PostgreSQL 15 + Apache Kafka 4.x (KRaft, single node) for gpuledger, without Docker.
#
#   scripts/services.sh [up]            install what is missing, start both, wait until both answer
#   scripts/services.sh down            stop both
#   scripts/services.sh status          is each one up? (exit 0 only if both are)
#   scripts/services.sh env             export lines for eval: eval "$(scripts/services.sh env)"
#   scripts/services.sh start-pg|stop-pg|restart-pg [fast|immediate]
#   scripts/services.sh start-kafka|stop-kafka|restart-kafka [term|kill]
#   scripts/services.sh topic NAME PARTITIONS [extra TopicCommand args...]
#   scripts/services.sh psql [psql args...]                 psql on the gpuledger database
#   scripts/services.sh kafka-class CLASS [args...]         run a Kafka tool class with the broker's classpath
#
# `stop-pg immediate` / `restart-pg immediate` simulate a PostgreSQL crash (recovery on start);
# `stop-kafka kill` / `restart-kafka kill` SIGKILL the broker. The defaults are clean shutdowns.
#
# Everything lives in $ROOT/.services (git-ignored):
#   pg/           private PostgreSQL cluster (owned by an unprivileged user when run as root)
#   pg.log        PostgreSQL server log
#   run/          PostgreSQL unix socket directory
#   kafka/lib     Kafka jars resolved from Maven Central via scripts/kafka/pom.xml
#   kafka/data    KRaft log dir; kafka/broker.log broker log; kafka/broker.pid
#
# Environment overrides: PGPORT_GPULEDGER (55432), KAFKA_PORT_GPULEDGER (9092),
# KAFKA_CONTROLLER_PORT_GPULEDGER (9093), SERVICES_WAIT_SECS (180).
# docker-compose.yml at the repository root describes the same two services for Docker users.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SVC="$ROOT/.services"

PG_PORT="${PGPORT_GPULEDGER:-55432}"
PG_DATA="$SVC/pg"
PG_LOG="$SVC/pg.log"
PG_SOCK="$SVC/run"
# When run as root from a directory the cluster's OS user cannot reach (e.g. a checkout under
# /root, mode 700), the cluster lives in /var/lib/gpuledger-pg/<name>-<hash> instead and
# .services/pg and .services/pg.log are symlinks to it.
if [[ -L "$PG_DATA" ]]; then
    PG_DATA="$(readlink -f "$PG_DATA")"
    PG_LOG="$(dirname "$PG_DATA")/pg.log"
    PG_SOCK="$(dirname "$PG_DATA")/run"
fi
PG_DB=gpuledger
PG_ROLE=gpuledger
PG_SUPER=postgres            # bootstrap superuser of the private cluster (initdb -U)
DATABASE_URL="postgres://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_DB"

KAFKA_PORT="${KAFKA_PORT_GPULEDGER:-9092}"
KAFKA_CTRL_PORT="${KAFKA_CONTROLLER_PORT_GPULEDGER:-9093}"
KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
KDIR="$SVC/kafka"
KLIB="$KDIR/lib"
KDATA="$KDIR/data"
KCONF="$KDIR/server.properties"
KPID="$KDIR/broker.pid"
KPOM="$ROOT/scripts/kafka/pom.xml"
# Kafka 4.1.1 resolves from Maven Central (verified); 4.0.0 is the automatic fallback.
KAFKA_VERSION_PRIMARY=4.1.1
KAFKA_VERSION_FALLBACK=4.0.0

WAIT_SECS="${SERVICES_WAIT_SECS:-180}"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# ---------------------------------------------------------------------------------------------
# generic helpers

# Something accepts TCP connections on 127.0.0.1:PORT?
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Something LISTENs on PORT (any address)?
port_listening() {
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
    else
        tcp_open "$1"
    fi
}

port_owner() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :$1" 2>/dev/null | sed 's/^/    /' || true
    fi
}

fail_port_taken() {
    local port="$1" what="$2"
    die "port $port is already in use by a process that is not our $what:
$(port_owner "$port")
Stop it, or choose another port (see the environment overrides at the top of $0)."
}

as_root() {
    if is_root; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $*"
    fi
}

apt_install() {
    mkdir -p "$SVC"
    log "installing with apt-get: $* (output: $SVC/apt.log)"
    if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
           as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; } >"$SVC/apt.log" 2>&1; then
        tail -n 20 "$SVC/apt.log" >&2
        die "apt-get install $* failed (full output: $SVC/apt.log)"
    fi
}

lock() {
    mkdir -p "$SVC"
    exec 9>"$SVC/.lock"
    flock -w 600 9 || die "could not get the lock $SVC/.lock (another services.sh still running?)"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

PG_BIN=""
find_pg_bin() {
    # Prefer PostgreSQL 15 (Debian 12's version), else the newest installed.
    local d best=""
    if [[ -x /usr/lib/postgresql/15/bin/initdb && -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
        best=/usr/lib/postgresql/15/bin
    else
        for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V); do
            [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && best="$d"
        done
    fi
    PG_BIN="$best"
    [[ -n "$PG_BIN" ]]
}

pg_has_btree_gist() {
    local share
    share="$("$PG_BIN/pg_config" --sharedir 2>/dev/null || true)"
    [[ -n "$share" && -f "$share/extension/btree_gist.control" ]] && return 0
    # pg_config may be absent; fall back on Debian's layout
    local ver; ver="$(basename "$(dirname "$PG_BIN")")"
    [[ -f "/usr/share/postgresql/$ver/extension/btree_gist.control" ]]
}

ensure_pg_installed() {
    if ! find_pg_bin; then
        apt_install postgresql postgresql-contrib
        find_pg_bin || die "PostgreSQL installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
    fi
    if ! pg_has_btree_gist; then
        apt_install postgresql-contrib
        pg_has_btree_gist || die "btree_gist extension not found for $PG_BIN (postgresql-contrib)"
    fi
}

# OS user that owns and runs the private cluster. PostgreSQL refuses to run as root.
PG_USER=""
pick_pg_user() {
    if ! is_root; then PG_USER="$(id -un)"; return; fi
    if [[ -d "$PG_DATA" ]]; then
        PG_USER="$(stat -c %U "$PG_DATA")"
        [[ "$PG_USER" != root && "$PG_USER" != UNKNOWN ]] && return
    fi
    if id -u postgres >/dev/null 2>&1; then
        PG_USER=postgres
    else
        if ! id -u gpuledger-pg >/dev/null 2>&1; then
            log "creating system user gpuledger-pg to run PostgreSQL"
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin gpuledger-pg
        fi
        PG_USER=gpuledger-pg
    fi
}

# Run a command as the cluster's OS user (cwd / so that it never lacks access to the cwd).
as_pg() {
    if is_root; then (cd / && runuser -u "$PG_USER" -- "$@")
    else "$@"
    fi
}

pg_owned_by_user() {  # create-or-fix a path so that PG_USER may write it
    if is_root; then chown "$PG_USER": "$@"; fi
}

# pid of OUR postmaster (data dir = $PG_DATA), or nothing
pg_pid() {
    local pid
    [[ -f "$PG_DATA/postmaster.pid" ]] || return 1
    pid="$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -d "/proc/$pid" ]] || return 1
    # the postmaster chdirs into its data directory: this excludes a recycled pid
    [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null || true)" == "$PG_DATA" ]] || return 1
    echo "$pid"
}

pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" -d postgres -t 3 >/dev/null 2>&1; }

pg_psql_admin() {  # psql as the bootstrap superuser on the postgres database
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" -d postgres "$@"
}

pg_write_config() {
    # Rewritten on every start: the script is the single source of truth for these settings.
    local sockdirs="$PG_SOCK"
    if (( ${#PG_SOCK} + 20 > 107 )); then
        log "warning: $PG_SOCK is too long for a unix socket path; PostgreSQL listens on TCP only"
        sockdirs=""
    fi
    local tmp; tmp="$(mktemp)"
    cat >"$tmp" <<EOF
# Written by scripts/services.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sockdirs'
max_connections = 200

# Durability: the ledger relies on these (and may refuse to run otherwise).
fsync = on
synchronous_commit = on
full_page_writes = on

# Memory
shared_buffers = 512MB
effective_cache_size = 4GB
work_mem = 16MB
maintenance_work_mem = 256MB
max_locks_per_transaction = 256

# WAL / checkpoints, sized for bulk ingest
wal_level = replica
wal_buffers = 16MB
max_wal_size = 4GB
min_wal_size = 1GB
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9

random_page_cost = 1.1
timezone = 'UTC'
log_timezone = 'UTC'
lc_messages = 'C'

# Logging (stderr goes to $PG_LOG via pg_ctl -l)
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_checkpoints = on
log_lock_waits = on
EOF
    install -m 600 "$tmp" "$PG_DATA/gpuledger.conf"
    cat >"$tmp" <<'EOF'
# Written by scripts/services.sh: trust, local socket and 127.0.0.1 only (development cluster).
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
EOF
    install -m 600 "$tmp" "$PG_DATA/pg_hba.conf"
    rm -f "$tmp"
    if ! grep -q "^include_if_exists = 'gpuledger.conf'" "$PG_DATA/postgresql.conf"; then
        printf "\n# gpuledger settings (scripts/services.sh)\ninclude_if_exists = 'gpuledger.conf'\n" \
            >>"$PG_DATA/postgresql.conf"
    fi
    pg_owned_by_user "$PG_DATA/gpuledger.conf" "$PG_DATA/pg_hba.conf" "$PG_DATA/postgresql.conf"
}

pg_init_if_needed() {
    mkdir -p "$SVC"
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then return; fi
    [[ -d "$PG_DATA" && -n "$(ls -A "$PG_DATA" 2>/dev/null)" ]] &&
        die "$PG_DATA exists, is not empty and is not a PostgreSQL cluster; remove it"
    if is_root && [[ ! -e "$PG_DATA" ]] && ! as_pg test -x "$SVC"; then
        # The cluster's OS user cannot traverse the path to $SVC: keep the cluster outside it.
        local base
        base="/var/lib/gpuledger-pg/$(basename "$ROOT")-$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
        log "OS user $PG_USER cannot reach $SVC (a parent directory is not o+x):" \
            "the cluster goes to $base, linked from $SVC/pg"
        mkdir -p "$base"
        pg_owned_by_user "$base"
        chmod 700 "$base"
        ln -sfn "$base/data" "$SVC/pg"
        ln -sfn "$base/pg.log" "$SVC/pg.log"
        PG_DATA="$base/data"; PG_LOG="$base/pg.log"; PG_SOCK="$base/run"
    fi
    log "initdb $PG_DATA (as OS user $PG_USER)"
    mkdir -p "$PG_DATA"
    chmod 700 "$PG_DATA"
    pg_owned_by_user "$PG_DATA"
    as_pg test -w "$PG_DATA" ||
        die "OS user $PG_USER cannot write $PG_DATA: every parent directory must be searchable (o+x)"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPER" --auth=trust --encoding=UTF8 --locale=C \
        --data-checksums >"$SVC/initdb.log" 2>&1 ||
        { tail -n 30 "$SVC/initdb.log" >&2; die "initdb failed (full output: $SVC/initdb.log)"; }
}

pg_start() {
    local pid port
    if pid="$(pg_pid)"; then
        port="$(pg_running_port)"
        if [[ "$port" == "$PG_PORT" ]]; then
            return 0
        fi
        log "our PostgreSQL runs on port $port but $PG_PORT is wanted: restarting it"
        pg_stop fast
    fi
    port_listening "$PG_PORT" && fail_port_taken "$PG_PORT" "PostgreSQL ($PG_DATA)"
    pg_init_if_needed
    pg_write_config
    mkdir -p "$PG_SOCK"; pg_owned_by_user "$PG_SOCK"
    touch "$PG_LOG"; pg_owned_by_user "$PG_LOG"
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    # 9>&-: the server must not inherit the lock fd, or it holds our lock forever
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECS" start >/dev/null 9>&-; then
        tail -n 30 "$PG_LOG" >&2 || true
        die "PostgreSQL did not start (log: $PG_LOG)"
    fi
}

pg_wait_ready() {
    local deadline=$((SECONDS + WAIT_SECS))
    until pg_ready; do
        pg_pid >/dev/null || { tail -n 30 "$PG_LOG" >&2 || true; die "PostgreSQL is not running (log: $PG_LOG)"; }
        (( SECONDS < deadline )) || die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT within ${WAIT_SECS}s (log: $PG_LOG)"
        sleep 0.2
    done
}

pg_bootstrap_db() {
    # The owner of the tables ($PG_ROLE, the login `gpuledger migrate` uses) is no superuser and
    # may not create roles; the login roles and the append-only guard (an event trigger) are set
    # up by the cluster's superuser from scripts/pg-bootstrap.sql, in template1 (new databases,
    # the tests' too, copy it) and in $PG_DB. A cluster made by an earlier services.sh, whose
    # owner was a superuser, is narrowed the same way. One round trip when everything is done.
    local state has_db has_gist marked want_sum
    want_sum="$(sha256sum "$ROOT/scripts/pg-bootstrap.sql" | cut -c1-16)"
    state="$(pg_psql_admin -At -c "select
        (select count(*) from pg_database where datname = '$PG_DB')
        || ',' || (select count(*) from pg_available_extensions where name = 'btree_gist')
        || ',' || (select count(*) from pg_database where datname in ('template1', '$PG_DB')
                    and shobj_description(oid, 'pg_database') = 'gpuledger bootstrap $want_sum')")" ||
        die "cannot query PostgreSQL as $PG_SUPER"
    IFS=, read -r has_db has_gist marked <<<"$state"
    [[ "$has_gist" == 1 ]] || die "btree_gist is not available in this PostgreSQL (install postgresql-contrib)"
    [[ "$has_db" == 1 && "$marked" == 2 ]] && return 0
    log "setting up roles (owner $PG_ROLE: no superuser, no CREATEROLE) and the append-only guard"
    pg_run_bootstrap template1 "$want_sum"
    if [[ "$has_db" != 1 ]]; then
        log "creating database $PG_DB"
        pg_psql_admin -c "create database $PG_DB owner $PG_ROLE"
    fi
    pg_run_bootstrap "$PG_DB" "$want_sum"
}

pg_run_bootstrap() {  # DATABASE SUM: scripts/pg-bootstrap.sql in it, then mark it done
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -v owner="$PG_ROLE" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_SUPER" \
        -d "$1" -f "$ROOT/scripts/pg-bootstrap.sql" >/dev/null ||
        die "scripts/pg-bootstrap.sql failed in database $1"
    pg_psql_admin -c "comment on database $1 is 'gpuledger bootstrap $2'"
}

pg_up() {
    ensure_pg_installed
    pick_pg_user
    pg_start
    pg_wait_ready
    pg_bootstrap_db
}

pg_stop() {
    local mode="${1:-fast}" pid
    case "$mode" in fast|immediate|smart) ;; *) die "stop mode must be fast or immediate, not '$mode'";; esac
    if ! pid="$(pg_pid)"; then
        log "PostgreSQL is not running"
        return 0
    fi
    find_pg_bin || die "no pg_ctl under /usr/lib/postgresql/*/bin"
    pick_pg_user
    log "stopping PostgreSQL (pid $pid, -m $mode)"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w -t "$WAIT_SECS" stop >/dev/null ||
        die "pg_ctl stop failed (log: $PG_LOG)"
}

pg_status() {
    local pid
    if pid="$(pg_pid)"; then
        find_pg_bin || true
        if [[ -n "$PG_BIN" ]] && pg_ready; then
            echo "postgres: up    (pid $pid, $DATABASE_URL, data $PG_DATA)"
            return 0
        fi
        echo "postgres: starting/not answering (pid $pid, port $(pg_running_port))"
        return 1
    fi
    echo "postgres: down"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Kafka

JAVA=""
find_java() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"
    else JAVA="$(command -v java || true)"
    fi
    [[ -n "$JAVA" ]]
}

ensure_java_maven() {
    local pkgs=()
    find_java || pkgs+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
    if (( ${#pkgs[@]} )); then
        apt_install "${pkgs[@]}"
        find_java || die "java not found after installing ${pkgs[*]}"
    fi
}

kafka_lib_stamp() { sha256sum "$KPOM" | cut -d' ' -f1; }

kafka_lib_ok() {
    [[ -f "$KLIB/.complete" ]] && [[ "$(head -n1 "$KLIB/.complete")" == "$(kafka_lib_stamp)" ]]
}

ensure_kafka_lib() {
    kafka_lib_ok && return 0
    command -v mvn >/dev/null 2>&1 || ensure_java_maven
    mkdir -p "$KDIR"
    local tmp="$KDIR/lib.tmp" v
    for v in "$KAFKA_VERSION_PRIMARY" "$KAFKA_VERSION_FALLBACK"; do
        log "resolving Kafka $v jars from Maven Central into $KLIB (one-off, ~30 s)"
        rm -rf "$tmp"
        if mvn -B -q -f "$KPOM" -Dkafka.version="$v" \
                dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
                >"$KDIR/mvn.log" 2>&1 &&
           compgen -G "$tmp/kafka_2.13-$v.jar" >/dev/null &&
           compgen -G "$tmp/kafka-tools-$v.jar" >/dev/null; then
            rm -rf "$KLIB"
            mv "$tmp" "$KLIB"
            printf '%s\nkafka %s\n' "$(kafka_lib_stamp)" "$v" >"$KLIB/.complete"
            return 0
        fi
        tail -n 20 "$KDIR/mvn.log" >&2 || true
        log "resolving Kafka $v failed (full output: $KDIR/mvn.log)"
    done
    rm -rf "$tmp"
    die "could not resolve the Kafka jars with Maven (see $KDIR/mvn.log)"
}

kafka_write_config() {
    mkdir -p "$KDIR" "$KDATA"
    local tmp; tmp="$(mktemp)"
    cat >"$tmp" <<EOF
# Written by scripts/services.sh on every start; edit the script, not this file.
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CTRL_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER

log.dirs=$KDATA
num.partitions=6
auto.create.topics.enable=false
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Up to 4 MiB per record batch (clients default to 1 MiB).
message.max.bytes=4194304
replica.fetch.max.bytes=4194304
EOF
    if ! cmp -s "$tmp" "$KCONF"; then
        if kafka_pid >/dev/null; then
            log "note: $KCONF changed while the broker runs; 'restart-kafka' applies it"
        fi
        chmod 644 "$tmp"
        mv "$tmp" "$KCONF"
    else
        rm -f "$tmp"
    fi

    cat >"$KDIR/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/services.sh: broker logs go to broker.log, not stdout. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="file" fileName="$KDIR/broker.log" filePattern="$KDIR/broker.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="100 MB"/></Policies>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="org.apache.kafka.clients" level="warn"/>
    <Root level="info"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
EOF
    kafka_write_tools_config force
}

kafka_write_tools_config() {
    mkdir -p "$KDIR"
    if [[ "${1:-}" != force && -f "$KDIR/tools-log4j2.xml" && -f "$KDIR/admin.properties" ]]; then
        return 0
    fi
    cat >"$KDIR/tools-log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/services.sh: command-line tools only log warnings, to stderr. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers><Root level="warn"><AppenderRef ref="stderr"/></Root></Loggers>
</Configuration>
EOF
    cat >"$KDIR/admin.properties" <<'EOF'
# Written by scripts/services.sh: admin client settings for the readiness probe.
request.timeout.ms=5000
default.api.timeout.ms=15000
EOF
}

# A JVM for quick admin commands (fast startup, small heap).
kafka_admin() {
    "$JAVA" -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
        -Dlog4j2.configurationFile="$KDIR/tools-log4j2.xml" -cp "$KLIB/*" "$@"
}

# A normal JVM for tools whose speed matters (perf tests, console producer/consumer).
kafka_class() {
    "$JAVA" -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KDIR/tools-log4j2.xml" -cp "$KLIB/*" "$@"
}

# Is PID our broker (java ... kafka.Kafka $KCONF)?
is_our_broker() {
    local pid="$1" i
    local -a args=()
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    { mapfile -d '' -t args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    for ((i = 0; i + 1 < ${#args[@]}; i++)); do
        [[ "${args[i]}" == kafka.Kafka && "${args[i+1]}" == "$KCONF" ]] && return 0
    done
    return 1
}

# Is PID a live process (and, given START, still the one that started then)? Unlike
# is_our_broker this does not read the command line, which reads empty while a process execs
# (bash -> nohup -> java) and while it exits. A zombie main thread counts as alive while other
# threads of the process still run (they hold its files and ports).
pid_alive() {
    local pid="$1" start="${2:-}" stat
    local -a fields=() tasks=()
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    read -r -a fields <<<"${stat##*) }" # fields[0] is the state (field 3), fields[19] the start time (22)
    [[ -z "$start" || "${fields[19]:-}" == "$start" ]] || return 1
    case "${fields[0]:-}" in
        "") return 1 ;;
        Z|X) tasks=("/proc/$pid/task"/*); (( ${#tasks[@]} > 1 )) ;;
        *) return 0 ;;
    esac
}

# When PID started (clock ticks after boot): with its pid, it names one process, never a later one.
pid_start() {
    local stat
    local -a fields=()
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    read -r -a fields <<<"${stat##*) }"
    echo "${fields[19]}"
}

# The broker we started (or adopted) is still starting or running: the pid in $KPID is alive.
kafka_starting() {
    local pid
    pid="$(cat "$KPID" 2>/dev/null || true)"
    pid_alive "$pid" || kafka_pid >/dev/null
}

kafka_pid() {
    local pid p
    if [[ -f "$KPID" ]]; then
        pid="$(cat "$KPID" 2>/dev/null || true)"
        if is_our_broker "$pid"; then echo "$pid"; return 0; fi
    fi
    # Adopt a broker of ours whose pid file was lost.
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        if is_our_broker "$p"; then echo "$p" >"$KPID"; echo "$p"; return 0; fi
    done
    return 1
}

kafka_format_if_needed() {
    [[ -f "$KDATA/meta.properties" ]] && return 0
    local id
    if [[ -s "$KDIR/cluster.id" ]]; then
        id="$(cat "$KDIR/cluster.id")"
    else
        # Same shape as StorageTool random-uuid (base64url of 16 random bytes), without a JVM start.
        id="-"
        while [[ "$id" == -* ]]; do
            id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        done
        echo "$id" >"$KDIR/cluster.id"
    fi
    log "formatting KRaft storage $KDATA (cluster id $id)"
    kafka_admin kafka.tools.StorageTool format -t "$id" -c "$KCONF" --ignore-formatted >"$KDIR/format.log" 2>&1 ||
        { cat "$KDIR/format.log" >&2; die "kafka StorageTool format failed"; }
}

kafka_start() {
    if kafka_pid >/dev/null; then return 0; fi
    local p
    for p in "$KAFKA_PORT" "$KAFKA_CTRL_PORT"; do
        port_listening "$p" && fail_port_taken "$p" "Kafka broker ($KCONF)"
    done
    ensure_java_maven
    ensure_kafka_lib
    kafka_write_config
    kafka_format_if_needed
    log "starting Kafka broker on $KAFKA_BROKERS (log: $KDIR/broker.log)"
    rm -f "$KPID"
    # 9>&-: the broker must not inherit the lock fd, or it holds our lock forever.
    # setsid -f: new session, so the broker outlives this script and its process group;
    # the inner bash records its own pid, then execs (nohup) java under that same pid.
    (
        cd "$KDIR"
        # shellcheck disable=SC2016  # $$ and $0 belong to the inner bash
        setsid -f bash -c 'echo $$ >"$0"; exec nohup "$@"' "$KPID" \
            "$JAVA" -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
            -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
            -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KDIR/log4j2.xml" \
            -cp "$KLIB/*" kafka.Kafka "$KCONF" \
            >>"$KDIR/broker.out" 2>&1 </dev/null 9>&-
    )
    local deadline=$((SECONDS + 10))
    until [[ -s "$KPID" ]]; do
        (( SECONDS < deadline )) || die "Kafka broker did not start (see $KDIR/broker.out)"
        sleep 0.05
    done
}

kafka_dump_logs() {
    { echo "--- last errors in $KDIR/broker.log"; grep -E '(ERROR|FATAL) ' "$KDIR/broker.log" 2>/dev/null | tail -n 10 || true
      echo "--- tail $KDIR/broker.log"; tail -n 30 "$KDIR/broker.log" 2>/dev/null || true
      echo "--- tail $KDIR/broker.out"; tail -n 30 "$KDIR/broker.out" 2>/dev/null || true; } >&2
}

# Wait until the broker accepts connections; with "full", also until it serves an admin request.
kafka_wait_ready() {
    local full="${1:-}" deadline=$((SECONDS + WAIT_SECS))
    until tcp_open "$KAFKA_PORT"; do
        kafka_starting || { kafka_dump_logs; die "Kafka broker exited during startup"; }
        (( SECONDS < deadline )) || { kafka_dump_logs; die "Kafka did not listen on $KAFKA_BROKERS within ${WAIT_SECS}s"; }
        sleep 0.2
    done
    [[ "$full" == full ]] || return 0
    find_java || die "java not found"
    kafka_write_tools_config
    until kafka_admin org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
            --command-config "$KDIR/admin.properties" --list >/dev/null 2>"$KDIR/ready-check.err"; do
        kafka_starting || { kafka_dump_logs; die "Kafka broker exited during startup"; }
        (( SECONDS < deadline )) || { cat "$KDIR/ready-check.err" >&2; kafka_dump_logs
                                      die "Kafka on $KAFKA_BROKERS did not answer TopicCommand --list within ${WAIT_SECS}s"; }
        sleep 0.5
    done
}

kafka_up() {
    if kafka_pid >/dev/null; then
        if ! grep -qx "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CTRL_PORT" "$KCONF"; then
            log "our broker runs with other ports than $KAFKA_PORT/$KAFKA_CTRL_PORT: restarting it"
            kafka_stop term
            kafka_start
            kafka_wait_ready full
            return
        fi
        kafka_wait_ready
    else
        kafka_start
        kafka_wait_ready full
    fi
}

kafka_stop() {
    local how="${1:-term}" pid sig deadline start
    case "$how" in term) sig=TERM;; kill) sig=KILL;; *) die "stop mode must be term or kill, not '$how'";; esac
    if ! pid="$(kafka_pid)"; then
        log "Kafka broker is not running"
        rm -f "$KPID"
        return 0
    fi
    start="$(pid_start "$pid")" || start=""
    log "stopping Kafka broker (pid $pid, SIG$sig)"
    kill -s "$sig" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 120))
    # Until the process is gone, not only until its command line stops naming the broker: an
    # exiting process loses its command line before it closes its files (the log dir's lock).
    # Its start time keeps a later process that gets the same pid from being waited for (or killed).
    while pid_alive "$pid" "$start"; do
        if (( SECONDS >= deadline )); then
            log "broker still running after 120 s: SIGKILL"
            kill -s KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 30))
        fi
        sleep 0.1
    done
    rm -f "$KPID"
}

kafka_status() {
    local pid
    if pid="$(kafka_pid)"; then
        if tcp_open "$KAFKA_PORT"; then
            echo "kafka:    up    (pid $pid, $KAFKA_BROKERS, data $KDATA)"
            return 0
        fi
        echo "kafka:    starting/not answering (pid $pid)"
        return 1
    fi
    echo "kafka:    down"
    return 1
}

kafka_topic() {
    local name="${1:-}" parts="${2:-}"
    [[ -n "$name" && "$parts" =~ ^[0-9]+$ ]] || die "usage: $0 topic NAME PARTITIONS [extra TopicCommand args]"
    shift 2
    kafka_lib_ok || die "Kafka jars missing: run '$0 up' first"
    find_java || die "java not found"
    tcp_open "$KAFKA_PORT" || die "Kafka is not answering on $KAFKA_BROKERS: run '$0 up' first"
    kafka_write_tools_config
    kafka_admin org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" \
        --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 "$@"
}

# ---------------------------------------------------------------------------------------------

print_env() {
    echo "export GPULEDGER_DATABASE_URL=$DATABASE_URL"
    echo "export GPULEDGER_KAFKA_BROKERS=$KAFKA_BROKERS"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; }

cmd="${1:-up}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
    up)
        lock
        pg_up
        kafka_up
        log "PostgreSQL: $DATABASE_URL"
        log "Kafka:      $KAFKA_BROKERS"
        ;;
    down)
        lock
        rc=0
        kafka_stop || rc=1
        pg_stop fast || rc=1
        exit "$rc"
        ;;
    start-pg)     lock; pg_up ;;
    stop-pg)      lock; pg_stop "${1:-fast}" ;;
    restart-pg)   lock; pg_stop "${1:-fast}"; pg_up ;;
    start-kafka)  lock; kafka_up ;;
    stop-kafka)   lock; kafka_stop "${1:-term}" ;;
    restart-kafka) lock; kafka_stop "${1:-term}"; kafka_up ;;
    status)
        rc=0
        pg_status || rc=3
        kafka_status || rc=3
        exit "$rc"
        ;;
    env)          print_env ;;
    topic)        kafka_topic "$@" ;;
    psql)
        find_pg_bin || die "PostgreSQL binaries not found: run '$0 up' first"
        exec "$PG_BIN/psql" "$DATABASE_URL" "$@"
        ;;
    kafka-class)
        [[ $# -ge 1 ]] || die "usage: $0 kafka-class CLASS [args...]"
        kafka_lib_ok || die "Kafka jars missing: run '$0 up' first"
        find_java || die "java not found"
        kafka_write_tools_config
        kafka_class "$@"
        ;;
    -h|--help|help) usage ;;
    *) usage; die "unknown command '$cmd'" ;;
esac
