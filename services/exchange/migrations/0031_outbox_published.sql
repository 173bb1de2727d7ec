-- A copy's outbox row the relay published, kept until the copy is marked queued: the relay marks
-- the copies of its batch it can lock at once and leaves the others (a push's claim or an
-- acknowledgement holds them) for a later batch, instead of waiting for their transactions while
-- the next batch waits to be published. published_at is the relay's time (the copy's queued_at);
-- NULL: not published yet.
ALTER TABLE exchange.outbox ADD COLUMN published_at timestamptz;
CREATE INDEX outbox_to_publish ON exchange.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON exchange.outbox (id) WHERE published_at IS NOT NULL;
