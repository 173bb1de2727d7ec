-- migration: no transaction
-- An agency's dead letters (ListDeadLetters for an agency: its copies' and its documents') and
-- a peer's (its resend, ListDeadLetters for a peer), each paged newest first from an index of its
-- own: an agency's pages read every dead letter of the hub until they held a page of its own,
-- and a peer's could (docs/perf/README.md, "The reads left unbounded"). The document's sender is
-- stored with the copy when the copy is dead-lettered (postgres_copies.save_sql), NULL on every
-- other copy. Each index is partial on the dead letters, which the delivery path's writes (its
-- copies accepted, queued, pushed, acknowledged) never enter.
--
-- Built CONCURRENTLY, outside a transaction (postgres.NO_TRANSACTION): a plain CREATE INDEX
-- blocks the copies' writes while it reads the whole table, and the ALTER TABLE would have held
-- its ACCESS EXCLUSIVE lock (reads blocked too) until the end of the migration's transaction.
-- Each statement may run again if the migration is interrupted.
ALTER TABLE exchange.delivery ADD COLUMN IF NOT EXISTS dead_letter_sender text;

DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_dead_letters_received;
CREATE INDEX CONCURRENTLY delivery_dead_letters_received
    ON exchange.delivery (recipient, dead_lettered_at DESC, id DESC)
    WHERE state = 'dead_lettered';

DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_dead_letters_sent;
CREATE INDEX CONCURRENTLY delivery_dead_letters_sent
    ON exchange.delivery (dead_letter_sender, dead_lettered_at DESC, id DESC)
    WHERE state = 'dead_lettered';

DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_dead_letters_via_hub;
CREATE INDEX CONCURRENTLY delivery_dead_letters_via_hub
    ON exchange.delivery (via_hub, dead_lettered_at, id)
    WHERE state = 'dead_lettered' AND via_hub IS NOT NULL;

-- The dead letters stored before (found through delivery_dead_lettered), and those a process of
-- the previous version (which stores no sender) dead-lettered meanwhile.
UPDATE exchange.delivery d SET dead_letter_sender = doc.sender
FROM exchange.document doc
WHERE d.state = 'dead_lettered' AND d.dead_letter_sender IS NULL AND doc.uuid = d.document_uuid;
