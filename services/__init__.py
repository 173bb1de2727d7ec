"""docaxis services: directory, exchange and ledger."""
