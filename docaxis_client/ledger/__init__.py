"""Verifying the docaxis ledger offline: RFC 6962 Merkle proofs, signed checkpoints (C2SP
notes), receipts, entries and the auditor's trust policy. Shared by the services, the gateway
and auditors."""
