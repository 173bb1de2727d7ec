"""The pure ledger core: Merkle tree, tiles, signed notes, entries and receipts (no I/O)."""
