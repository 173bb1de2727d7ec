-- A copy withdrawn before receipt could be acknowledged until issue 17 (and then got a transport
-- receipt): the hub attested a pickup that never legitimately happened. Such copies were never
-- received; they lose the acknowledgement time and the receipt (the ledger keeps its record of
-- what happened).
UPDATE exchange.delivery SET acknowledged_at = NULL, transport_receipt = NULL
WHERE recall_state = 'withdrawn' AND acknowledged_at IS NOT NULL;
