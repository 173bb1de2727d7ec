"""`docaxis audit verify` arguments and dispatch: prints a JSON report, returns the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from docaxis_client.ledger.policy import PolicyError, TrustPolicy
from services.common.progress import Progress
from services.ledger.audit.verify import (
    SELF_TRUST_WARNING,
    AuditReport,
    Divergence,
    DivergenceKind,
    audit_export,
    parse_proof_lines,
    verify_checkpoint_consistency,
    verify_receipt_evidence,
)


def build_parser(prog: str = "docaxis audit verify") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Verify docaxis ledger evidence offline against a trust policy you obtained "
        "out of band. Exit 0 = verified, 1 = divergence found, 2 = unusable input, 3 = verified "
        "only against the export's own keys (no --trust-policy: proves nothing about who wrote "
        "it), 4 = checkpoints signed by keys your policy does not name. The JSON report goes to "
        "stdout (or --output).",
    )
    parser.add_argument("--output", type=Path, help="write the JSON report here instead")
    modes = parser.add_subparsers(dest="mode", required=True)

    def trust(sub: argparse.ArgumentParser, required: bool) -> None:
        sub.add_argument(
            "--trust-policy",
            type=Path,
            required=False,
            help="trust-policy.json obtained out of band: log keys with validity windows, "
            "witness keys and a quorum"
            + ("" if required else " (without it: the export's own keys, exit status 3)"),
        )
        sub.add_argument("--origin", help="log origin, with --vkey instead of --trust-policy")
        sub.add_argument("--vkey", action="append", default=[], help="log verifier key")

    receipt = modes.add_parser("receipt", help="one entry body against its .tlog-proof receipt")
    receipt.add_argument("--entry", type=Path, required=True, help="exact entry body bytes")
    receipt.add_argument("--receipt", type=Path, required=True, help="c2sp.org/tlog-proof@v1")
    trust(receipt, required=True)

    full = modes.add_parser("full", help="replay a whole export folder")
    full.add_argument("export", type=Path, help="folder with entries.bin and checkpoints/")
    full.add_argument(
        "--saved-checkpoint",
        type=Path,
        action="append",
        default=[],
        help="a checkpoint note you kept earlier; repeatable",
    )
    trust(full, required=False)

    consistency = modes.add_parser("consistency", help="a saved checkpoint against a newer one")
    consistency.add_argument("--old", type=Path, required=True, help="the note you saved")
    consistency.add_argument("--new", type=Path, required=True, help="the log's current note")
    consistency.add_argument(
        "--proof", type=Path, required=True, help="consistency proof, one base64 hash per line"
    )
    trust(consistency, required=True)
    return parser


class _InputError(Exception):
    pass


def _policy(args: argparse.Namespace) -> TrustPolicy | None:
    if args.trust_policy is not None:
        if args.vkey or args.origin:
            raise _InputError("use either --trust-policy or --origin/--vkey, not both")
        return TrustPolicy.load(args.trust_policy)
    if args.vkey or args.origin:
        if not (args.vkey and args.origin):
            raise _InputError("--origin and --vkey go together")
        return TrustPolicy.for_keys(args.origin, args.vkey)
    return None


def _required_policy(args: argparse.Namespace) -> TrustPolicy:
    policy = _policy(args)
    if policy is None:
        raise _InputError("a trust policy is required (--trust-policy or --origin/--vkey)")
    return policy


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _InputError(f"cannot read {path}: {exc.strerror}") from exc


def run(args: argparse.Namespace) -> AuditReport:
    try:
        if args.mode == "receipt":
            policy = _required_policy(args)
            return verify_receipt_evidence(_read(args.entry), _read(args.receipt), policy)
        if args.mode == "consistency":
            policy = _required_policy(args)
            try:
                proof = parse_proof_lines(_read(args.proof))
            except ValueError as exc:
                kind = DivergenceKind.PROOF_MALFORMED
                return AuditReport("consistency", Divergence(kind, str(exc)))
            return verify_checkpoint_consistency(_read(args.old), _read(args.new), proof, policy)
        saved = [_read(p) for p in args.saved_checkpoint]
        with Progress("verifying ledger entries") as progress:
            return audit_export(
                args.export,
                policy=_policy(args),
                saved_checkpoints=saved,
                progress=progress.advance,
            )
    except PolicyError as exc:
        return AuditReport(args.mode, Divergence(DivergenceKind.TRUST_POLICY_INVALID, str(exc)))
    except _InputError as exc:
        return AuditReport(args.mode, Divergence(DivergenceKind.INPUT_INVALID, str(exc)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point the `docaxis` CLI delegates to (argv without the `audit verify` words)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    report = run(args)
    if report.self_trusted:
        # First line, before any report: this result rests on keys the evidence chose itself.
        sys.stderr.write(SELF_TRUST_WARNING + "\n")
    text = report.to_json()
    if args.output is not None:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return report.exit_code
