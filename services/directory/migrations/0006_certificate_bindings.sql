-- Certificates bound to agencies (national-CA certificates carry no docaxis identity): the key
-- (SHA-256 of the SubjectPublicKeyInfo) signs for one agency in one role. Binding and unbinding
-- are staged as `directory` ledger events in the same transaction.
CREATE TABLE directory.certificate_binding (
    spki_sha256 text        PRIMARY KEY CHECK (spki_sha256 ~ '^[0-9a-f]{64}$'),
    agency_code text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('person', 'organization')),
    subject     text        NOT NULL,
    issuer      text        NOT NULL,
    serial      text        NOT NULL,
    not_after   timestamptz,
    bound_by    text        NOT NULL,
    bound_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificate_binding_agency ON directory.certificate_binding (agency_code);
