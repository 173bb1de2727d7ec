"""Offline ledger verifier behind `docaxis audit verify`: receipts, full exports, consistency."""

from __future__ import annotations

from docaxis_client.ledger.policy import LogKey, PolicyError, TrustPolicy
from services.ledger.audit.cli import main
from services.ledger.audit.export import ExportError, ExportFolder, read_export, write_export
from services.ledger.audit.verify import (
    AuditReport,
    Divergence,
    DivergenceKind,
    Source,
    audit_entries,
    audit_export,
    parse_proof_lines,
    verify_checkpoint_consistency,
    verify_receipt_evidence,
)

__all__ = [
    "AuditReport",
    "Divergence",
    "DivergenceKind",
    "ExportError",
    "ExportFolder",
    "LogKey",
    "PolicyError",
    "Source",
    "TrustPolicy",
    "audit_entries",
    "audit_export",
    "main",
    "parse_proof_lines",
    "read_export",
    "verify_checkpoint_consistency",
    "verify_receipt_evidence",
    "write_export",
]
