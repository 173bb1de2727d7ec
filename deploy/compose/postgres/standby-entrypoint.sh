#!/usr/bin/env bash
# The hot standby: on first start, a base backup of the primary through the `standby` slot,
# written with the settings that make it follow the primary (--write-recovery-conf:
# standby.signal and primary_conninfo, whose application_name the primary's
# synchronous_standby_names names). Promote it with
# `docker compose exec -u postgres postgres-standby pg_ctl promote` (README): it then serves
# writes without a synchronous standby of its own (the primary's synchronous_standby_names,
# copied by the base backup, is overridden below), until a new standby is attached.
set -euo pipefail

export PGDATA=${PGDATA:-/var/lib/postgresql/data}
# The replication password in the postgres user's ~/.pgpass, which libpq (pg_basebackup, and
# the standby's WAL receiver later) reads; written at every start from the secret.
pgpass=/var/lib/postgresql/.pgpass
printf '%s:5432:*:replicator:%s\n' "$PRIMARY_HOST" "$(<"$REPLICATION_PASSWORD_FILE")" >"$pgpass"
chown postgres:postgres "$pgpass" && chmod 0600 "$pgpass"

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    until gosu postgres pg_basebackup --host "$PRIMARY_HOST" --username replicator \
        --pgdata "$PGDATA" --slot standby --wal-method stream --write-recovery-conf \
        --checkpoint fast --dbname "application_name=standby"; do
        echo "standby: primary not reachable yet, retrying" >&2
        find "$PGDATA" -mindepth 1 -delete
        sleep 2
    done
fi
exec gosu postgres postgres -c hot_standby=on -c synchronous_standby_names=
