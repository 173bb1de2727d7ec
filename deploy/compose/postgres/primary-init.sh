#!/usr/bin/env bash
# Runs once, when the primary's data directory is created (docker-entrypoint-initdb.d), as the
# superuser: the database roles docaxis expects and the standby's replication access.
#
# Roles (services/ledger/migrations/0002_log.sql, docs in README "The ledger"): the migrations
# create them when missing, but a production database should not let the application create
# roles, so they exist before the first `docaxis migrate`:
#   ledger_owner      NOLOGIN, owns the ledger tables; only migrations act as it
#   app_writer        NOLOGIN, directory and exchange tables, and INSERT into ledger.pending only
#   ledger_sequencer  NOLOGIN, claims staged events, appends to the log, updates tree_state
#   ledger_reader     NOLOGIN, reads the log (LedgerService, `docaxis audit export`)
#   docaxis           LOGIN, owns the database; member of all four (it migrates, then each pool
#                     runs under its narrow role with SET ROLE; DOCAXIS_DATABASE_ROLES)
#   docaxis_auditor   LOGIN, member of ledger_reader only: what an auditor's export connects as
#   replicator        LOGIN REPLICATION, the standby's streaming connection
set -euo pipefail

docaxis_password=$(<"$DOCAXIS_DB_PASSWORD_FILE")
replication_password=$(<"$REPLICATION_PASSWORD_FILE")

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v docaxis_password="$docaxis_password" -v replication_password="$replication_password" <<'SQL'
CREATE ROLE ledger_owner NOLOGIN;
CREATE ROLE app_writer NOLOGIN;
CREATE ROLE ledger_sequencer NOLOGIN;
CREATE ROLE ledger_reader NOLOGIN;
CREATE ROLE docaxis LOGIN PASSWORD :'docaxis_password'
    IN ROLE ledger_owner, app_writer, ledger_sequencer, ledger_reader;
CREATE ROLE docaxis_auditor LOGIN IN ROLE ledger_reader;  -- password set by the operator
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'replication_password';
ALTER DATABASE docaxis OWNER TO docaxis;
-- The ledger's schema and tables are owned by ledger_owner, which needs CREATE to own a schema.
GRANT CREATE ON DATABASE docaxis TO ledger_owner;
REVOKE ALL ON DATABASE docaxis FROM PUBLIC;
GRANT CONNECT ON DATABASE docaxis TO docaxis, docaxis_auditor;
SELECT pg_create_physical_replication_slot('standby');
-- From the real start on (not during this initialisation, which has no standby to wait for):
-- every commit waits until the standby named `standby` has it.
ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby)';
SQL

echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
