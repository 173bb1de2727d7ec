"""Ledger use cases over the store."""
