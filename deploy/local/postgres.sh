#!/usr/bin/env bash
# Private PostgreSQL server on 127.0.0.1 for development and tests.
#
#   deploy/local/postgres.sh start|stop|status|url
#
# Environment (defaults):
#   DOCAXIS_LOCAL_DIR  <repo>/.local/dev   data under $DOCAXIS_LOCAL_DIR/postgres
#   DOCAXIS_PG_PORT    55432
#
# `start` prints postgresql://postgres@127.0.0.1:PORT/docaxis as the last line of stdout;
# everything else goes to stderr.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
LOCAL_DIR=${DOCAXIS_LOCAL_DIR:-$REPO_ROOT/.local/dev}
PG_PORT=${DOCAXIS_PG_PORT:-55432}
DB_NAME=docaxis
DB_USER=postgres
PG_OS_USER=postgres

t0=$EPOCHREALTIME
log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2fs", b - a }'; }

usage() {
    echo "usage: $0 start|stop|status|url" >&2
    exit 2
}

if ! [[ $PG_PORT =~ ^[0-9]+$ ]] || ((PG_PORT < 1 || PG_PORT > 65535)); then
    die "DOCAXIS_PG_PORT='$PG_PORT' is not a valid TCP port"
fi

# Absolute local dir (may not exist yet).
case $LOCAL_DIR in
    /*) ;;
    *) LOCAL_DIR=$PWD/$LOCAL_DIR ;;
esac
PG_BASE=$LOCAL_DIR/postgres
PGDATA_DIR=$PG_BASE/data
PG_LOG=$PG_BASE/postgres.log
URL="postgresql://$DB_USER@127.0.0.1:$PG_PORT/$DB_NAME"

# --- binaries ---------------------------------------------------------------------------
# PATH first (resolving symlinks), then /usr/lib/postgresql/*/bin, highest version first.
find_pg_bindir() {
    local p d
    if p=$(command -v initdb 2>/dev/null); then
        d=$(dirname -- "$(readlink -f -- "$p")")
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
            printf '%s\n' "$d"
            return 0
        fi
    fi
    while IFS= read -r d; do
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
            printf '%s\n' "$d"
            return 0
        fi
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V -r)
    return 0
}

PG_BIN=$(find_pg_bindir)
[[ -n $PG_BIN ]] ||
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; run deploy/local/install.sh (Debian package: postgresql)"
if [[ -x $PG_BIN/psql ]]; then
    PSQL=$PG_BIN/psql
else
    PSQL=$(command -v psql) || die "psql not found (Debian package: postgresql-client)"
fi

# Run a command as the PostgreSQL OS user (root: via runuser; otherwise as ourselves),
# from a directory that user can read.
as_pg() {
    if ((EUID == 0)); then
        (cd "$PG_BASE" && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd "$PG_BASE" && "$@")
    fi
}

psql_admin() {
    PGCONNECT_TIMEOUT=10 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
        -U "$DB_USER" "$@"
}

# --- ports --------------------------------------------------------------------------------
# PIDs (when visible) of processes listening on TCP port $1 on any address; returns 1 if
# nothing listens there.
port_listeners() {
    local port_hex inodes inode
    port_hex=$(printf '%04X' "$1")
    inodes=$(awk -v p=":$port_hex" \
        'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null || true)
    [[ -n $inodes ]] || return 1
    for inode in $inodes; do
        find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\[$inode\]" 2>/dev/null |
            cut -d/ -f3 || true
    done | sort -u
    return 0
}

describe_pids() {
    local pid out=()
    for pid in "$@"; do
        out+=("pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80 | sed 's/ *$//' || true))")
    done
    if ((${#out[@]})); then printf '%s' "${out[*]}"; else printf 'an unknown process'; fi
}

require_free_port() {
    local pids
    if pids=$(port_listeners "$PG_PORT"); then
        # shellcheck disable=SC2086 # word splitting of the pid list is intended
        die "TCP port $PG_PORT is already in use by $(describe_pids $pids).
    Stop that process or choose another port: DOCAXIS_PG_PORT=<free port> $0 start"
    fi
}

# --- state --------------------------------------------------------------------------------
is_running() {
    local pid
    [[ -f $PGDATA_DIR/PG_VERSION && -f $PGDATA_DIR/postmaster.pid ]] || return 1
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1 || return 1
    # A killed postmaster may linger as a zombie until reaped: not running.
    pid=$(running_pid)
    [[ -n $pid ]] && [[ $(proc_state "$pid") != Z ]]
}

# One-letter state of process $1 (R, S, Z...), empty if it does not exist.
proc_state() {
    sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true
}

# After a crash (kill -9) the old postmaster can stay a zombie until its parent (init) reaps
# it; postgres then refuses to start ("lock file postmaster.pid already exists"). Wait for it.
wait_stale_postmaster() {
    local pid i
    pid=$(running_pid)
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    for ((i = 0; i < 150; i++)); do
        [[ $(proc_state "$pid") == Z ]] || return 0
        sleep 0.1
    done
    log "note: old postmaster pid $pid is dead (zombie) but not reaped; removing its postmaster.pid"
    rm -f -- "$PGDATA_DIR/postmaster.pid"
}

running_port() { sed -n 4p "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true; }
running_pid() { sed -n 1p "$PGDATA_DIR/postmaster.pid" 2>/dev/null || true; }

# Every folder above the data folder must be traversable by the postgres OS user.
ensure_traversable() {
    local d=$LOCAL_DIR owner
    while :; do
        if ! runuser -u "$PG_OS_USER" -- test -x "$d" 2>/dev/null; then
            owner=$(stat -c %u -- "$d")
            if [[ $owner == "$EUID" ]]; then
                case $d/ in
                    "$REPO_ROOT"/* | "$LOCAL_DIR"/*) ;;
                    *) log "note: adding o+x to $d so the '$PG_OS_USER' user can reach $PG_BASE" ;;
                esac
                chmod o+x -- "$d"
            else
                die "the '$PG_OS_USER' user cannot traverse $d (owner uid $owner); run: chmod o+x '$d', or set DOCAXIS_LOCAL_DIR to a reachable folder"
            fi
        fi
        [[ $d == / ]] && break
        d=$(dirname -- "$d")
    done
}

write_conf() {
    local sockdir=$PG_BASE
    # Unix socket paths are limited to 107 bytes; fall back to TCP only when too long.
    if ((${#sockdir} + 20 > 100)); then
        log "note: $sockdir is too long for a Unix socket; TCP only"
        sockdir=
    fi
    local tmp=$PGDATA_DIR/docaxis.conf.tmp
    cat >"$tmp" <<EOF
# Generated by deploy/local/postgres.sh on each start: do not edit.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sockdir'
max_connections = 200
# Durability matters for the ledger: keep these on.
fsync = on
synchronous_commit = on
full_page_writes = on
EOF
    if ((EUID == 0)); then chown "$PG_OS_USER:" "$tmp"; fi
    mv -f -- "$tmp" "$PGDATA_DIR/docaxis.conf"
}

init_cluster() {
    local tmpdata=$PG_BASE/data.initdb
    rm -rf -- "$tmpdata"
    log "initdb $PGDATA_DIR"
    if ! as_pg "$PG_BIN/initdb" -D "$tmpdata" -U "$DB_USER" --auth=trust -E UTF8 --no-locale \
        >"$PG_BASE/initdb.log" 2>&1; then
        cat "$PG_BASE/initdb.log" >&2
        rm -rf -- "$tmpdata"
        die "initdb failed (log above, also in $PG_BASE/initdb.log)"
    fi
    printf "\n# docaxis local settings\ninclude_if_exists = 'docaxis.conf'\n" >>"$tmpdata/postgresql.conf"
    mv -- "$tmpdata" "$PGDATA_DIR"
}

ensure_database() {
    local exists
    exists=$(psql_admin -d postgres -tA -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")
    if [[ $exists != 1 ]]; then
        psql_admin -d postgres -c "CREATE DATABASE $DB_NAME"
        log "created database $DB_NAME"
    fi
}

lock() {
    mkdir -p -- "$LOCAL_DIR"
    exec 9>"$LOCAL_DIR/.postgres.lock"
    flock -w 300 9 || die "timed out waiting for the lock $LOCAL_DIR/.postgres.lock"
}

# --- commands -----------------------------------------------------------------------------
cmd_start() {
    if ((EUID == 0)); then
        id -u "$PG_OS_USER" >/dev/null 2>&1 ||
            die "OS user '$PG_OS_USER' missing; run deploy/local/install.sh (Debian package: postgresql)"
    fi
    lock
    mkdir -p -- "$PG_BASE"
    if ((EUID == 0)); then
        chown "$PG_OS_USER:" "$PG_BASE"
        ensure_traversable
    fi
    chmod 700 "$PG_BASE"

    if is_running; then
        local port
        port=$(running_port)
        [[ $port == "$PG_PORT" ]] ||
            die "our server ($PGDATA_DIR) is already running on port $port, not $PG_PORT; stop it first: $0 stop"
        ensure_database
        log "already running (pid $(running_pid), port $PG_PORT, data $PGDATA_DIR)"
        printf '%s\n' "$URL"
        return 0
    fi
    require_free_port

    [[ -f $PGDATA_DIR/PG_VERSION ]] || init_cluster
    write_conf
    wait_stale_postmaster

    log "starting on 127.0.0.1:$PG_PORT (data $PGDATA_DIR, log $PG_LOG)"
    # fd 9 (our lock) is closed so that the long-lived server does not hold it.
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 120 start >&2 9>&-; then
        tail -n 30 "$PG_LOG" >&2 || true
        die "PostgreSQL failed to start (log: $PG_LOG)"
    fi
    ensure_database
    log "started (pid $(running_pid)) in $(elapsed)"
    printf '%s\n' "$URL"
}

cmd_stop() {
    [[ -d $PG_BASE ]] || { log "not running (no $PG_BASE)"; return 0; }
    lock
    if ! is_running; then
        log "not running"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 120 stop >&2
    log "stopped in $(elapsed)"
}

cmd_status() {
    if [[ -d $PG_BASE ]] && is_running; then
        log "running (pid $(running_pid), port $(running_port), data $PGDATA_DIR)"
        return 0
    fi
    log "not running (data $PGDATA_DIR)"
    return 1
}

(($# == 1)) || usage
case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) printf '%s\n' "$URL" ;;
    *) usage ;;
esac
