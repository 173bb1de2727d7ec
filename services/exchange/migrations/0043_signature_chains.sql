-- The signatures' certificate chains, each stored once. A Submit's two signatures carry about
-- 3.2 KB of certificates (the agency's chain and the official's), the same with every document
-- of one signer, written with every document to document_signature and the WAL (docs/perf/
-- README.md, "Postgres's writes per document"). A signature may now keep, instead of its
-- certificates, the SHA-256 of its chain (chain_sha256, its certificate_chain NULL), the chain's
-- certificates stored once in exchange.signature_chain under that key
-- (services/exchange/adapters/signature_chains.py): what is served is the same certificates in
-- the same order, byte for byte. Rows stored before keep their chain inline and are read as
-- they are. As exchange.receipt_chain (0035): no foreign key (a chain row is never changed nor
-- deleted, and is written before, or in the statement of, the first signature naming it).
--
-- A rolling upgrade: a process of a version before this one reads certificate_chain only, so
-- it would serve a signature stored by reference without its chain. This version reads both
-- forms at once and writes references only once no such process can be running: the processes
-- of the version before run until the rolling upgrade is over, within a day (UPGRADE_WINDOW,
-- services/exchange/service_layer/upgrade_walks.py) of the last migration of the upgrade
-- that applied this one (signature_chain_writes below; SignatureChains.referring says how).
CREATE TABLE exchange.signature_chain (
    sha256 bytea PRIMARY KEY CHECK (octet_length(sha256) = 32),
    certificates bytea[] NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

-- Nullable, no default: no row is rewritten, and a process of the version before, which names
-- neither column, stores its chains inline as it did. Of the two forms a row has exactly one;
-- checked for rows written from now on only (NOT VALID: no scan of the table under its lock).
-- A reference leaves certificate_chain NULL rather than empty, so that a process of an earlier
-- version that reads it (a downgrade) fails on it rather than serve a signature without chain.
ALTER TABLE exchange.document_signature
    ADD COLUMN chain_sha256 bytea,
    ALTER COLUMN certificate_chain DROP NOT NULL,
    ADD CONSTRAINT signature_chain_one_form
        CHECK ((certificate_chain IS NULL) <> (chain_sha256 IS NULL)) NOT VALID;

-- When this version may begin to write references: UPGRADE_WINDOW after began_at, and after the
-- migrations applied within that window after it (the rest of the same upgrade's). began_at is
-- -infinity (at once) on a database whose exchange schema this very connection created, in the
-- run that applies this migration: no process of any earlier version has run against it (the
-- first process of a version applies every migration it lacks before it starts, services/cli.py;
-- the runner applies them on one connection, services/bootstrap/migrations.py).
CREATE TABLE exchange.signature_chain_writes (
    one      boolean     PRIMARY KEY DEFAULT true CHECK (one),
    began_at timestamptz NOT NULL
);
INSERT INTO exchange.signature_chain_writes (began_at)
SELECT CASE WHEN min(m.applied_at) >= (
        SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()
    ) THEN '-infinity'::timestamptz ELSE now() END
FROM public.schema_migrations m WHERE m.service = 'exchange'
ON CONFLICT (one) DO NOTHING;

-- What SignatureChains.referring reads: when 0043 began (NULL: -infinity) and the times of the
-- migrations applied since. A view, read with its owner's rights: the application's role has
-- none on public.schema_migrations.
CREATE VIEW exchange.signature_chain_writes_since AS
SELECT CASE WHEN isfinite(w.began_at) THEN w.began_at END AS began_at, m.applied_at
FROM exchange.signature_chain_writes w
LEFT JOIN public.schema_migrations m ON isfinite(w.began_at) AND m.applied_at >= w.began_at;
