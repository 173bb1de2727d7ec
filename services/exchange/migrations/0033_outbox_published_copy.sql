-- A copy's time of publish, read by the claim of a pull-mode fetch (or of a message that does
-- not carry it) to record the copy queued at that time before it records it pushed, as a
-- stream's claim does from the message: without it the copy waited for the relay's later pass
-- (up to about 2 s), pushed before queued in the ledger, and shown accepted by Track meanwhile.
CREATE INDEX outbox_published_copy ON exchange.outbox (delivery_id) WHERE published_at IS NOT NULL;
