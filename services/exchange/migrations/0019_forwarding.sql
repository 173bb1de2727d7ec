-- Federation: documents that came from a peer hub, the copies handed over to one, and the hops.
-- A document forwarded here keeps the uuid it has at the hub it was first submitted to
-- (origin_uuid) and the peer it came from; statuses for its sender go back to that peer.
ALTER TABLE exchange.document ADD COLUMN origin_uuid uuid;
ALTER TABLE exchange.document ADD COLUMN from_hub text;
-- The edXML TraceHeader: [{"hub": code, "at": iso time}, ...], oldest first.
ALTER TABLE exchange.document ADD COLUMN trace jsonb NOT NULL DEFAULT '[]';
CREATE UNIQUE INDEX document_origin ON exchange.document (origin_uuid) WHERE origin_uuid IS NOT NULL;

-- The next hub's signed receipt of a copy handed over to it (kept by the sending hub).
ALTER TABLE exchange.delivery ADD COLUMN hop_receipt bytea;

-- Each forwarded copy accepted here, once per (origin document, recipient), whatever the retries
-- and duplicate forwards, with the receipt this hub signed for it (answered again to a retry).
CREATE TABLE exchange.forwarded_copy (
    origin_uuid  uuid        NOT NULL,
    recipient    text        NOT NULL,
    from_hub     text        NOT NULL,
    delivery_id  uuid        NOT NULL REFERENCES exchange.delivery (id),
    hop_receipt  bytea       NOT NULL,
    accepted_at  timestamptz NOT NULL,
    PRIMARY KEY (origin_uuid, recipient)
);
