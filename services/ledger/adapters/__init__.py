"""Ledger adapters: Postgres."""
