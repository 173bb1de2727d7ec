-- Uploads no document uses count against the agency's quota and are swept after
-- DOCAXIS_UPLOAD_TTL_S (issue 17, finding 8): when each agency last proved it holds a blob, and
-- indexes to find an agency's blobs and the blobs no document uses.
ALTER TABLE exchange.blob_owner ADD COLUMN owned_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX blob_owner_agency ON exchange.blob_owner (agency);
CREATE INDEX document_attachment_sha256 ON exchange.document_attachment (sha256);
