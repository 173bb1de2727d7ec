-- Certificate revocation lists ingested by administrators: the newest CRL of each issuing CA
-- (keyed by the SHA-256 of its public key, so a renewed CA certificate keeps its CRL). Every
-- docaxis process loads them at startup and reloads on NOTIFY directory_crl.
CREATE TABLE directory.crl (
    issuer_key_id text        PRIMARY KEY,
    issuer        text        NOT NULL,
    -- CRL numbers are up to 20 octets (RFC 5280 §5.2.3): wider than bigint.
    crl_number    numeric     NOT NULL,
    this_update   timestamptz NOT NULL,
    next_update   timestamptz,
    revoked_count integer     NOT NULL,
    der           bytea       NOT NULL,
    ingested_at   timestamptz NOT NULL DEFAULT now()
);
