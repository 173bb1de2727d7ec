-- migration: no transaction
-- What waits for each peer hub (ListPeers) read every notice not yet acknowledged, with its copy
-- and document, to find those that go to a peer (9,700-12,800 rows of the plan test's history,
-- docs/perf/README.md, "The reads left unbounded"): a notice did not know its hop. It now keeps
-- it (NULL: the agency is served here), as postgres_lifecycle.stage_notices and an
-- acknowledgement's notices route it, and the waiting ones of each peer have an index; so do the
-- copies waiting for a peer (delivery_via_hub holds every copy ever forwarded). The delivery
-- path's notices and copies (an agency of this hub) never enter either index.
--
-- Outside a transaction, built CONCURRENTLY (postgres.NO_TRANSACTION, migration 0036); each
-- statement may run again if the migration is interrupted.
ALTER TABLE exchange.notice ADD COLUMN IF NOT EXISTS via_hub text;

DROP INDEX CONCURRENTLY IF EXISTS exchange.notice_to_peer;
CREATE INDEX CONCURRENTLY notice_to_peer ON exchange.notice (via_hub, created_at)
    WHERE acknowledged_at IS NULL AND via_hub IS NOT NULL;

DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_to_peer;
CREATE INDEX CONCURRENTLY delivery_to_peer ON exchange.delivery (via_hub, accepted_at)
    WHERE via_hub IS NOT NULL AND state IN ('accepted', 'queued', 'pushed');

-- The notices waiting before (through notice_pending), and those a process of the previous
-- version (which stores no hop) staged meanwhile: the hop ListPeers counted them for.
UPDATE exchange.notice n
SET via_hub = CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END
FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE n.acknowledged_at IS NULL AND n.via_hub IS NULL AND d.id = n.delivery_id
    AND CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END IS NOT NULL;

-- The orphan blob sweep read every blob older than its idle time, the hub's whole history of
-- attachments, at every sweep (blob.created_at had no index). A document's attachments are never
-- deleted, so a blob a document uses stays so: the sweep marks it on its first look and reads
-- only the blobs no document is known to use (postgres_uploads.discard_orphan_blobs). Every blob
-- stored before is in the index until the first sweep after this migration has looked at it
-- (one walk of them, in batches); the column's constant default writes no row.
ALTER TABLE exchange.blob ADD COLUMN IF NOT EXISTS known_in_use boolean NOT NULL DEFAULT false;

DROP INDEX CONCURRENTLY IF EXISTS exchange.blob_unused;
CREATE INDEX CONCURRENTLY blob_unused ON exchange.blob (created_at, sha256)
    WHERE NOT known_in_use;

-- The console's search by the state failed or withdrawn walked the documents newest first until
-- a page had a copy in it (no index has either state): their documents come from their copies
-- now (postgres_admin._OF_STATE). A copy ends so by a recall or a failure to place it, never on
-- the delivery path.
DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_ended;
CREATE INDEX CONCURRENTLY delivery_ended ON exchange.delivery (document_uuid)
    WHERE state IN ('failed', 'withdrawn');
