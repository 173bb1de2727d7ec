-- Federation: a copy whose recipient another hub serves is forwarded to that peer hub (its next
-- hop), and waits in the peer's queue rather than an agency's inbox.
ALTER TABLE exchange.delivery ADD COLUMN via_hub text;
