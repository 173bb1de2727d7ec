-- Trust that does not rest on the operator (issue 14): retired checkpoint keys, witness
-- cosignatures (C2SP tlog-cosignature) and fork reports, all append-only like the log itself.
-- No foreign keys: they would make TRUNCATE of the referenced tables fail before the guard
-- triggers can refuse it, and insert-only rows cannot dangle anyway.

-- A checkpoint key's end: recorded when the writer starts without it (its key file no longer
-- holds it). The exported and served trust policy gives it as the key's valid_until.
CREATE TABLE ledger.key_retirement (
    vkey       text        PRIMARY KEY,  -- a ledger.signing_key
    retired_at timestamptz NOT NULL DEFAULT now()
);

-- One cosignature line per (checkpoint, witness), exactly as the witness returned it.
CREATE TABLE ledger.cosignature (
    size        bigint      NOT NULL,  -- a ledger.checkpoint
    witness     text        NOT NULL,  -- the witness's verifier key (vkey)
    line        text        NOT NULL,  -- "— <name> <base64(key id || timestamp || signature)>\n"
    cosigned_at timestamptz NOT NULL,  -- the timestamp inside the cosignature
    stored_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (size, witness)
);

-- Split-view evidence sent by a client or a witness: two checkpoints of this log, both
-- validly signed, that no consistency proof can join.
CREATE TABLE ledger.fork_report (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reported_at      timestamptz NOT NULL DEFAULT now(),
    reporter         text        NOT NULL,
    trusted_note     bytea       NOT NULL,  -- what the reporter held
    conflicting_note bytea       NOT NULL,  -- what it was shown
    detail           text        NOT NULL
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['key_retirement', 'cosignature', 'fork_report'] LOOP
        EXECUTE format('CREATE TRIGGER no_update_delete BEFORE UPDATE OR DELETE ON ledger.%I '
                       'FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()', t);
        EXECUTE format('CREATE TRIGGER no_truncate BEFORE TRUNCATE ON ledger.%I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER no_update_delete', t);
        EXECUTE format('ALTER TABLE ledger.%I ENABLE ALWAYS TRIGGER no_truncate', t);
        EXECUTE format('ALTER TABLE ledger.%I OWNER TO ledger_owner', t);
        EXECUTE format('REVOKE ALL ON ledger.%I FROM PUBLIC', t);
    END LOOP;
END $$;

GRANT SELECT, INSERT ON ledger.key_retirement, ledger.cosignature, ledger.fork_report
    TO ledger_sequencer;
GRANT SELECT ON ledger.key_retirement, ledger.cosignature, ledger.fork_report TO ledger_reader;
-- The exchange hands the latest cosigned checkpoint to DMS clients with receipts and Track, so
-- that they can monitor the log (public data: notes are meant to be gossiped).
GRANT USAGE ON SCHEMA ledger TO app_writer;
GRANT SELECT ON ledger.checkpoint, ledger.cosignature TO app_writer;
