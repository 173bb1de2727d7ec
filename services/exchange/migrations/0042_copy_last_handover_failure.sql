-- Federation: why a copy's last hand-over to the next hub failed and it went again (the peer
-- asked for it again, could not be reached, or answered with a receipt that did not prove the
-- hand-over): a reason code and a short detail, never a secret (delivery.handover_failure).
-- A copy the push limit then dead-letters keeps them, and the administrators' dead-letter
-- listing shows them beside MAX_PUSHES_EXCEEDED: the cause to act on. Written only when a
-- hand-over fails (forwarding.Forwarder), cleared by a resend or a re-route.
--
-- Safe for a rolling upgrade: nullable columns without a default are a catalogue change only
-- (no table rewrite, no scan; ADD COLUMN takes its ACCESS EXCLUSIVE lock for that instant), and
-- a process of the previous version names its columns, so it neither reads nor writes these
-- (its resends leave a stale failure, shown only beside a later MAX_PUSHES_EXCEEDED). No index:
-- the listing reads them from rows it finds by its own indexes.
ALTER TABLE exchange.delivery
    ADD COLUMN last_failure_reason text,
    ADD COLUMN last_failure_detail text;
