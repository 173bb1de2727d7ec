"""The tamper-evident ledger: an RFC 6962 Merkle log of every state change."""
