-- Signature policies: which forms count as an agency's person and organisation signatures, legacy
-- algorithms, and the transport-attested mode. One row per agency and document type (0: every
-- type). Changes are staged as `directory` ledger events in the same transaction.
CREATE TABLE directory.signature_policy (
    agency_code             text        NOT NULL,
    document_type           integer     NOT NULL DEFAULT 0 CHECK (document_type >= 0),
    person_forms            text[]      NOT NULL,
    organization_forms      text[]      NOT NULL,
    allow_legacy_algorithms boolean     NOT NULL DEFAULT false,
    transport_attested      boolean     NOT NULL DEFAULT false,
    updated_by              text        NOT NULL,
    updated_at              timestamptz NOT NULL,
    PRIMARY KEY (agency_code, document_type)
);
