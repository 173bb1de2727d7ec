-- migration: no transaction
-- A process of a version before 0037 stages notices to a peer without their hop (notice.via_hub,
-- which ListPeers counts them by). The notice-hops job walked every waiting notice over and over,
-- in every process, for ever (service_layer/notice_hops.py); it now walks, as the copies' due
-- dates are walked (0038, copy_due_date_walk), only the notices such a process may have staged
-- since this migration, once, and stops for good a day after it.
--
-- Outside a transaction (postgres.NO_TRANSACTION: the index is built CONCURRENTLY); each
-- statement may run again if the migration is interrupted.
--
-- Which notices a process of an earlier version staged: it names no hop_kept, so its notices
-- take the column's default, false, where this version's always write true (postgres_lifecycle,
-- postgres_acknowledgements). The rows before read true (a constant default: no row is written);
-- one statement, so no notice is staged between the two defaults, and ALTER TABLE's lock waits
-- for the transactions staging notices meanwhile: any notice read true is committed before the
-- backfill below reads the table.
ALTER TABLE exchange.notice ADD COLUMN IF NOT EXISTS hop_kept boolean NOT NULL DEFAULT true,
    ALTER COLUMN hop_kept SET DEFAULT false;

-- Where the walk is. The window begins now (less a minute: a notice's transaction commits a
-- little after its created_at), not at 0037's start (which 0037 recorded nowhere but as its end,
-- schema_migrations.applied_at): the backfill below gives their hop to the notices waiting so far,
-- and the notices staged from here on by a process of an earlier version are in the walk's index.
-- Sound however long ago 0037 ran: the first process of this version applies every migration
-- it lacks before it starts (services/cli.py), and the processes of the version before run
-- until the rolling upgrade is over, within a day of this migration (UPGRADE_WINDOW):
-- - a hub upgraded from before 0037 applies 0037, 0038 and 0039 in one go, and its processes of
--   that version stage notices without their hop until a day after this migration, not after
--   0037 (a window from 0037's time would end early by 0038's backfills, hours on a big hub);
-- - a hub already past 0037 runs processes that keep their hops: the walk reads the day's
--   notices they stage (those still waiting), finds each one's hop kept and writes none.
-- walked_to begins before every notice: the index holds only the notices staged after the
-- defaults changed, whatever their created_at (a process's clock may be behind the database's).
CREATE TABLE IF NOT EXISTS exchange.notice_hop_walk (
    one       boolean     PRIMARY KEY DEFAULT true CHECK (one),
    began_at  timestamptz NOT NULL,
    walked_to timestamptz NOT NULL
);
INSERT INTO exchange.notice_hop_walk (began_at, walked_to)
VALUES (now() - interval '1 minute', '-infinity')
ON CONFLICT (one) DO NOTHING;

-- The notices waiting now without a hop that go to a peer, as 0037's backfill routed them (it
-- read the hub's waiting notices once; so does this): those a process of a version before 0037
-- staged after 0037's backfill, up to this one; after the defaults changed, so that every
-- notice is either seen here or in the index below.
UPDATE exchange.notice n
SET via_hub = CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END
FROM exchange.delivery d JOIN exchange.document doc ON doc.uuid = d.document_uuid
WHERE n.acknowledged_at IS NULL AND n.via_hub IS NULL AND d.id = n.delivery_id
    AND CASE WHEN n.agency = d.recipient THEN d.via_hub ELSE doc.from_hub END IS NOT NULL;

-- The walk's order: the waiting notices a process of an earlier version staged, by their time.
-- This version's notices never enter it (the delivery path's included); an acknowledged notice
-- leaves it.
DROP INDEX CONCURRENTLY IF EXISTS exchange.notice_hop_unkept;
CREATE INDEX CONCURRENTLY notice_hop_unkept ON exchange.notice (created_at)
    WHERE NOT hop_kept AND acknowledged_at IS NULL;
