"""Unit tests of the pure ledger core and the offline audit verifier."""
