-- The Merkle log (ledger.md §4-§9): entries, tiles, checkpoints, signing keys, tree state; the
-- roles that may touch them; triggers that make the log tables append-only.

DO $$
BEGIN
    -- Roles are cluster-wide: create them once, whichever database migrates first.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_owner') THEN
        CREATE ROLE ledger_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_writer') THEN
        CREATE ROLE app_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_sequencer') THEN
        CREATE ROLE ledger_sequencer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_reader') THEN
        CREATE ROLE ledger_reader NOLOGIN;
    END IF;
END $$;

CREATE TABLE ledger.entry (
    seq        bigint      NOT NULL,  -- 0-based leaf index, assigned by the sequencer
    entry_type text        NOT NULL,
    doc_id     uuid,
    logged_at  timestamptz NOT NULL,
    body       bytea       NOT NULL,  -- RFC 8785 bytes: the leaf input, exactly
    leaf_hash  bytea       NOT NULL,
    CONSTRAINT leaf_hash_ok CHECK (leaf_hash = sha256('\x00'::bytea || body)),
    CONSTRAINT body_size_ok CHECK (octet_length(body) <= 65535),
    PRIMARY KEY (seq)
) PARTITION BY RANGE (seq);

-- 2^24 entries per partition: one level-2 tile, so each partition is a perfect subtree.
CREATE TABLE ledger.entry_p0000 PARTITION OF ledger.entry FOR VALUES FROM (0) TO (16777216);
CREATE TABLE ledger.entry_p0001 PARTITION OF ledger.entry FOR VALUES FROM (16777216) TO (33554432);
-- Past the prepared ranges entries still land somewhere; an operator splits this off in time.
CREATE TABLE ledger.entry_overflow PARTITION OF ledger.entry DEFAULT;

CREATE INDEX entry_by_doc ON ledger.entry (doc_id, seq);
CREATE INDEX entry_logged_at ON ledger.entry USING brin (logged_at);

-- Full tiles only (C2SP tlog-tiles): 256 hashes each, never rewritten.
CREATE TABLE ledger.tile (
    level  smallint NOT NULL,
    idx    bigint   NOT NULL,
    hashes bytea    NOT NULL CHECK (octet_length(hashes) = 8192),
    PRIMARY KEY (level, idx)
);

-- One row: the tree's size, root, compact range and partial tiles (the sequencer's state).
CREATE TABLE ledger.tree_state (
    id            boolean     PRIMARY KEY DEFAULT true CHECK (id),
    size          bigint      NOT NULL,
    root          bytea       NOT NULL,
    compact_range bytea       NOT NULL,
    tile_builder  bytea       NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger.tree_state (size, root, compact_range, tile_builder)
VALUES (0, sha256(''::bytea), '\x0000000000000000'::bytea, '\x0000000000000000'::bytea);

-- Published checkpoints (C2SP signed notes), one per size: a size is never signed twice.
CREATE TABLE ledger.checkpoint (
    size       bigint      PRIMARY KEY,
    root       bytea       NOT NULL,
    note       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Public keys that have signed checkpoints, from their first use on.
CREATE TABLE ledger.signing_key (
    vkey       text        PRIMARY KEY,
    name       text        NOT NULL,
    first_used timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ledger.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Row triggers miss TRUNCATE, statement triggers on a partitioned table do not reach its
-- partitions, and plain ENABLE is skipped under session_replication_role = replica: so every
-- table and every partition gets both triggers, enabled ALWAYS.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['entry', 'entry_p0000', 'entry_p0001', 'entry_overflow', 'tile',
                             'checkpoint', 'signing_key'] LOOP
        IF t NOT LIKE 'entry_%' THEN  -- partitions inherit the parent's row trigger
            EXECUTE format('CREATE TRIGGER no_update_delete BEFORE UPDATE OR DELETE ON ledger.%I '
                           'FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()', t);
        END IF;
        EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON ledger.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER no_update_delete', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER no_truncate', t);
    END LOOP;
END $$;

-- Ownership and privileges: the owner is used only by migrations; application code reaches
-- the ledger through the narrow roles below (REVOKE from PUBLIC first).
ALTER SCHEMA ledger OWNER TO ledger_owner;
ALTER TABLE ledger.pending OWNER TO ledger_owner;
ALTER TABLE ledger.entry OWNER TO ledger_owner;
ALTER TABLE ledger.tile OWNER TO ledger_owner;
ALTER TABLE ledger.tree_state OWNER TO ledger_owner;
ALTER TABLE ledger.checkpoint OWNER TO ledger_owner;
ALTER TABLE ledger.signing_key OWNER TO ledger_owner;
ALTER FUNCTION ledger.refuse_change() OWNER TO ledger_owner;
REVOKE ALL ON ALL TABLES IN SCHEMA ledger FROM PUBLIC;
REVOKE ALL ON SCHEMA ledger FROM PUBLIC;

GRANT USAGE ON SCHEMA ledger TO app_writer, ledger_sequencer, ledger_reader;
GRANT INSERT ON ledger.pending TO app_writer, ledger_sequencer;
GRANT USAGE ON SEQUENCE ledger.pending_id_seq TO app_writer, ledger_sequencer;
-- Claiming with FOR UPDATE SKIP LOCKED needs UPDATE as well; pending is staging, not the log.
GRANT SELECT, UPDATE, DELETE ON ledger.pending TO ledger_sequencer;
GRANT SELECT, INSERT ON ledger.entry, ledger.tile, ledger.checkpoint, ledger.signing_key
    TO ledger_sequencer;
GRANT SELECT, UPDATE ON ledger.tree_state TO ledger_sequencer;
GRANT SELECT ON ledger.entry, ledger.tile, ledger.checkpoint, ledger.signing_key,
    ledger.tree_state TO ledger_reader;

-- The directory and exchange code runs as app_writer: everything in its own schemas, and of the
-- ledger only INSERT into staging. Later migrations' tables are covered by default privileges.
GRANT USAGE ON SCHEMA directory, exchange TO app_writer;
GRANT ALL ON ALL TABLES IN SCHEMA directory, exchange TO app_writer;
GRANT ALL ON ALL SEQUENCES IN SCHEMA directory, exchange TO app_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA directory, exchange GRANT ALL ON TABLES TO app_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA directory, exchange GRANT ALL ON SEQUENCES TO app_writer;
