#!/usr/bin/env bash
# A second docaxis hub beside the one `make run` serves, for `make run HUBS=2` and
# `make demo-federation`: hub A (DOCAXIS_HUB_CODE, quang-ninh: the demo directory) and hub B
# (DOCAXIS_HUB_B_CODE, ho-chi-minh: Hồ Chí Minh City's agencies of the demo directory, with the
# provinces merged into it). DEMO ONLY.
#
#   deploy/local/second-hub.sh prepare   hub B's PKI (a CA of its own), database, virtual host,
#                                        ledger key and directory; both hubs' peer certificates;
#                                        prints hub A's federation settings (for `eval`)
#   deploy/local/second-hub.sh serve     runs hub B in the foreground (its log on stdout)
#   deploy/local/second-hub.sh routes [PID]  once both hubs answer, each routes the other's codes
#                                        to it (DirectoryService.SetHubRoute, in each ledger);
#                                        PID: hub B's, whose exit ends the wait
#
# Run by make with deploy/local/dev.env sourced (hub A's settings). Each hub trusts its own CA
# and the other's (the peer certificates "exchanged"): a trust bundle of both CAs for mutual TLS.
# Hub B keeps everything under $DOCAXIS_LOCAL_DIR/hub-b; settings (defaults):
#   DOCAXIS_HUB_B_CODE           ho-chi-minh
#   DOCAXIS_HUB_B_GRPC_ADDRESS   127.0.0.1:50061
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
BIN=$REPO_ROOT/.venv/bin
A_CODE=${DOCAXIS_HUB_CODE:-quang-ninh}
B_CODE=${DOCAXIS_HUB_B_CODE:-ho-chi-minh}
B_ADDRESS=${DOCAXIS_HUB_B_GRPC_ADDRESS:-127.0.0.1:50061}
B_DIR=$DOCAXIS_LOCAL_DIR/hub-b
B_PKI=$B_DIR/pki
BUNDLE=$DOCAXIS_LOCAL_DIR/federation-bundle.pem
# Hub B's agencies: Hồ Chí Minh City's, and those of the provinces merged into it in 2025 (their
# codes route along their successor); hub A keeps the whole demo directory and routes these to B.
B_LEVEL1=(H29 H09 H04)
# The demo's sender at hub A (services/demo_federation.py) and its official.
A_WARD=000.00.71.H45
A_SIGNER="Trần Thị Bình"
A_SIGNER_SLUG=tran-thi-binh
B_AGENCY=000.00.11.H29
B_AGENCY_NAME="Sở Nội vụ Thành phố Hồ Chí Minh"

log() { printf 'second-hub.sh: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

DEMO_CSV=$REPO_ROOT/services/directory/demo/agencies.csv

# The demo directory's rows of hub B's agencies (the header too with `all`).
b_rows() {
    local level1
    level1=$(IFS='|' && echo "${B_LEVEL1[*]}")
    awk -F, -v re="[.](${level1})\$" -v header="${1:-}" \
        '(NR == 1 && header == "all") || (NR > 1 && $1 ~ re)' "$DEMO_CSV"
}
b_codes() { b_rows | cut -d, -f1; }

cmd_prepare() {
    mkdir -p -- "$B_DIR"
    "$BIN/docaxis" pki dev-setup --dir "$B_PKI" >&2
    [[ -f $B_PKI/agencies/$B_AGENCY.pem ]] ||
        "$BIN/docaxis" pki issue-agency --dir "$B_PKI" "$B_AGENCY" "$B_AGENCY_NAME" >&2
    [[ -f $B_PKI/peers/$B_CODE.pem ]] || "$BIN/docaxis" pki issue-peer --dir "$B_PKI" "$B_CODE" >&2
    # The official of hub A's ward who signs the demo's document (the demo PKI has the ward's
    # agency certificate already).
    [[ -f $DOCAXIS_PKI_DIR/persons/$A_WARD/$A_SIGNER_SLUG.pem ]] ||
        "$BIN/docaxis" pki issue-person --dir "$DOCAXIS_PKI_DIR" "$A_SIGNER" "$A_WARD" >&2
    [[ -f $DOCAXIS_PKI_DIR/peers/$A_CODE.pem ]] ||
        "$BIN/docaxis" pki issue-peer --dir "$DOCAXIS_PKI_DIR" "$A_CODE" >&2
    # Both hubs trust both CAs: each one's peer certificate is accepted by the other.
    cat "$DOCAXIS_PKI_DIR/bundle.pem" "$B_PKI/bundle.pem" >"$BUNDLE"
    [[ -f $B_DIR/ledger.key ]] || "$BIN/docaxis" ledger keygen --out "$B_DIR/ledger.key" >&2
    b_rows all >"$B_DIR/agencies.csv"
    local database amqp
    database=$(bash "$SCRIPT_DIR/postgres.sh" database docaxis_hub_b)
    amqp=$(bash "$SCRIPT_DIR/rabbitmq.sh" vhost docaxis-hub-b)
    umask 077
    cat >"$B_DIR/hub.env" <<EOF
DOCAXIS_HUB_CODE=$B_CODE
DOCAXIS_GRPC_ADDRESS=$B_ADDRESS
DOCAXIS_DATABASE_URL=$database
DOCAXIS_AMQP_URL=$amqp
DOCAXIS_TLS_CERT_FILE=$B_PKI/servers/localhost.pem
DOCAXIS_TLS_KEY_FILE=$B_PKI/servers/localhost.key
DOCAXIS_TLS_CLIENT_CA_FILE=$BUNDLE
DOCAXIS_HUB_CERT_FILE=$B_PKI/roles/hub/hub.pem
DOCAXIS_HUB_KEY_FILE=$B_PKI/roles/hub/hub.key
DOCAXIS_LEDGER_KEY_FILE=$B_DIR/ledger.key
DOCAXIS_PEERS=$A_CODE=${DOCAXIS_GRPC_ADDRESS}
DOCAXIS_PEER_CERT_FILE=$B_PKI/peers/$B_CODE.pem
DOCAXIS_PEER_KEY_FILE=$B_PKI/peers/$B_CODE.key
DOCAXIS_PEER_SYNC_INTERVAL_S=2
DOCAXIS_PEER_MAX_BACKOFF_S=5
EOF
    # Hub A's settings (make evaluates them): it peers with B over the same bundle.
    local name value
    while read -r name value; do
        printf 'export %s=%q\n' "$name" "$value"
    done <<EOF
DOCAXIS_HUB_CODE $A_CODE
DOCAXIS_PEERS $B_CODE=$B_ADDRESS
DOCAXIS_PEER_CERT_FILE $DOCAXIS_PKI_DIR/peers/$A_CODE.pem
DOCAXIS_PEER_KEY_FILE $DOCAXIS_PKI_DIR/peers/$A_CODE.key
DOCAXIS_TLS_CLIENT_CA_FILE $BUNDLE
DOCAXIS_PEER_SYNC_INTERVAL_S 2
DOCAXIS_PEER_MAX_BACKOFF_S 5
DOCAXIS_HUB_B_CODE $B_CODE
DOCAXIS_HUB_B_GRPC_ADDRESS $B_ADDRESS
DOCAXIS_HUB_B_PKI_DIR $B_PKI
EOF
    log "hub $B_CODE prepared in $B_DIR (database docaxis_hub_b, virtual host docaxis-hub-b)"
}

# Hub B's environment alone: nothing of hub A's leaks into it.
b_env() {
    local -a settings=(PATH="$PATH" HOME="${HOME:-/root}" LANG="${LANG:-C.UTF-8}")
    while IFS= read -r line; do settings+=("$line"); done <"$B_DIR/hub.env"
    printf '%s\0' "${settings[@]}"
}

cmd_serve() {
    [[ -f $B_DIR/hub.env ]] || die "run '$0 prepare' first"
    local -a settings
    mapfile -d '' settings < <(b_env)
    exec env -i "${settings[@]}" "$BIN/docaxis" run --seed-demo --demo-agencies "$B_DIR/agencies.csv"
}

# `docaxis` as the administrator of hub A (its demo PKI) or of hub B.
as_admin_of() {
    local hub=$1
    shift
    if [[ $hub == a ]]; then
        "$BIN/docaxis" "$@" --address "$DOCAXIS_GRPC_ADDRESS" --pki "$DOCAXIS_PKI_DIR" \
            --ca "$BUNDLE"
    else
        "$BIN/docaxis" "$@" --address "$B_ADDRESS" --pki "$B_PKI" --ca "$BUNDLE"
    fi
}

# With hub B's process id (make passes it), a hub B that exited (a port taken, a bad setting) is
# reported at once with the end of its log, instead of waited for.
cmd_routes() {
    local hub deadline=$((SECONDS + 300)) b_pid=${1:-}
    for hub in a b; do
        until as_admin_of "$hub" peers routes >/dev/null 2>&1; do
            if [[ -n $b_pid ]] && ! kill -0 "$b_pid" 2>/dev/null; then
                tail -n 30 -- "$B_DIR/docaxis.log" >&2 || true
                die "hub $B_CODE exited before it answered (its log: $B_DIR/docaxis.log)"
            fi
            ((SECONDS < deadline)) || die "hub $hub did not answer within 300 s"
            sleep 1
        done
    done
    # Codes B serves go to B from A, whole codes too (A's demo directory holds them itself);
    # everything A serves, and anything else, goes from B to A.
    mapfile -t codes < <(b_codes)
    as_admin_of a peers route "${B_LEVEL1[@]}" "${codes[@]}" --to "$B_CODE" >/dev/null
    as_admin_of b peers route '*' --to "$A_CODE" >/dev/null
    log "routes set: ${B_LEVEL1[*]} and their agencies -> $B_CODE on $A_CODE; * -> $A_CODE on $B_CODE"
    printf '\nsecond hub %s is serving on %s beside %s (%s); try: make demo-federation\n' \
        "$B_CODE" "$B_ADDRESS" "$A_CODE" "$DOCAXIS_GRPC_ADDRESS"
}

case ${1:-} in
    prepare) cmd_prepare ;;
    serve) cmd_serve ;;
    routes) cmd_routes "${2:-}" ;;
    *)
        echo "usage: $0 prepare|serve|routes [PID]" >&2
        exit 2
        ;;
esac
