#!/usr/bin/env bash
# Private RabbitMQ node on 127.0.0.1 for development and tests.
#
#   deploy/local/rabbitmq.sh start|stop|status|url|env
#
# Environment (defaults):
#   DOCAXIS_LOCAL_DIR         <repo>/.local/dev   data under $DOCAXIS_LOCAL_DIR/rabbitmq
#   DOCAXIS_AMQP_PORT         35672
#   DOCAXIS_RABBIT_DIST_PORT  35673               Erlang distribution port of the node
#   DOCAXIS_EPMD_PORT         34369               this node's own epmd
#   DOCAXIS_RABBIT_NODENAME   docaxis-<AMQP port>@localhost
# CLI tools (rabbitmqctl) listen on DIST_PORT+10000 .. DIST_PORT+10010 while they run.
#
# `start` prints amqp://guest:guest@127.0.0.1:PORT/ as the last line of stdout; everything
# else goes to stderr. `env` prints the path of the environment file to source before using
# /usr/lib/rabbitmq/bin/rabbitmqctl by hand.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
LOCAL_DIR=${DOCAXIS_LOCAL_DIR:-$REPO_ROOT/.local/dev}
AMQP_PORT=${DOCAXIS_AMQP_PORT:-35672}
DIST_PORT=${DOCAXIS_RABBIT_DIST_PORT:-35673}
EPMD_PORT=${DOCAXIS_EPMD_PORT:-34369}
NODENAME=${DOCAXIS_RABBIT_NODENAME:-docaxis-$AMQP_PORT@localhost}
RABBIT_BIN_DIR=/usr/lib/rabbitmq/bin
RABBITMQ_SERVER=$RABBIT_BIN_DIR/rabbitmq-server
RABBITMQCTL=$RABBIT_BIN_DIR/rabbitmqctl

t0=$EPOCHREALTIME
log() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2fs", b - a }'; }

usage() {
    echo "usage: $0 start|stop|status|url|env" >&2
    exit 2
}

check_port_var() { # name value [max]
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > ${3:-65535})); then
        die "$1='$2' is not a valid TCP port${3:+ (at most $3)}"
    fi
}
check_port_var DOCAXIS_AMQP_PORT "$AMQP_PORT"
check_port_var DOCAXIS_RABBIT_DIST_PORT "$DIST_PORT" 55525
check_port_var DOCAXIS_EPMD_PORT "$EPMD_PORT"
CTL_PORT_MIN=$((DIST_PORT + 10000))
CTL_PORT_MAX=$((DIST_PORT + 10010))

case $LOCAL_DIR in
    /*) ;;
    *) LOCAL_DIR=$PWD/$LOCAL_DIR ;;
esac
R_DIR=$LOCAL_DIR/rabbitmq
ENV_FILE=$R_DIR/rabbitmq.env
PID_FILE=$R_DIR/rabbitmq.pid
LAUNCHER_PID_FILE=$R_DIR/launcher.pid
SERVER_OUT=$R_DIR/server.out
URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"

[[ -x $RABBITMQ_SERVER && -x $RABBITMQCTL ]] ||
    die "RabbitMQ not found in $RABBIT_BIN_DIR; run deploy/local/install.sh (Debian package: rabbitmq-server)"

# --- helpers ------------------------------------------------------------------------------
# Load the node's environment (the same for server and CLI) and exec "$@": for subshells.
exec_with_env() {
    set -a
    # shellcheck source=/dev/null
    . "$ENV_FILE"
    set +a
    exec "$@"
}
with_env() { (exec_with_env "$@"); }
ctl() { with_env "$RABBITMQCTL" "$@"; }

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

comm_of() { cat "/proc/$1/comm" 2>/dev/null || true; }

# True if process $1 exists and is not a zombie (an exited child not yet reaped).
pid_alive() {
    local state
    [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
    [[ $state != Z ]]
}

wait_pid_exit() { # pid seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        pid_alive "$1" || return 0
        sleep 0.1
    done
    ! pid_alive "$1"
}

# PID of our running node (beam), or nothing.
node_pid() {
    local pid
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && [[ $(comm_of "$pid") == beam* ]] &&
        printf '%s\n' "$pid"
    return 0
}

# Value of a variable recorded in the env file of a (possibly running) node.
recorded() {
    (
        # shellcheck source=/dev/null
        . "$ENV_FILE" && printf '%s\n' "${!1:-}"
    )
}

# The epmd process listening on port $1, or nothing.
epmd_pid_on() {
    local pids pid
    pids=$(port_listeners "$1") || return 0
    for pid in $pids; do
        [[ $(comm_of "$pid") == epmd ]] && printf '%s\n' "$pid"
    done
    return 0
}

require_free_port() { # port variable-name what
    local pids
    if pids=$(port_listeners "$1"); then
        # shellcheck disable=SC2086 # word splitting of the pid list is intended
        die "TCP port $1 ($3) is already in use by $(describe_pids $pids).
    Stop that process or choose another port: $2=<free port> $0 start"
    fi
}

write_files() {
    mkdir -p -- "$R_DIR/home" "$R_DIR/mnesia" "$R_DIR/log" "$R_DIR/conf.d"
    chmod 700 "$R_DIR/home"
    # Private Erlang cookie shared by the server and the CLI (same HOME).
    if [[ ! -s $R_DIR/home/.erlang.cookie ]]; then
        (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' \
            >"$R_DIR/home/.erlang.cookie")
    fi
    chmod 400 "$R_DIR/home/.erlang.cookie"

    cat >"$R_DIR/rabbitmq.conf" <<EOF
# Generated by deploy/local/rabbitmq.sh on each start: do not edit.
# AMQP on loopback only. guest/guest stays restricted to loopback connections (the default
# loopback_users), which is how the services connect.
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
EOF
    printf '[].\n' >"$R_DIR/enabled_plugins"
    : >"$R_DIR/rabbitmq-env.conf" # instead of the system /etc/rabbitmq/rabbitmq-env.conf

    local erl_args='-kernel inet_dist_use_interface {127,0,0,1}'
    {
        echo "# Generated by deploy/local/rabbitmq.sh: sourced by the server and the CLI alike."
        printf 'export %s=%q\n' \
            HOME "$R_DIR/home" \
            RABBITMQ_NODENAME "$NODENAME" \
            RABBITMQ_NODE_IP_ADDRESS 127.0.0.1 \
            RABBITMQ_NODE_PORT "$AMQP_PORT" \
            RABBITMQ_DIST_PORT "$DIST_PORT" \
            RABBITMQ_CTL_DIST_PORT_MIN "$CTL_PORT_MIN" \
            RABBITMQ_CTL_DIST_PORT_MAX "$CTL_PORT_MAX" \
            ERL_EPMD_ADDRESS 127.0.0.1 \
            ERL_EPMD_PORT "$EPMD_PORT" \
            RABBITMQ_MNESIA_BASE "$R_DIR/mnesia" \
            RABBITMQ_LOG_BASE "$R_DIR/log" \
            RABBITMQ_CONFIG_FILE "$R_DIR/rabbitmq.conf" \
            RABBITMQ_CONFIG_FILES "$R_DIR/conf.d" \
            RABBITMQ_ADVANCED_CONFIG_FILE "$R_DIR/advanced.config" \
            RABBITMQ_CONF_ENV_FILE "$R_DIR/rabbitmq-env.conf" \
            RABBITMQ_ENABLED_PLUGINS_FILE "$R_DIR/enabled_plugins" \
            RABBITMQ_PID_FILE "$PID_FILE" \
            ERL_CRASH_DUMP "$R_DIR/log/erl_crash.dump" \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS "$erl_args" \
            RABBITMQ_CTL_ERL_ARGS "$erl_args"
    } >"$ENV_FILE.tmp"
    mv -f -- "$ENV_FILE.tmp" "$ENV_FILE"
}

lock() {
    mkdir -p -- "$R_DIR"
    exec 9>"$R_DIR/.lock"
    flock -w 300 9 || die "timed out waiting for the lock $R_DIR/.lock"
}

# --- commands -----------------------------------------------------------------------------
cmd_start() {
    lock
    local pid
    pid=$(node_pid)
    if [[ -n $pid ]]; then
        local port
        port=$(recorded RABBITMQ_NODE_PORT)
        [[ $port == "$AMQP_PORT" ]] ||
            die "our node ($R_DIR) is already running with AMQP port $port, not $AMQP_PORT; stop it first: $0 stop"
        ctl wait --timeout 120 "$PID_FILE" >/dev/null 2>&1 ||
            die "our node (pid $pid) is running but does not answer; see $R_DIR/log"
        log "already running (pid $pid, $NODENAME)"
        printf '%s\n' "$URL"
        return 0
    fi

    require_free_port "$AMQP_PORT" DOCAXIS_AMQP_PORT "AMQP"
    require_free_port "$DIST_PORT" DOCAXIS_RABBIT_DIST_PORT "Erlang distribution"
    local epmd
    epmd=$(epmd_pid_on "$EPMD_PORT")
    if [[ -n $epmd ]]; then
        log "note: reusing the epmd (pid $epmd) already listening on port $EPMD_PORT"
    else
        require_free_port "$EPMD_PORT" DOCAXIS_EPMD_PORT "epmd"
    fi

    write_files
    rm -f -- "$PID_FILE"

    log "starting $NODENAME on 127.0.0.1:$AMQP_PORT (dist $DIST_PORT, epmd $EPMD_PORT, data $R_DIR)"
    # The subshell execs setsid -> nohup -> rabbitmq-server, so $! is the server's shell
    # wrapper (parent of the Erlang VM). A new session keeps the caller's signals (Ctrl-C in
    # make) away from it; fd 9 (our lock) is closed so the long-lived server does not hold it.
    (cd "$R_DIR" && exec_with_env setsid nohup "$RABBITMQ_SERVER") \
        >>"$SERVER_OUT" 2>&1 </dev/null 9>&- &
    local launcher=$!
    printf '%s\n' "$launcher" >"$LAUNCHER_PID_FILE"

    # Wait for the boot, but give up at once if the server process dies.
    # (The subshell execs the CLI, so $! is the CLI's own pid and can be killed.)
    (exec_with_env "$RABBITMQCTL" wait --timeout 120 "$PID_FILE") \
        >"$R_DIR/wait.out" 2>&1 </dev/null 9>&- &
    local waiter=$! rc=0
    while pid_alive "$waiter"; do
        if ! pid_alive "$launcher"; then
            sleep 0.5
            if pid_alive "$waiter"; then
                kill "$waiter" 2>/dev/null || true
                wait "$waiter" 2>/dev/null || true
                tail -n 30 "$SERVER_OUT" >&2 || true
                stop_node >&2 || true
                die "RabbitMQ exited during startup (output: $SERVER_OUT, logs: $R_DIR/log)"
            fi
            break
        fi
        sleep 0.2
    done
    wait "$waiter" || rc=$?
    if ((rc != 0)); then
        cat "$R_DIR/wait.out" >&2 || true
        tail -n 30 "$SERVER_OUT" >&2 || true
        log "stopping what was started"
        stop_node || true
        die "RabbitMQ did not become ready (rabbitmqctl wait exit $rc; output: $SERVER_OUT, logs: $R_DIR/log)"
    fi
    log "started (pid $(node_pid), $NODENAME) in $(elapsed)"
    printf '%s\n' "$URL"
}

# Is $1 the rabbitmq-server shell wrapper we started (guards against pid reuse)?
is_launcher() {
    [[ ${1:-} =~ ^[0-9]+$ ]] && pid_alive "$1" &&
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'rabbitmq-server'
}

# Stop the node (and its shell wrapper and epmd); the caller holds the lock.
stop_node() {
    local pid launcher epmd_port epmd names
    pid=$(node_pid)
    launcher=$(cat "$LAUNCHER_PID_FILE" 2>/dev/null || true)
    if [[ -n $pid ]]; then
        # `rabbitmqctl stop PIDFILE` returns once the process has exited.
        if ! with_env timeout 120 "$RABBITMQCTL" stop "$PID_FILE" >/dev/null 2>"$R_DIR/stop.err"; then
            log "rabbitmqctl stop failed ($(tail -n 1 "$R_DIR/stop.err" 2>/dev/null || true)); sending SIGTERM to pid $pid"
            kill -TERM "$pid" 2>/dev/null || true
        fi
        if ! wait_pid_exit "$pid" 60; then
            log "pid $pid still alive after 60 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_pid_exit "$pid" 10 || die "could not stop pid $pid"
        fi
    fi
    # The shell wrapper exits with the node; if the node never wrote its pid file (stopped
    # while booting), SIGTERM to the wrapper stops the VM.
    if is_launcher "$launcher"; then
        if [[ -z $pid ]]; then
            log "stopping the booting server (wrapper pid $launcher)"
            kill -TERM "$launcher" 2>/dev/null || true
        fi
        if ! wait_pid_exit "$launcher" 60; then
            log "wrapper pid $launcher still alive after 60 s; sending SIGKILL"
            kill -KILL "$launcher" 2>/dev/null || true
        fi
    elif [[ -z $pid ]]; then
        log "node not running"
    fi
    rm -f -- "$PID_FILE" "$LAUNCHER_PID_FILE"

    # The epmd our node started outlives it: stop it by pid, unless other nodes (not
    # transient CLI nodes) still use it.
    epmd_port=$(recorded ERL_EPMD_PORT)
    epmd=$(epmd_pid_on "$epmd_port")
    if [[ -n $epmd ]]; then
        names=$(ERL_EPMD_ADDRESS=127.0.0.1 "/proc/$epmd/exe" -port "$epmd_port" -names 2>/dev/null |
            grep '^name ' | grep -v '^name rabbitmqcli-' || true)
        if [[ -n $names ]]; then
            log "leaving epmd (pid $epmd, port $epmd_port) running: other nodes use it: $names"
        else
            kill -TERM "$epmd" 2>/dev/null || true
            wait_pid_exit "$epmd" 10 || kill -KILL "$epmd" 2>/dev/null || true
        fi
    fi
}

cmd_stop() {
    [[ -f $ENV_FILE ]] || { log "not running (no $ENV_FILE)"; return 0; }
    lock
    stop_node
    log "stopped in $(elapsed)"
}

cmd_status() {
    local pid
    pid=$(node_pid)
    if [[ -n $pid ]] && ctl -q -t 15 status >/dev/null 2>&1; then
        log "running (pid $pid, $(recorded RABBITMQ_NODENAME), AMQP port $(recorded RABBITMQ_NODE_PORT))"
        return 0
    fi
    log "not running${pid:+ (pid $pid does not answer)}"
    return 1
}

(($# == 1)) || usage
case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status)
        if [[ ! -f $ENV_FILE ]]; then
            log "not running (no $ENV_FILE)"
            exit 1
        fi
        cmd_status
        ;;
    url) printf '%s\n' "$URL" ;;
    env) printf '%s\n' "$ENV_FILE" ;;
    *) usage ;;
esac
