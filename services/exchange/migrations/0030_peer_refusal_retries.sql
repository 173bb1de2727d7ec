-- Federation: a copy the next hub refused for a reason that may pass (its directory does not know
-- the recipient yet) is handed over again at retry_at, with back-off, until a time bound from its
-- acceptance (DOCAXIS_PEER_REFUSAL_WINDOW_S); refusals counts those refusals (the back-off).
ALTER TABLE exchange.delivery ADD COLUMN retry_at timestamptz;
ALTER TABLE exchange.delivery ADD COLUMN refusals integer NOT NULL DEFAULT 0;
-- The copies each peer's forwarder is to hand over again, by when.
CREATE INDEX delivery_retry_at ON exchange.delivery (via_hub, retry_at) WHERE retry_at IS NOT NULL;
