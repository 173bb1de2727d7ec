-- Staging table for ledger events (ledger.md §4): business transactions insert here, in the same
-- transaction as the state change; the sequencer moves rows into the Merkle log in batches.
CREATE SCHEMA IF NOT EXISTS ledger;

CREATE TABLE ledger.pending (
    id          bigserial   PRIMARY KEY,
    entry_type  text        NOT NULL,
    doc_uuid    uuid,
    document_id text        NOT NULL DEFAULT '',
    from_agency text        NOT NULL DEFAULT '',
    to_agency   text        NOT NULL DEFAULT '',
    actor       text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb       NOT NULL DEFAULT '{}'
);
