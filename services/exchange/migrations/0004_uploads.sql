-- Resumable uploads: chunks land in exchange.blob_chunk under the upload's storage id as they
-- arrive, each in its own transaction, so a broken link loses at most the chunk in flight. A
-- completed upload's bytes were verified against its SHA-256 and became (or matched) a blob.
CREATE TABLE exchange.upload (
    id             uuid        PRIMARY KEY,
    agency         text        NOT NULL,
    sha256         text        NOT NULL,
    size           bigint      NOT NULL CHECK (size > 0),
    storage_id     uuid        NOT NULL,
    committed_size bigint      NOT NULL DEFAULT 0,
    completed_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT committed_within_size CHECK (committed_size BETWEEN 0 AND size)
);

-- One unfinished upload per agency and content: BeginUpload resumes it.
CREATE UNIQUE INDEX upload_unfinished ON exchange.upload (agency, sha256, size)
    WHERE completed_at IS NULL;
