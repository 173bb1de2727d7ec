#!/usr/bin/env bash
# Private PostgreSQL server on 127.0.0.1 for development and tests, with an optional hot standby
# that streams from it synchronously and can be promoted.
#
#   deploy/local/postgres.sh start|stop|status|url|kill                       the primary
#   deploy/local/postgres.sh database NAME     another database on the running primary (created
#                                              if missing; e.g. a second hub's), prints its URL
#   deploy/local/postgres.sh standby-start|standby-stop|standby-status|promote|cluster-url
#   deploy/local/postgres.sh rejoin        after a failover: the old primary, rebuilt as the
#                                          new primary's synchronous standby (pg_rewind, or a
#                                          fresh pg_basebackup when rewinding is not possible)
#
# The first server (DOCAXIS_PG_PORT) is the primary until `promote` makes the second one
# (DOCAXIS_PG_STANDBY_PORT) the primary; from then on the commands act by role: `kill` and `stop`
# on the second, `rejoin` and then `standby-*` and `promote` on the first, and so on at the next
# failover.
#
# Environment (defaults):
#   DOCAXIS_LOCAL_DIR        <repo>/.local/dev   data under $DOCAXIS_LOCAL_DIR/postgres and
#                                                $DOCAXIS_LOCAL_DIR/postgres-standby
#   DOCAXIS_PG_PORT          55432               the primary
#   DOCAXIS_PG_STANDBY_PORT  55436               the standby
#
# `start` prints postgresql://postgres@127.0.0.1:PORT/docaxis as the last line of stdout;
# `standby-start`, `rejoin` and `cluster-url` the URL naming both servers that DOCAXIS_DATABASE_URL takes
# (target_session_attrs=read-write picks whichever is the primary), `promote` the promoted
# server's own URL; everything else goes to stderr.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
LOCAL_DIR=${DOCAXIS_LOCAL_DIR:-$REPO_ROOT/.local/dev}
PG_PORT=${DOCAXIS_PG_PORT:-55432}
STANDBY_PORT=${DOCAXIS_PG_STANDBY_PORT:-55436}
PRIMARY_PORT=$PG_PORT
# The standby's name for the primary: its application_name and its replication slot.
STANDBY_NAME=docaxis_standby
DB_NAME=docaxis
DB_USER=postgres
PG_OS_USER=postgres

t0=$EPOCHREALTIME
log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2fs", b - a }'; }

usage() {
    echo "usage: $0 start|stop|status|url|kill|database NAME|standby-start|standby-stop|standby-status|promote|rejoin|cluster-url" >&2
    exit 2
}

for port_var in DOCAXIS_PG_PORT:$PG_PORT DOCAXIS_PG_STANDBY_PORT:$STANDBY_PORT; do
    if ! [[ ${port_var#*:} =~ ^[0-9]+$ ]] || ((${port_var#*:} < 1 || ${port_var#*:} > 65535)); then
        die "${port_var%%:*}='${port_var#*:}' is not a valid TCP port"
    fi
done
((PG_PORT != STANDBY_PORT)) || die "DOCAXIS_PG_PORT and DOCAXIS_PG_STANDBY_PORT are both $PG_PORT"

# Absolute local dir (may not exist yet).
case $LOCAL_DIR in
    /*) ;;
    *) LOCAL_DIR=$PWD/$LOCAL_DIR ;;
esac
PRIMARY_BASE=$LOCAL_DIR/postgres
STANDBY_BASE=$LOCAL_DIR/postgres-standby
CLUSTER_URL="postgresql://$DB_USER@127.0.0.1:$PRIMARY_PORT,127.0.0.1:$STANDBY_PORT/$DB_NAME?target_session_attrs=read-write"
# Written into the old primary's folder by `promote`: it must never serve again as a primary.
SUPERSEDED=superseded
# Roles: the second server is the primary once the first was superseded, and stays so while the
# first, rejoined, follows it.
if [[ -e $PRIMARY_BASE/$SUPERSEDED || -f $PRIMARY_BASE/data/standby.signal ]]; then
    PRIMARY_PORT=$STANDBY_PORT
    STANDBY_PORT=$PG_PORT
    swapped_base=$PRIMARY_BASE
    PRIMARY_BASE=$STANDBY_BASE
    STANDBY_BASE=$swapped_base
fi
# The server the commands act on: the primary unless use_standby was called.
use_primary() {
    PG_PORT=$PRIMARY_PORT
    PG_BASE=$PRIMARY_BASE
    PGDATA_DIR=$PG_BASE/data
    PG_LOG=$PG_BASE/postgres.log
    URL="postgresql://$DB_USER@127.0.0.1:$PG_PORT/$DB_NAME"
    LOCK_FILE=$LOCAL_DIR/.postgres.lock
}
use_standby() {
    PG_PORT=$STANDBY_PORT
    PG_BASE=$STANDBY_BASE
    PGDATA_DIR=$PG_BASE/data
    PG_LOG=$PG_BASE/postgres.log
    URL="postgresql://$DB_USER@127.0.0.1:$PG_PORT/$DB_NAME"
    LOCK_FILE=$LOCAL_DIR/.postgres-standby.lock
}
use_primary

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

# psql on the primary, whichever server the script acts on.
psql_primary() {
    PGCONNECT_TIMEOUT=10 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" \
        -U "$DB_USER" -d postgres "$@"
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
# Streaming replication (postgres.sh standby-start): the standby serves reads while it follows.
wal_level = replica
# pg_rewind (postgres.sh rejoin) needs it to rebuild a former primary from the new one.
wal_log_hints = on
# ... and the WAL back to where the two diverged, which a server recycles at its checkpoints.
wal_keep_size = '256MB'
max_wal_senders = 5
max_replication_slots = 5
hot_standby = on
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
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || die "timed out waiting for the lock $LOCK_FILE"
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
    [[ ! -e $PG_BASE/$SUPERSEDED ]] ||
        die "this server was replaced by the promoted standby ($(cat "$PG_BASE/$SUPERSEDED")): starting it again as a primary would split the data. Remove $PG_BASE to start afresh"
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

# --- standby ------------------------------------------------------------------------------
wait_for() { # seconds description command...
    local seconds=$1 what=$2 i
    shift 2
    for ((i = 0; i < seconds * 10; i++)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    die "timed out after ${seconds}s waiting for $what"
}

standby_is_sync() {
    [[ $(psql_primary -tA -c "SELECT sync_state FROM pg_stat_replication
        WHERE application_name = '$STANDBY_NAME' AND state = 'streaming'" 2>/dev/null) == sync ]]
}

# Commits on the primary wait for the standby (on), or not (off).
set_synchronous() {
    local names=''
    [[ $1 == on ]] && names=$STANDBY_NAME
    psql_primary -c "ALTER SYSTEM SET synchronous_standby_names = '$names'" \
        -c "SELECT pg_reload_conf()" >/dev/null
}

# A copy of the primary (pg_basebackup: its data, standby.signal and primary_conninfo with the
# standby's application_name, through its replication slot).
clone_primary() {
    local tmpdata=$PG_BASE/data.clone
    rm -rf -- "$tmpdata"
    log "pg_basebackup from 127.0.0.1:$PRIMARY_PORT into $PGDATA_DIR"
    if ! as_pg "$PG_BIN/pg_basebackup" -D "$tmpdata" -R -X stream -S "$STANDBY_NAME" \
        --checkpoint=fast \
        -d "host=127.0.0.1 port=$PRIMARY_PORT user=$DB_USER application_name=$STANDBY_NAME" \
        >"$PG_BASE/basebackup.log" 2>&1; then
        cat "$PG_BASE/basebackup.log" >&2
        rm -rf -- "$tmpdata"
        die "pg_basebackup failed (log above, also in $PG_BASE/basebackup.log)"
    fi
    # The primary's own settings came with the copy: the standby never waits for itself.
    printf "synchronous_standby_names = ''\n" >>"$tmpdata/postgresql.auto.conf"
    mv -- "$tmpdata" "$PGDATA_DIR"
}

cmd_standby_start() {
    if ((EUID == 0)); then id -u "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' missing"; fi
    psql_primary -tA -c "SELECT 1" >/dev/null 2>&1 ||
        die "the primary (127.0.0.1:$PRIMARY_PORT) does not answer: start it first: $0 start"
    [[ $(psql_primary -tA -c "SELECT pg_is_in_recovery()") == f ]] ||
        die "127.0.0.1:$PRIMARY_PORT is itself a standby"
    use_standby
    lock
    mkdir -p -- "$PG_BASE"
    if ((EUID == 0)); then
        chown "$PG_OS_USER:" "$PG_BASE"
        ensure_traversable
    fi
    chmod 700 "$PG_BASE"
    if ! is_running; then
        if [[ -f $PGDATA_DIR/PG_VERSION && ! -f $PGDATA_DIR/standby.signal ]]; then
            die "$PGDATA_DIR is no longer a standby (promoted?): remove $PG_BASE to clone the primary again"
        fi
        psql_primary -c "SELECT pg_create_physical_replication_slot('$STANDBY_NAME')
            WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$STANDBY_NAME')" >/dev/null
        [[ -f $PGDATA_DIR/PG_VERSION ]] || clone_primary
        require_free_port
        write_conf
        wait_stale_postmaster
        log "starting the standby on 127.0.0.1:$PG_PORT (data $PGDATA_DIR, log $PG_LOG)"
        if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 120 start >&2 9>&-; then
            tail -n 30 "$PG_LOG" >&2 || true
            die "the standby failed to start (log: $PG_LOG)"
        fi
    fi
    set_synchronous on
    wait_for 60 "the standby to stream synchronously" standby_is_sync
    log "standby streaming synchronously (pid $(running_pid)) in $(elapsed): commits on the primary wait for it"
    printf '%s\n' "$CLUSTER_URL"
}

cmd_standby_stop() {
    use_standby
    [[ -d $PG_BASE ]] || { log "standby not running (no $PG_BASE)"; return 0; }
    lock
    # A deliberate stop: the primary stops waiting for it (a crash leaves commits waiting).
    if psql_primary -tA -c "SELECT 1" >/dev/null 2>&1 &&
        [[ $(psql_primary -tA -c "SELECT pg_is_in_recovery()") == f ]]; then
        set_synchronous off
    fi
    if ! is_running; then
        log "standby not running"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 120 stop >&2
    log "standby stopped in $(elapsed)"
}

# Failover: the standby becomes the primary. Run it once the primary is down for good; the old
# primary's folder is marked so that `start` refuses to run it again beside the new one.
cmd_promote() {
    use_standby
    lock
    is_running || die "the standby is not running"
    [[ -f $PGDATA_DIR/standby.signal ]] || die "already promoted"
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -w -t 120 promote >&2
    # Alone now: commits must not wait for a standby that no longer exists.
    psql_admin -d postgres -c "ALTER SYSTEM SET synchronous_standby_names = ''" \
        -c "SELECT pg_reload_conf()" >/dev/null
    if [[ -d $PRIMARY_BASE ]]; then
        printf 'promoted standby on port %s\n' "$STANDBY_PORT" >"$PRIMARY_BASE/$SUPERSEDED"
    fi
    log "promoted: 127.0.0.1:$PG_PORT is the primary, without a standby, in $(elapsed)"
    printf '%s\n' "$URL"
}

# After a failover: the former primary (down, marked superseded by `promote`) follows the new
# primary as its synchronous standby. pg_rewind undoes what the old primary wrote after the two
# diverged (what no client was told was committed: commits waited for the standby); without it
# (wal_log_hints was off, or the rewind failed) a fresh pg_basebackup replaces the data.
cmd_rejoin() {
    if ((EUID == 0)); then id -u "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' missing"; fi
    psql_primary -tA -c "SELECT 1" >/dev/null 2>&1 ||
        die "the primary (127.0.0.1:$PRIMARY_PORT) does not answer: promote the standby first: $0 promote"
    [[ $(psql_primary -tA -c "SELECT pg_is_in_recovery()") == f ]] ||
        die "127.0.0.1:$PRIMARY_PORT is itself a standby"
    use_standby
    lock
    [[ -f $PGDATA_DIR/PG_VERSION ]] || die "no former primary in $PGDATA_DIR: start a standby with: $0 standby-start"
    [[ ! -f $PGDATA_DIR/standby.signal ]] || die "$PGDATA_DIR is a standby already: $0 standby-start"
    ! is_running || die "the former primary on $PGDATA_DIR still runs: stop it first (pg_ctl -D $PGDATA_DIR stop)"
    wait_stale_postmaster
    rm -f -- "$PGDATA_DIR/postmaster.pid"
    psql_primary -c "SELECT pg_create_physical_replication_slot('$STANDBY_NAME')
        WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$STANDBY_NAME')" >/dev/null
    # A checkpoint writes the promotion's new timeline into the new primary's control file, which
    # pg_rewind compares (without it, it may see one timeline and rewind nothing).
    psql_primary -c "CHECKPOINT" >/dev/null
    local source="host=127.0.0.1 port=$PRIMARY_PORT user=$DB_USER dbname=postgres application_name=$STANDBY_NAME"
    log "pg_rewind of $PGDATA_DIR from 127.0.0.1:$PRIMARY_PORT"
    if as_pg "$PG_BIN/pg_rewind" -D "$PGDATA_DIR" --source-server="$source" -R \
        >"$PG_BASE/rewind.log" 2>&1; then
        # The rewind copied the new primary's settings: the standby streams through its slot
        # and never waits for itself.
        printf "primary_slot_name = '%s'\nsynchronous_standby_names = ''\n" "$STANDBY_NAME" \
            >>"$PGDATA_DIR/postgresql.auto.conf"
    else
        log "pg_rewind failed ($(tail -n 1 "$PG_BASE/rewind.log")); a fresh copy instead"
        rm -rf -- "$PGDATA_DIR"
        clone_primary
    fi
    write_conf
    log "starting the rejoined standby on 127.0.0.1:$PG_PORT (data $PGDATA_DIR, log $PG_LOG)"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 120 start >&2 9>&-; then
        tail -n 30 "$PG_LOG" >&2 || true
        die "the rejoined standby failed to start (log: $PG_LOG)"
    fi
    rm -f -- "$PG_BASE/$SUPERSEDED"
    set_synchronous on
    wait_for 60 "the rejoined standby to stream synchronously" standby_is_sync
    log "127.0.0.1:$PG_PORT rejoined as the synchronous standby of 127.0.0.1:$PRIMARY_PORT in $(elapsed)"
    printf '%s\n' "$CLUSTER_URL"
}

cmd_standby_status() {
    use_standby
    if [[ -d $PG_BASE ]] && is_running; then
        local role=standby
        [[ -f $PGDATA_DIR/standby.signal ]] || role="primary (promoted)"
        log "$role running (pid $(running_pid), port $(running_port), data $PGDATA_DIR)"
        return 0
    fi
    log "standby not running (data $PGDATA_DIR)"
    return 1
}

# kill -9 of the primary's postmaster: a crash, for failure tests. Its backends notice and exit.
cmd_kill() {
    local pid
    is_running || die "not running"
    pid=$(running_pid)
    kill -KILL "$pid"
    wait_for 10 "pid $pid to exit" pid_gone "$pid"
    log "killed the primary (postmaster pid $pid)"
}
pid_gone() { [[ ! -e /proc/$1 || $(proc_state "$1") == Z ]]; }

# Another database on the running primary, for a second hub on the same server (make run HUBS=2).
cmd_database() {
    [[ $1 =~ ^[a-z][a-z0-9_]{0,62}$ ]] || die "database '$1': use a-z, 0-9 and '_'"
    is_running || die "not running: $0 start first"
    DB_NAME=$1 ensure_database
    printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$DB_USER" "$PG_PORT" "$1"
}

if [[ ${1:-} == database ]]; then
    (($# == 2)) || usage
    cmd_database "$2"
    exit 0
fi
(($# == 1)) || usage
case $1 in
    standby-start) cmd_standby_start ;;
    standby-stop) cmd_standby_stop ;;
    standby-status) cmd_standby_status ;;
    promote) cmd_promote ;;
    rejoin) cmd_rejoin ;;
    cluster-url) printf '%s\n' "$CLUSTER_URL" ;;
    kill) cmd_kill ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) printf '%s\n' "$URL" ;;
    *) usage ;;
esac
