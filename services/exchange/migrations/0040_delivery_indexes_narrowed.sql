-- migration: no transaction
-- delivery_requested_recipient held every copy, and every copy's state change is a new row
-- version with an entry in each index (none is HOT: `state` is in most of them): 6 of a bench
-- document's 202 WAL records, 461 of its 36,360 bytes (docs/perf/README.md, "Postgres's writes
-- per document"). Its one reader, the console's search by recipient, reads the copies of the
-- agency as recipient (delivery_by_recipient, below) and, beside them, those requested of it that went to
-- another (a successor, after a merger: admin search's _OF_RECIPIENT); a copy whose requested
-- recipient is its recipient is found by the first branch already. The index now holds only
-- those others: most copies, and all of the bench's, never enter it.
--
-- Rolling upgrade: a process of the previous version writes copies as before (Postgres keeps
-- the index), and its search by recipient, which does not say `requested_recipient <>
-- recipient`, can no longer probe the index: it reads the copies whole, for an operator's
-- search with a recipient filter, until the process is replaced; its answers are the same.
--
-- Outside a transaction, built CONCURRENTLY (postgres.NO_TRANSACTION, migration 0036); each
-- statement may run again if the migration is interrupted.
DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_requested_elsewhere;
CREATE INDEX CONCURRENTLY delivery_requested_elsewhere ON exchange.delivery (requested_recipient)
    WHERE requested_recipient <> recipient;

DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_requested_recipient;

-- delivery_inbox (recipient, state, accepted_at) took each new version of a copy at another
-- place, its state's, in the middle of the recipient's range: 131 of its pages split in the
-- bench's 30-s step (219 bytes of WAL a document), and it was six times the primary key's size
-- (1.2 MB for 4,400 copies). No statement needs the state in it: those of a recipient's copies
-- in a state read delivery_pending, delivery_registration or the dead letters' indexes, whose
-- predicates hold the state; the others read a recipient's copies (the console's search, Track's
-- links). Keyed (recipient, accepted_at), the versions of one copy have one key, which btree
-- deduplication keeps in one posting list instead of splitting pages. A process of the previous
-- version reads a recipient's copies by the new index's first column as it read the old one's.
DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_by_recipient;
CREATE INDEX CONCURRENTLY delivery_by_recipient ON exchange.delivery (recipient, accepted_at);

DROP INDEX CONCURRENTLY IF EXISTS exchange.delivery_inbox;
