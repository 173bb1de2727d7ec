"""The offline verifier on synthetic exports: clean logs pass, every tampering is caught."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import json
from pathlib import Path

import pytest

from docaxis_client.ledger.entry import PrevRef, parse_entry
from docaxis_client.ledger.merkle import consistency_proof, hash_leaf, inclusion_proof
from docaxis_client.ledger.note import add_signatures
from docaxis_client.ledger.receipt import build_receipt
from services.ledger.audit import (
    AuditReport,
    DivergenceKind,
    Source,
    TrustPolicy,
    audit_entries,
    audit_export,
    main,
    parse_proof_lines,
    verify_checkpoint_consistency,
    verify_receipt_evidence,
)
from services.ledger.audit.export import read_export
from services.ledger.domain.tiles import encode_entries
from tests.unit.ledger.synthetic import (
    SyntheticLog,
    checkpoint_note,
    doc_id,
    fixed_signer,
    make_entry,
    policy_for,
    relink,
    synthetic_log,
)

SIZES = (0, 1, 64, 100, 257, 300)


@functools.cache
def log() -> SyntheticLog:
    return synthetic_log(300, SIZES)


def audit(
    bodies: list[bytes],
    notes: list[bytes] | None = None,
    saved: list[bytes] | None = None,
    policy: TrustPolicy | None = None,
) -> AuditReport:
    checkpoints = {int(n.split(b"\n")[1]): n for n in (log().notes if notes is None else notes)}
    return audit_entries(encode_entries(bodies), checkpoints, policy or policy_for(), saved or [])


def kind_of(report: AuditReport) -> DivergenceKind | None:
    return None if report.divergence is None else report.divergence.kind


def edited(bodies: list[bytes], index: int) -> list[bytes]:
    """Entry `index` rewritten (still canonical, still valid) with all later prev links fixed."""
    entry = parse_entry(bodies[index])
    forged = dataclasses.replace(entry, data={**entry.data, "note": "forged"}).encode()
    return relink([*bodies[:index], forged, *bodies[index + 1 :]])


def test_a_clean_export_passes_with_every_checkpoint_verified(tmp_path: Path) -> None:
    """Export written, read back and replayed: all checkpoints and saved checkpoints match."""
    path = log().write(tmp_path / "export")
    assert sorted(read_export(path).checkpoints) == list(SIZES)
    report = audit_export(path, policy=policy_for(), saved_checkpoints=log().notes[2:4])
    assert report.ok, report.to_json()
    assert report.details["entries"] == 300
    assert report.details["checkpoints_verified"] == len(SIZES)
    assert report.details["saved_checkpoints_verified"] == 2
    assert report.details["documents"] == 7
    assert report.details["trust_policy"] == "given"
    assert report.details["unsigned_tail"] == 0
    assert report.exit_code == 0


def test_an_edited_entry_is_caught_by_the_checkpoints_signed_before_the_edit() -> None:
    """A superuser edits entry 150, relinks prev pointers and rebuilds the tree: the first
    checkpoint covering 150 no longer matches the rebuilt root."""
    report = audit(edited(log().bodies, 150))
    assert kind_of(report) is DivergenceKind.CHECKPOINT_ROOT_MISMATCH
    assert report.divergence is not None
    assert (report.divergence.index, report.divergence.checkpoint_size) == (100, 257)
    assert report.details["last_verified_checkpoint"] == 100


def test_an_edit_re_signed_with_the_log_key_is_caught_by_a_checkpoint_the_auditor_saved() -> None:
    """Even an operator holding the log key, who re-signs every checkpoint, cannot match the
    checkpoint an auditor kept from before the edit."""
    forged = edited(log().bodies, 150)
    resigned = [checkpoint_note(forged, s) for s in SIZES]
    assert audit(forged, resigned).ok  # the export alone is self-consistent
    report = audit(forged, resigned, saved=[log().notes[SIZES.index(257)]])
    assert kind_of(report) is DivergenceKind.SAVED_CHECKPOINT_ROOT_MISMATCH
    assert report.divergence is not None
    assert report.divergence.source is Source.SAVED
    assert report.divergence.checkpoint_size == 257


def test_a_restore_that_dropped_published_entries_is_caught() -> None:
    """Entries 200.. lost (and the later checkpoints with them): the auditor's saved
    checkpoint at 257 is beyond the export; the export's own at 257 would be too."""
    kept = log().bodies[:200]
    notes = [n for n, s in zip(log().notes, SIZES, strict=True) if s <= 200]
    report = audit(kept, notes, saved=[log().notes[SIZES.index(257)]])
    assert kind_of(report) is DivergenceKind.SAVED_CHECKPOINT_BEYOND_EXPORT
    assert report.divergence is not None
    assert (report.divergence.index, report.divergence.checkpoint_size) == (200, 257)
    assert kind_of(audit(kept)) is DivergenceKind.CHECKPOINT_BEYOND_ENTRIES


def _chain_with(index: int, prev: PrevRef | None) -> list[bytes]:
    bodies = list(log().bodies)
    entry = parse_entry(bodies[index])
    bodies[index] = dataclasses.replace(entry, prev=prev).encode()
    return bodies


@pytest.mark.parametrize(
    ("index", "prev", "kind"),
    [
        # document 0 has entries 0, 7, 21, 28, ... (14 is a directory entry)
        (21, None, DivergenceKind.PREV_MISSING),
        (21, PrevRef(0, b"\x00" * 32), DivergenceKind.PREV_MISMATCH),  # skips 7: a gap
        (28, PrevRef(7, b"\x00" * 32), DivergenceKind.PREV_MISMATCH),  # 21 and 28 fork at 7
        (21, PrevRef(7, b"\x00" * 32), DivergenceKind.PREV_LEAF_MISMATCH),
        (0, PrevRef(0, b"\x00" * 32), DivergenceKind.PREV_UNEXPECTED),
    ],
)
def test_a_broken_prev_chain_is_reported_at_the_entry(
    index: int, prev: PrevRef | None, kind: DivergenceKind
) -> None:
    """Missing, skipping, forking or mis-hashed back-pointers name the offending entry."""
    assert parse_entry(log().bodies[index]).doc == doc_id(0)
    bodies = _chain_with(index, prev)
    report = audit(bodies, [checkpoint_note(bodies, s) for s in SIZES])
    assert kind_of(report) is kind
    assert report.divergence is not None
    assert report.divergence.index == index


def test_a_bad_checkpoint_signature_is_caught_in_log_order() -> None:
    """A flipped signature byte at size 100 is reported there, before later checks."""
    notes = list(log().notes)
    i = SIZES.index(100)
    notes[i] = notes[i][:-10] + (b"A" if notes[i][-10:-9] != b"A" else b"B") + notes[i][-9:]
    report = audit(list(log().bodies), notes)
    assert kind_of(report) is DivergenceKind.CHECKPOINT_SIGNATURE_INVALID
    assert report.divergence is not None
    assert report.divergence.checkpoint_size == 100


def test_a_checkpoint_signed_only_by_an_unknown_key_is_not_evidence() -> None:
    """Another key's checkpoint (even with a matching root) fails; cosignatures are fine."""
    stranger = fixed_signer(seed="stranger")
    notes = list(log().notes)
    notes[2] = checkpoint_note(log().bodies, SIZES[2], [stranger])
    report = audit(list(log().bodies), notes)
    assert kind_of(report) is DivergenceKind.CHECKPOINT_KEY_UNTRUSTED
    assert report.exit_code == 4
    cosigned = [add_signatures(n, [stranger]) for n in log().notes]
    assert audit(list(log().bodies), cosigned).ok


def test_a_retired_key_cannot_vouch_for_entries_logged_after_it_retired() -> None:
    """valid_until before the newest covered entry's logged_at fails that checkpoint."""
    retired_at = parse_entry(log().bodies[80]).logged_at
    report = audit(list(log().bodies), policy=policy_for(valid_until=retired_at))
    assert kind_of(report) is DivergenceKind.CHECKPOINT_KEY_EXPIRED
    assert report.divergence is not None
    assert report.divergence.checkpoint_size == 100


def test_non_canonical_or_foreign_entries_and_time_travel_are_caught() -> None:
    """Each entry must re-encode exactly, belong to this log and not go back in time."""
    bodies = list(log().bodies)
    bodies[42] = bodies[42].replace(b'","', b'", "', 1)
    assert kind_of(audit(bodies)) is DivergenceKind.ENTRY_NOT_CANONICAL
    foreign = dataclasses.replace(parse_entry(log().bodies[42]), log="other.example/v1")
    bodies[42] = foreign.encode()
    assert kind_of(audit(bodies)) is DivergenceKind.ENTRY_WRONG_LOG
    early = make_entry(42, None, None)
    bodies[42] = dataclasses.replace(
        early, logged_at=early.logged_at - dt.timedelta(hours=1)
    ).encode()
    report = audit(bodies)
    assert kind_of(report) is DivergenceKind.LOGGED_AT_NOT_MONOTONE
    assert report.divergence is not None
    assert report.divergence.index == 42


def test_a_truncated_entries_file_is_reported_at_the_last_whole_entry() -> None:
    """A cut inside entry 10 reports entries_truncated at index 10."""
    data = encode_entries(log().bodies[:11])[:-3]
    report = audit_entries(data, {}, policy_for())
    assert kind_of(report) is DivergenceKind.ENTRIES_TRUNCATED
    assert report.divergence is not None
    assert report.divergence.index == 10


def test_consistency_mode_accepts_growth_and_catches_shrinking_and_forks() -> None:
    """Old saved checkpoint vs new: valid proof passes; a smaller or forked log fails."""
    notes = dict(zip(SIZES, log().notes, strict=True))
    tree = log().tree()
    policy = policy_for()
    proof = consistency_proof(tree, 100, 300)
    assert verify_checkpoint_consistency(notes[100], notes[300], proof, policy).ok
    assert verify_checkpoint_consistency(notes[0], notes[64], [], policy).ok
    shrunk = verify_checkpoint_consistency(notes[257], notes[100], [], policy)
    assert kind_of(shrunk) is DivergenceKind.SIZE_REGRESSED
    forked = checkpoint_note(edited(log().bodies, 50), 300)
    report = verify_checkpoint_consistency(notes[100], forked, proof, policy)
    assert kind_of(report) is DivergenceKind.INCONSISTENT


def test_receipt_mode_verifies_an_entry_and_catches_a_tampered_body() -> None:
    """The evidence unit handed to agencies verifies offline, and only for its own bytes."""
    receipt = build_receipt(123, inclusion_proof(log().tree(), 123, 300), log().notes[-1])
    report = verify_receipt_evidence(log().bodies[123], receipt, policy_for())
    assert report.ok, report.to_json()
    assert report.details["leaf_hash"] is not None
    tampered = edited(log().bodies, 123)[123]
    bad = verify_receipt_evidence(tampered, receipt, policy_for())
    assert kind_of(bad) is DivergenceKind.INCLUSION_INVALID
    other_key = TrustPolicy.for_keys(policy_for().origin, [fixed_signer(seed="x").verifier.vkey])
    assert kind_of(verify_receipt_evidence(log().bodies[123], receipt, other_key)) is (
        DivergenceKind.CHECKPOINT_KEY_UNTRUSTED
    )
    assert kind_of(verify_receipt_evidence(log().bodies[123], b"junk", policy_for())) is (
        DivergenceKind.RECEIPT_MALFORMED
    )


def test_the_trust_policy_round_trips_and_refuses_unknown_fields() -> None:
    """A future policy field (e.g. a witness quorum) fails closed instead of being ignored."""
    policy = policy_for(valid_until=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert TrustPolicy.from_json(policy.to_json()) == policy
    doc = json.loads(policy.to_json())
    doc["witness_quorum"] = 2
    with pytest.raises(ValueError, match="exactly the fields"):
        TrustPolicy.from_json(json.dumps(doc))


def test_the_command_line_prints_a_json_report_and_sets_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 0 on a clean export, 1 on a divergence, 2 on unusable input; JSON on stdout."""
    path = log().write(tmp_path / "export")
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(policy_for().to_json())
    saved = tmp_path / "257.note"
    saved.write_bytes(log().notes[SIZES.index(257)])
    assert (
        main(
            [
                "full",
                str(path),
                "--trust-policy",
                str(policy_file),
                "--saved-checkpoint",
                str(saved),
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    assert out["details"]["trust_policy"] == "given"

    assert main(["full", str(path)]) == 3
    captured = capsys.readouterr()
    assert captured.err.startswith("UNTRUSTED: no outside trust policy")
    assert json.loads(captured.out)["trust"] == "export-self-signed"

    (path / "entries.bin").write_bytes(encode_entries(log().bodies[:200]))
    assert main(["full", str(path), "--saved-checkpoint", str(saved)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["divergence"]["kind"] == "checkpoint_beyond_entries"
    assert out["divergence"]["index"] == 200

    assert main(["full", str(tmp_path / "missing")]) == 2
    assert json.loads(capsys.readouterr().out)["divergence"]["kind"] == "export_malformed"
    assert main(["receipt", "--entry", "x", "--receipt", "y"]) == 2
    assert "trust policy is required" in capsys.readouterr().out
    assert main(["bogus"]) == 2
    capsys.readouterr()


def test_the_command_line_checks_receipts_and_consistency_with_a_bare_vkey(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--origin/--vkey stands in for a policy file; proofs are one base64 hash per line."""
    vkey = ["--origin", policy_for().origin, "--vkey", fixed_signer().verifier.vkey]
    entry, receipt = tmp_path / "entry.json", tmp_path / "entry.tlog-proof"
    entry.write_bytes(log().bodies[9])
    receipt.write_bytes(build_receipt(9, inclusion_proof(log().tree(), 9, 300), log().notes[-1]))
    assert main(["receipt", "--entry", str(entry), "--receipt", str(receipt), *vkey]) == 0

    old, new, proof = tmp_path / "old.note", tmp_path / "new.note", tmp_path / "proof.txt"
    old.write_bytes(log().notes[SIZES.index(64)])
    new.write_bytes(log().notes[-1])
    hashes = consistency_proof(log().tree(), 64, 300)
    proof.write_text("".join(f"{h}\n" for h in _b64_lines(hashes)))
    assert parse_proof_lines(proof.read_bytes()) == hashes
    assert (
        main(["consistency", "--old", str(old), "--new", str(new), "--proof", str(proof), *vkey])
        == 0
    )
    capsys.readouterr()
    proof.write_text("not a hash\n")
    assert (
        main(["consistency", "--old", str(old), "--new", str(new), "--proof", str(proof), *vkey])
        == 1
    )
    assert json.loads(capsys.readouterr().out)["divergence"]["kind"] == "proof_malformed"


def _b64_lines(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def test_leaf_hashes_in_reports_are_those_of_the_exact_bytes() -> None:
    """The receipt report's leaf hash is SHA-256(0x00 || body), the value clients compare."""
    receipt = build_receipt(0, [], log().notes[SIZES.index(1)])
    report = verify_receipt_evidence(log().bodies[0], receipt, policy_for())
    assert report.details["leaf_hash"] == base64.b64encode(hash_leaf(log().bodies[0])).decode()
