"""Pure exchange model: documents, deliveries and their rules. No I/O."""
