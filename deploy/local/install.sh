#!/usr/bin/env bash
# Ensure the OS packages needed by deploy/local/postgres.sh and deploy/local/rabbitmq.sh exist:
# PostgreSQL server binaries (initdb, pg_ctl, postgres, psql) and RabbitMQ (rabbitmq-server,
# rabbitmqctl), xmlsec1 (the independent XML-DSig tool the envelope signature tests check
# docaxis against), systemd-analyze (make check verifies the systemd units with it); with --browser also Debian's Chromium, which the admin console's end-to-end
# tests drive headless (Playwright never downloads a browser of its own here). Quick and
# silent-ish when everything is there; installs with apt-get as root; fails with the package
# names otherwise. Never leaves a system-wide server running.
set -euo pipefail

t0=$EPOCHREALTIME

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2fs", b - a }'; }

RABBIT_BIN_DIR=/usr/lib/rabbitmq/bin

# Directory holding initdb, pg_ctl and postgres: PATH first, then /usr/lib/postgresql/*/bin
# (highest version first). Prints nothing if not found.
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

pg_present() {
    local d
    d=$(find_pg_bindir)
    [[ -n $d ]] && { [[ -x $d/psql ]] || command -v psql >/dev/null 2>&1; }
}

rabbit_present() {
    [[ -x $RABBIT_BIN_DIR/rabbitmq-server && -x $RABBIT_BIN_DIR/rabbitmqctl ]]
}

xmlsec_present() {
    command -v xmlsec1 >/dev/null 2>&1
}

systemd_analyze_present() {
    command -v systemd-analyze >/dev/null 2>&1
}

browser_present() {
    [[ -x /usr/bin/chromium ]]
}

with_browser=0
for arg in "$@"; do
    case $arg in
    --browser) with_browser=1 ;;
    *) die "unknown argument: $arg (usage: install.sh [--browser])" ;;
    esac
done

missing=()
pg_present || missing+=(postgresql)
rabbit_present || missing+=(rabbitmq-server)
xmlsec_present || missing+=(xmlsec1)
systemd_analyze_present || missing+=(systemd)
if ((with_browser)) && ! browser_present; then missing+=(chromium); fi

if ((${#missing[@]} == 0)); then
    also=""
    if ((with_browser)); then also=", Chromium too"; fi
    log "PostgreSQL ($(find_pg_bindir)), RabbitMQ ($RABBIT_BIN_DIR), xmlsec1 and systemd-analyze present$also ($(elapsed))"
    exit 0
fi

if ((EUID != 0)); then
    die "missing OS packages: ${missing[*]}. Install them as root, e.g.:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
fi
command -v apt-get >/dev/null 2>&1 ||
    die "missing OS packages: ${missing[*]}, and apt-get is not available to install them"

# --- keep package maintainer scripts from starting system-wide services -------------------
# Debian's invoke-rc.d asks /usr/sbin/policy-rc.d; exit 101 means "action forbidden".
# Only install a temporary one if none exists (never replace an administrator's).
POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if ((created_policy)); then rm -f -- "$POLICY"; fi
}
trap cleanup EXIT
if [[ ! -e $POLICY ]]; then
    printf '#!/bin/sh\n# temporary, from docaxis deploy/local/install.sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    created_policy=1
fi

# PIDs of the processes listening on TCP port $1 (any address), from /proc.
listener_pids() {
    local port_hex inode
    port_hex=$(printf '%04X' "$1")
    for inode in $(awk -v p=":$port_hex" \
        'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null || true); do
        find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\[$inode\]" 2>/dev/null |
            cut -d/ -f3 || true
    done | sort -u
}

# System-wide default ports: RabbitMQ AMQP, its distribution port, epmd, PostgreSQL.
SYSTEM_PORTS=(5672 25672 4369 5432)
declare -A before=()
for port in "${SYSTEM_PORTS[@]}"; do
    for pid in $(listener_pids "$port"); do before[$pid]=1; done
done

log "installing: ${missing[*]} (apt-get update + install)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >&2

# Stop anything the installation started on the system ports (by pid, never by name).
for port in "${SYSTEM_PORTS[@]}"; do
    for pid in $(listener_pids "$port"); do
        [[ -n ${before[$pid]:-} ]] && continue
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        case $comm in beam.smp | epmd | postgres) ;; *) continue ;; esac
        log "stopping pid $pid ($comm) started by the install on port $port"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
done

if ((with_browser)); then
    browser_present || die "Chromium still missing after installing 'chromium'"
fi
pg_present || die "PostgreSQL binaries still missing after installing 'postgresql'"
rabbit_present || die "RabbitMQ binaries still missing after installing 'rabbitmq-server'"
xmlsec_present || die "xmlsec1 still missing after installing 'xmlsec1'"
systemd_analyze_present || die "systemd-analyze still missing after installing 'systemd'"
log "installed ${missing[*]}: PostgreSQL in $(find_pg_bindir), RabbitMQ in $RABBIT_BIN_DIR ($(elapsed))"
