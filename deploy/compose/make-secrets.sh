#!/usr/bin/env bash
# Creates deploy/secrets/ for compose.yaml: the demo PKI (a throwaway CA: DEMO ONLY, never
# production; production certificates come from the national CA), a server certificate for
# every name the services are dialled by, the ledger key, random passwords, and the files built
# from them. Idempotent: what exists is kept. Needs the `docaxis` command (`make dev`).
#
#   deploy/compose/make-secrets.sh [SECRETS_DIR]       default: deploy/secrets
set -euo pipefail

DEPLOY_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
SECRETS=${1:-$DEPLOY_DIR/secrets}
DOCAXIS=${DOCAXIS:-$DEPLOY_DIR/../.venv/bin/docaxis}
# The image's user (deploy/Dockerfile): the files the containers read must be readable by it.
IMAGE_UID=10001

install -d -m 0700 "$SECRETS"
"$DOCAXIS" pki dev-setup --dir "$SECRETS/pki" >/dev/null
test -f "$SECRETS/pki/servers/docaxis.pem" ||
    "$DOCAXIS" pki issue-server docaxis --dir "$SECRETS/pki" --dns docaxis --dns docaxis-1 \
        --dns docaxis-2 --dns gateway --dns localhost --ip 127.0.0.1 >/dev/null
test -f "$SECRETS/ledger.key" || "$DOCAXIS" ledger keygen --out "$SECRETS/ledger.key" >/dev/null

random() { python3 -c 'import secrets; print(secrets.token_hex(24))'; }
for name in postgres-password docaxis-db-password auditor-password replication-password amqp-password \
    erlang-cookie grafana-admin-password; do
    test -s "$SECRETS/$name" || (umask 077 && random >"$SECRETS/$name")
done
(
    umask 077
    printf 'default_user = docaxis\ndefault_pass = %s\n' "$(<"$SECRETS/amqp-password")" \
        >"$SECRETS/rabbitmq-users.conf"
    # Both Postgres hosts: asyncpg tries them in turn and keeps the one that accepts writes, so
    # after the standby is promoted a reconnect finds it.
    printf 'DOCAXIS_DATABASE_URL=postgresql://docaxis:%s@%s/docaxis?target_session_attrs=read-write\n' \
        "$(<"$SECRETS/docaxis-db-password")" "postgres-primary:5432,postgres-standby:5432" \
        >"$SECRETS/urls.env"
    # Every RabbitMQ node, comma-separated: docaxis uses the first that answers and moves to
    # another live one when its node dies.
    amqp_password=$(<"$SECRETS/amqp-password")
    urls=""
    for node in 1 2 3; do
        urls+="${urls:+,}amqp://docaxis:$amqp_password@rabbitmq-$node:5672/"
    done
    printf 'DOCAXIS_AMQP_URL=%s\n' "$urls" >>"$SECRETS/urls.env"
)
if ((EUID == 0)); then
    chown -R "$IMAGE_UID:$IMAGE_UID" "$SECRETS/pki" "$SECRETS/ledger.key"
else
    echo "make-secrets.sh: as root, run: chown -R $IMAGE_UID:$IMAGE_UID $SECRETS/pki $SECRETS/ledger.key" \
        "(the containers run as uid $IMAGE_UID)" >&2
fi
echo "$SECRETS"
