-- Hub-signed transport receipts: issued when the recipient acknowledges, kept with the delivery.
-- The first receipt stored is the one every later request gets (a receipt never changes).
ALTER TABLE exchange.delivery ADD COLUMN transport_receipt bytea;
