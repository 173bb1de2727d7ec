#!/usr/bin/env bash
# Private RabbitMQ node, or cluster of three nodes, on 127.0.0.1 for development and tests.
#
#   deploy/local/rabbitmq.sh start|stop|status|url|env|reset    one node (DOCAXIS_RABBIT_NODE)
#   deploy/local/rabbitmq.sh cluster-start|cluster-stop|cluster-status|cluster-url
#   deploy/local/rabbitmq.sh start-node N|stop-node N|kill-node N    N = 1, 2 or 3
#
# Environment (defaults):
#   DOCAXIS_LOCAL_DIR           <repo>/.local/dev   node 1's data in $DOCAXIS_LOCAL_DIR/rabbitmq,
#                                                   node N's (2, 3) in .../rabbitmq-N
#   DOCAXIS_AMQP_PORT           35672               node 1
#   DOCAXIS_RABBIT_DIST_PORT    35673               node 1's Erlang distribution port
#   DOCAXIS_AMQP_PORT_2         35674               node 2 (and _3: 35676)
#   DOCAXIS_RABBIT_DIST_PORT_2  35675               node 2 (and _3: 35677)
#   DOCAXIS_EPMD_PORT           34369               the nodes' own epmd (one for all three)
#   DOCAXIS_RABBIT_NODENAME     docaxis-<AMQP port>@localhost   (node 1 only)
#   DOCAXIS_RABBIT_NODE         1                   the node that start|stop|status|url|env use
# CLI tools (rabbitmqctl) listen on DIST_PORT+10000 .. DIST_PORT+10010 while they run.
#
# `start` prints amqp://guest:guest@127.0.0.1:PORT/ as the last line of stdout, `cluster-start`
# and `cluster-url` the three nodes' URLs separated by commas (what DOCAXIS_AMQP_URL takes);
# everything else goes to stderr. `env` prints the path of the environment file to source
# before using /usr/lib/rabbitmq/bin/rabbitmqctl by hand.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
LOCAL_DIR=${DOCAXIS_LOCAL_DIR:-$REPO_ROOT/.local/dev}
NODE=${DOCAXIS_RABBIT_NODE:-1}
CLUSTER_NODES=(1 2 3)
AMQP_PORTS=("${DOCAXIS_AMQP_PORT:-35672}" "${DOCAXIS_AMQP_PORT_2:-35674}" "${DOCAXIS_AMQP_PORT_3:-35676}")
DIST_PORTS=("${DOCAXIS_RABBIT_DIST_PORT:-35673}" "${DOCAXIS_RABBIT_DIST_PORT_2:-35675}" "${DOCAXIS_RABBIT_DIST_PORT_3:-35677}")
[[ $NODE =~ ^[123]$ ]] || { echo "rabbitmq.sh: ERROR: DOCAXIS_RABBIT_NODE='$NODE' is not 1, 2 or 3" >&2; exit 1; }
AMQP_PORT=${AMQP_PORTS[NODE - 1]}
DIST_PORT=${DIST_PORTS[NODE - 1]}
EPMD_PORT=${DOCAXIS_EPMD_PORT:-34369}
node_name_of() { # N
    if (($1 == 1)) && [[ -n ${DOCAXIS_RABBIT_NODENAME:-} ]]; then
        printf '%s\n' "$DOCAXIS_RABBIT_NODENAME"
    else
        printf 'docaxis-%s@localhost\n' "${AMQP_PORTS[$1 - 1]}"
    fi
}
NODENAME=$(node_name_of "$NODE")
RABBIT_BIN_DIR=/usr/lib/rabbitmq/bin
RABBITMQ_SERVER=$RABBIT_BIN_DIR/rabbitmq-server
RABBITMQCTL=$RABBIT_BIN_DIR/rabbitmqctl

t0=$EPOCHREALTIME
log() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2fs", b - a }'; }

usage() {
    echo "usage: $0 start|stop|status|url|env|reset|cluster-start|cluster-stop|cluster-status|cluster-url|vhost NAME" >&2
    echo "       $0 start-node N|stop-node N|kill-node N   (N = 1, 2 or 3)" >&2
    exit 2
}

check_port_var() { # name value [max]
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > ${3:-65535})); then
        die "$1='$2' is not a valid TCP port${3:+ (at most $3)}"
    fi
}
for n in "${CLUSTER_NODES[@]}"; do
    suffix=$( ((n == 1)) || printf '_%s' "$n")
    check_port_var "DOCAXIS_AMQP_PORT$suffix" "${AMQP_PORTS[n - 1]}"
    check_port_var "DOCAXIS_RABBIT_DIST_PORT$suffix" "${DIST_PORTS[n - 1]}" 55525
done
check_port_var DOCAXIS_EPMD_PORT "$EPMD_PORT"
CTL_PORT_MIN=$((DIST_PORT + 10000))
CTL_PORT_MAX=$((DIST_PORT + 10010))

case $LOCAL_DIR in
    /*) ;;
    *) LOCAL_DIR=$PWD/$LOCAL_DIR ;;
esac
node_dir_of() { # N
    if (($1 == 1)); then printf '%s\n' "$LOCAL_DIR/rabbitmq"; else printf '%s\n' "$LOCAL_DIR/rabbitmq-$1"; fi
}
url_of() { printf 'amqp://guest:guest@127.0.0.1:%s/\n' "${AMQP_PORTS[$1 - 1]}"; }
R_DIR=$(node_dir_of "$NODE")
COOKIE_SOURCE=$(node_dir_of 1)/home/.erlang.cookie
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

# Node 1's cookie (created once; the cluster's other nodes copy it).
ensure_cookie() {
    local home
    home=$(dirname -- "$COOKIE_SOURCE")
    mkdir -p -- "$home"
    chmod 700 "$home"
    if [[ ! -s $COOKIE_SOURCE ]]; then
        (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' \
            >"$COOKIE_SOURCE")
    fi
    chmod 400 "$COOKIE_SOURCE"
}

# Every quorum queue's Raft leader ticks each quorum_tick_interval (5 s by default): it spawns a
# process that writes the queue's metrics (what `list_queues messages`, management and Prometheus
# show), re-records its leader if the record after an election failed to, and purges members of
# nodes removed from the cluster; the tick also resends to followers that lag. Elections,
# failover and a restarted member's catch-up do not wait for it (Ra answers a restarted
# member's pre-vote with every append at once). With one inbox queue per agency, 3,000 idle
# queues cost the node 0.24 of a core at 5 s and 0.055 at 30 s (medians of four 30-s windows;
# docs/perf/README.md, "Quorum queues' idle tick"). RabbitMQ 3.10 has no rabbitmq.conf key for
# it, hence advanced.config. A queue keeps the tick it was declared with on 3.10 (Ra stores each
# member's configuration): a node dir's older queues keep 5 s until `reset`.
QUORUM_TICK_MS=30000
write_advanced_config() { # path
    cat >"$1" <<EOF
%% Generated by deploy/local/rabbitmq.sh on each start: do not edit (why: see the script).
[{rabbit, [{quorum_tick_interval, $QUORUM_TICK_MS}]}].
EOF
}

write_files() {
    mkdir -p -- "$R_DIR/home" "$R_DIR/mnesia" "$R_DIR/log" "$R_DIR/conf.d"
    chmod 700 "$R_DIR/home"
    # Private Erlang cookie shared by the server and the CLI (same HOME), generated here and
    # never kept in the repository. Nodes 2 and 3 take node 1's: a cluster's nodes (and their
    # CLI tools) must all have the same.
    if ((NODE == 1)); then
        ensure_cookie
    else
        [[ -s $COOKIE_SOURCE ]] || die "node 1's Erlang cookie $COOKIE_SOURCE is missing: start the cluster with: $0 cluster-start"
        if ! cmp -s -- "$COOKIE_SOURCE" "$R_DIR/home/.erlang.cookie"; then
            rm -f -- "$R_DIR/home/.erlang.cookie"
            (umask 077 && cp -- "$COOKIE_SOURCE" "$R_DIR/home/.erlang.cookie")
        fi
    fi
    chmod 400 "$R_DIR/home/.erlang.cookie"

    cat >"$R_DIR/rabbitmq.conf" <<EOF
# Generated by deploy/local/rabbitmq.sh on each start: do not edit.
# AMQP on loopback only. guest/guest stays restricted to loopback connections (the default
# loopback_users), which is how the services connect.
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
EOF
    write_advanced_config "$R_DIR/advanced.config"
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
        # SIGTERM: the VM stops its applications in order (listeners closed, connections
        # closed, message stores and quorum queues shut down), as `rabbitmqctl stop` has it do,
        # without booting a CLI VM first: a stop took 2.6 s that way, 1.1-1.3 s this way (docs/perf,
        # "The suite's time").
        kill -TERM "$pid" 2>/dev/null || true
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

# Stops the node if it runs and deletes its data (queues, messages, users, vhosts): the next
# start is a fresh broker. For benches: their broker kept every inbox queue of earlier runs (a
# worktree's held 3,017 quorum queues after a few 3,000-commune circulars), and 3,000 idle
# quorum queues cost RabbitMQ 0.10-0.16 of a core (their 5-s Raft ticks) against 0.003 for none,
# which its CPU meter then counted in every step.
cmd_reset() {
    lock
    [[ ! -f $ENV_FILE ]] || stop_node
    rm -rf -- "$R_DIR/mnesia"
    log "reset: deleted the node's data ($R_DIR/mnesia) in $(elapsed)"
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

# A virtual host of its own (created if missing) for each hub of a federation on one broker;
# prints its URL.
cmd_vhost() {
    [[ $1 =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "vhost '$1': use a-z, 0-9 and '-'"
    # The vhost and guest's permissions as definitions, in one CLI call (each call boots a CLI
    # Erlang VM: add_vhost, set_permissions and, once the vhost existed, list_vhosts were three);
    # importing what already exists changes nothing.
    printf '{"vhosts": [{"name": "%s"}], "permissions": [{"user": "guest", "vhost": "%s", "configure": ".*", "write": ".*", "read": ".*"}]}\n' "$1" "$1" |
        ctl -q import_definitions --format json >/dev/null || die "cannot create vhost $1"
    printf '%s%s\n' "$URL" "$1"
}

# --- cluster --------------------------------------------------------------------------------
# Runs this script for node $1 (the rest of the arguments are the command).
for_node() {
    local n=$1
    shift
    DOCAXIS_RABBIT_NODE=$n bash "$SCRIPT_DIR/rabbitmq.sh" "$@"
}

cluster_url() {
    local n urls=()
    for n in "${CLUSTER_NODES[@]}"; do urls+=("$(url_of "$n")"); done
    (IFS=,; printf '%s\n' "${urls[*]}")
}

check_node_arg() { [[ ${1:-} =~ ^[123]$ ]] || die "node number must be 1, 2 or 3, not '${1:-}'"; }

# Makes node $1 (2 or 3, running) a member of node 1's cluster, once: a fresh node is reset and
# joins; the marker file records it, because a node's membership lives in its data.
join_cluster() {
    local n=$1 dir seed
    dir=$(node_dir_of "$n")
    seed=$(node_name_of 1)
    [[ $(cat "$dir/cluster.joined" 2>/dev/null || true) == "$seed" ]] && return 0
    log "node $n joins the cluster of $seed"
    local step
    for step in stop_app reset "join_cluster $seed" start_app; do
        # shellcheck disable=SC2086 # the step's words are separate arguments
        if ! with_node_env "$n" "$RABBITMQCTL" -q $step >"$dir/join.out" 2>&1; then
            cat "$dir/join.out" >&2
            die "node $n: rabbitmqctl $step failed"
        fi
    done
    printf '%s\n' "$seed" >"$dir/cluster.joined"
}

# Runs "$@" with node $1's environment file.
with_node_env() {
    local env_file
    env_file=$(node_dir_of "$1")/rabbitmq.env
    shift
    (
        set -a
        # shellcheck source=/dev/null
        . "$env_file"
        set +a
        exec "$@"
    )
}

cmd_cluster_start() {
    ensure_cookie
    # All at once: a node that was not the last to stop waits at boot for the others.
    local n pids=() failed=0
    for n in "${CLUSTER_NODES[@]}"; do
        for_node "$n" start >/dev/null &
        pids+=($!)
    done
    for n in "${!pids[@]}"; do
        wait "${pids[n]}" || { log "node $((n + 1)) did not start"; failed=1; }
    done
    ((failed == 0)) || die "the cluster did not start (logs in $(node_dir_of 1)/log and the rabbitmq-N folders)"
    for n in "${CLUSTER_NODES[@]:1}"; do join_cluster "$n"; done
    local running
    running=$(with_node_env 1 "$RABBITMQCTL" -q eval 'length(rabbit_nodes:all_running()).')
    ((running == ${#CLUSTER_NODES[@]})) || die "only $running of ${#CLUSTER_NODES[@]} nodes run in the cluster"
    log "cluster of ${#CLUSTER_NODES[@]} nodes running in $(elapsed)"
    cluster_url
}

cmd_cluster_stop() {
    local n failed=0
    for n in 3 2 1; do
        for_node "$n" stop || failed=1
    done
    ((failed == 0)) || die "a node did not stop"
}

cmd_cluster_status() {
    local n down=0
    for n in "${CLUSTER_NODES[@]}"; do
        for_node "$n" status || down=1
    done
    return "$down"
}

# kill -9 of node $1's Erlang VM: no shutdown code runs (a crash, for failure tests).
cmd_kill_node() {
    local dir pid
    dir=$(node_dir_of "$1")
    pid=$(cat "$dir/rabbitmq.pid" 2>/dev/null || true)
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! pid_alive "$pid" || [[ $(comm_of "$pid") != beam* ]]; then
        die "node $1 is not running"
    fi
    kill -KILL "$pid"
    wait_pid_exit "$pid" 10 || die "node $1 (pid $pid) did not die"
    log "killed node $1 (pid $pid)"
}

case ${1:-} in
    vhost)
        (($# == 2)) || usage
        cmd_vhost "$2"
        exit 0
        ;;
    start-node | stop-node | kill-node)
        (($# == 2)) || usage
        check_node_arg "$2"
        case $1 in
            start-node) for_node "$2" start ;;
            stop-node) for_node "$2" stop ;;
            kill-node) cmd_kill_node "$2" ;;
        esac
        exit 0
        ;;
esac
(($# == 1)) || usage
case $1 in
    cluster-start) cmd_cluster_start ;;
    cluster-stop) cmd_cluster_stop ;;
    cluster-status) cmd_cluster_status ;;
    cluster-url) cluster_url ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    reset) cmd_reset ;;
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
