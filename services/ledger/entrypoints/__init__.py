"""Ledger entrypoints: the writer (sequencer + checkpoint publisher) and the gRPC read API."""
