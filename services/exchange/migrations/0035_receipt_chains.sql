-- The hub's certificate chains as its transport receipts carry them, each stored once. A receipt
-- is about 2.6 KB, of which about 2 KB is the chain (base64 DER in a JSON array), the same for
-- every receipt of one hub key; it was written with every acknowledged copy, to the row (out of
-- line: 0034) and the WAL. A copy's receipt is now stored with "chain": "sha256:<hex>" in the
-- place of that array, the SHA-256 of `chain`, the array's exact JSON bytes: the served receipt
-- is the stored one with the array put back, byte for byte what the hub signed and handed out
-- before (services/exchange/adapters/receipt_chains.py). Receipts stored before keep their
-- array and are served as they are. No foreign key: a row is never changed nor deleted, is
-- written before (or in the transaction of) the first receipt naming it, and a key checked on
-- every acknowledgement would lock the one row every acknowledgement names.
CREATE TABLE exchange.receipt_chain (
    sha256 bytea PRIMARY KEY CHECK (octet_length(sha256) = 32),
    chain bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);
