-- A copy's transport receipt (the hub's signed receipt, about 2.6 KB with the hub's certificate)
-- is stored out of line without trying to compress it first. Each acknowledgement stores one,
-- and pglz tried each and gave up (none of 2,424 in a bench run was stored compressed: it
-- saves less than pglz asks of it), then stored it out of line anyway: that try was about 1 %
-- of Postgres's CPU on the delivery path (docs/perf/README.md, "Postgres's CPU per document").
-- Only the storage of values written from now on changes; nothing is rewritten.
ALTER TABLE exchange.delivery ALTER COLUMN transport_receipt SET STORAGE EXTERNAL;
