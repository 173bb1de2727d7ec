"""Issue 14's findings, each reproduced on a synthetic export and shown not to get through once
the auditor brings an outside policy with witnesses (the tamper matrix)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from docaxis_client.ledger.cosignature import (
    Cosigner,
    CosignerVerifier,
    InvalidCosignatureError,
    parse_signature_lines,
    verified_cosignatures,
)
from docaxis_client.ledger.entry import parse_entry
from docaxis_client.ledger.merkle import consistency_proof, hash_leaf, inclusion_proof
from docaxis_client.ledger.note import KeyFormatError, parse_note
from docaxis_client.ledger.policy import LogKey, PolicyError, TrustPolicy, WitnessKey
from docaxis_client.ledger.receipt import build_receipt
from services.ledger.audit import (
    AuditReport,
    DivergenceKind,
    audit_export,
    main,
    verify_checkpoint_consistency,
    verify_receipt_evidence,
)
from services.ledger.audit.export import (
    ENTRIES_FILE,
    INDEX_FILE,
    POLICY_FILE,
    format_index_line,
    read_export,
)
from services.ledger.audit.verify import ExitCode
from services.ledger.domain.tiles import encode_entries
from tests.unit.ledger.synthetic import (
    ORIGIN,
    T0,
    WITNESSED_AT,
    WITNESSES,
    SyntheticLog,
    cosigned,
    fixed_signer,
    relink,
    synthetic_log,
    witnessed_policy,
)

SIZES = (1, 64, 100, 257, 300)


@functools.cache
def honest() -> SyntheticLog:
    return synthetic_log(300, SIZES)


def honest_notes() -> list[bytes]:
    return [cosigned(n) for n in honest().notes]


def write(
    tmp_path: Path, bodies: list[bytes] | None = None, notes: list[bytes] | None = None
) -> Path:
    log = honest() if bodies is None else SyntheticLog(bodies, list(SIZES))
    return log.write(tmp_path / "export", honest_notes() if notes is None else notes)


def verify(path: Path, policy: TrustPolicy | None = None) -> AuditReport:
    return audit_export(path, policy=policy or witnessed_policy())


def kind_of(report: AuditReport) -> DivergenceKind | None:
    return None if report.divergence is None else report.divergence.kind


def test_an_honest_cosigned_export_verifies_against_the_auditors_policy(tmp_path: Path) -> None:
    report = verify(write(tmp_path))
    assert report.ok, report.to_json()
    assert report.exit_code == ExitCode.VERIFIED
    assert report.details["last_witnessed_at"] == WITNESSED_AT.isoformat()
    assert report.details["unsigned_tail"] == 0


# ---- the tamper matrix ----------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray((path / ENTRIES_FILE).read_bytes())
    data[5000] ^= 0x01
    (path / ENTRIES_FILE).write_bytes(bytes(data))


def _rewrite_bodies(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    """Rewrites entries.bin only, as someone editing the export file would."""
    bodies = list(honest().bodies)
    (path / ENTRIES_FILE).write_bytes(encode_entries(change(bodies)))


def _drop(path: Path) -> None:
    _rewrite_bodies(path, lambda b: b[:150] + b[151:])


def _swap(path: Path) -> None:
    _rewrite_bodies(path, lambda b: [*b[:150], b[151], b[150], *b[152:]])


def _truncate(path: Path) -> None:
    (path / ENTRIES_FILE).write_bytes((path / ENTRIES_FILE).read_bytes()[:-7])


def _delete_checkpoints(path: Path) -> None:
    shutil.rmtree(path / "checkpoints")


def _duplicate(path: Path) -> None:
    """A byte-identical copy of a non-document entry appended, with a matching index line."""
    copy = honest().bodies[-1]
    assert parse_entry(copy).doc is None
    with (path / ENTRIES_FILE).open("ab") as out:
        out.write(encode_entries([copy]))
    with (path / INDEX_FILE).open("ab") as out:
        out.write(format_index_line(300, hash_leaf(copy)))


def _resign_rewrite(path: Path) -> None:
    """Entry 150 edited, prev links and every checkpoint recomputed and re-signed with the log
    key (which the operator holds); the witnesses' lines cannot be forged and are left off."""
    bodies = list(honest().bodies)
    entry = parse_entry(bodies[150])
    bodies[150] = dataclasses.replace(entry, data={**entry.data, "note": "forged"}).encode()
    forged = relink(bodies)
    SyntheticLog(forged, list(SIZES)).write(path)


def _resign_keeping_cosignatures(path: Path) -> None:
    """As above, but the old cosignature lines are pasted onto the re-signed notes."""
    _resign_rewrite(path)
    for note_path, old in zip(
        sorted((path / "checkpoints").iterdir(), key=lambda p: int(p.stem)),
        honest_notes(),
        strict=True,
    ):
        lines = old.split(b"\n\n", 1)[1].split(b"\n")[1:]
        note_path.write_bytes(note_path.read_bytes() + b"\n".join(lines))


def _replace_policy(path: Path) -> None:
    """The attacker's own key re-signs a rewritten history and replaces trust-policy.json."""
    attacker = fixed_signer(seed="attacker")
    bodies = relink([*honest().bodies[:150], *honest().bodies[151:]])
    log = SyntheticLog(bodies, [1, 64, 100, 257, 299], attacker)
    shutil.rmtree(path / "checkpoints")
    log.write(path)


def _with_retired_key(path: Path) -> None:
    """Signed by a key the auditor's policy retired before the entries it covers."""
    retired = fixed_signer(seed="retired-key")
    log = SyntheticLog(list(honest().bodies), list(SIZES), retired)
    log.write(path, [cosigned(n) for n in log.notes])


RETIRED_POLICY = TrustPolicy(
    ORIGIN,
    (
        LogKey(fixed_signer().verifier),
        LogKey(fixed_signer(seed="retired-key").verifier, valid_until=T0),
    ),
    tuple(WitnessKey(c.verifier) for c in WITNESSES),
    2,
)


@pytest.mark.parametrize(
    ("tamper", "kinds"),
    [
        (_flip_byte, {DivergenceKind.ENTRY_INVALID, DivergenceKind.ENTRY_NOT_CANONICAL}),
        (_drop, {DivergenceKind.ENTRY_INDEX_MISMATCH}),
        (_swap, {DivergenceKind.ENTRY_INDEX_MISMATCH}),
        (_truncate, {DivergenceKind.ENTRIES_TRUNCATED}),
        (_delete_checkpoints, {DivergenceKind.NO_CHECKPOINT}),
        (_duplicate, {DivergenceKind.DUPLICATE_ENTRY}),
        (_resign_rewrite, {DivergenceKind.NO_CHECKPOINT}),
        (_resign_keeping_cosignatures, {DivergenceKind.CHECKPOINT_SIGNATURE_INVALID}),
        (_replace_policy, {DivergenceKind.CHECKPOINT_KEY_UNTRUSTED}),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_each_tamper_is_caught_given_the_auditors_policy_and_witnesses(
    tmp_path: Path, tamper: Callable[[Path], None], kinds: set[DivergenceKind]
) -> None:
    path = write(tmp_path)
    tamper(path)
    report = verify(path)
    assert kind_of(report) in kinds, report.to_json()
    assert report.exit_code in (ExitCode.DIVERGENCE, ExitCode.UNTRUSTED_KEY)


def test_a_retired_key_signing_newer_entries_is_caught(tmp_path: Path) -> None:
    path = write(tmp_path)
    _with_retired_key(path)
    report = verify(path, RETIRED_POLICY)
    assert kind_of(report) is DivergenceKind.CHECKPOINT_KEY_EXPIRED


def test_a_key_whose_window_opens_after_witnesses_saw_its_checkpoint_is_refused() -> None:
    """valid_from is checked against the witnessed time: a key created later cannot have signed
    a checkpoint witnesses saw before (beyond the clock slack)."""
    later = dataclasses.replace(
        witnessed_policy(),
        log_keys=(
            LogKey(fixed_signer().verifier, valid_from=WITNESSED_AT + dt.timedelta(hours=1)),
        ),
    )
    with pytest.raises(ValueError, match="no log key valid"):
        later.open(honest_notes()[-1])
    slack = dataclasses.replace(
        witnessed_policy(),
        log_keys=(
            LogKey(fixed_signer().verifier, valid_from=WITNESSED_AT + dt.timedelta(seconds=30)),
        ),
    )
    assert slack.open(honest_notes()[-1]).checkpoint.size == 300


# ---- each finding of the issue ----------------------------------------------------------------


def test_finding_1_a_replaced_policy_passes_only_as_self_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an outside policy the verifier says so first and exits 3, never 0; with one, the
    replaced export fails with the untrusted-key exit status."""
    path = write(tmp_path)
    _replace_policy(path)
    assert main(["full", str(path)]) == ExitCode.SELF_TRUSTED
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0].startswith("UNTRUSTED")
    assert json.loads(captured.out)["ok"] is False
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(witnessed_policy().to_json())
    assert main(["full", str(path), "--trust-policy", str(policy_file)]) == ExitCode.UNTRUSTED_KEY
    capsys.readouterr()


def test_finding_2_no_checkpoint_fails_and_the_unsigned_tail_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path)
    (path / "checkpoints" / "300.note").unlink()
    report = verify(path)
    assert report.ok
    assert report.details["unsigned_tail"] == 43
    assert report.details["last_verified_checkpoint"] == 257
    for note in (path / "checkpoints").iterdir():
        note.unlink()
    assert kind_of(verify(path)) is DivergenceKind.NO_CHECKPOINT


def test_finding_3_a_re_signed_rewrite_lacks_the_witnesses(tmp_path: Path) -> None:
    """The log key alone re-signs a rewrite; without witness cosignatures none of its
    checkpoints counts, while a policy that asks for no witnesses (the old behaviour) is
    fooled."""
    path = write(tmp_path)
    _resign_rewrite(path)
    assert verify(path, dataclasses.replace(witnessed_policy(), quorum=0)).ok
    report = verify(path)
    assert kind_of(report) is DivergenceKind.NO_CHECKPOINT
    assert report.details["checkpoints_without_quorum"] == len(SIZES)
    assert kind_of(verify(path, witnessed_policy(quorum=1))) is DivergenceKind.NO_CHECKPOINT


def test_a_rewritten_tail_under_an_uncosigned_checkpoint_is_reported_as_unsigned(
    tmp_path: Path,
) -> None:
    """Checkpoints the witnesses never cosigned vouch for nothing: entries after the last
    cosigned one are the unsigned tail, however the log key signed them."""
    bodies = list(honest().bodies)
    entry = parse_entry(bodies[280])
    bodies[280] = dataclasses.replace(entry, data={**entry.data, "note": "forged"}).encode()
    forged = relink(bodies)
    notes = [*honest_notes()[:-1], SyntheticLog(forged, [300]).notes[0]]
    report = verify(write(tmp_path, forged, notes))
    assert report.divergence is None
    assert report.details["checkpoints_without_quorum"] == 1
    assert report.details["unsigned_tail"] == 300 - 257


def test_finding_4_retired_keys_have_an_end_in_the_policy() -> None:
    """from_signing_keys carries the recorded retirement as valid_until, and it round-trips."""
    until = T0 + dt.timedelta(days=1)
    policy = TrustPolicy.from_signing_keys(ORIGIN, [(fixed_signer().verifier.vkey, T0, until)])
    assert policy.log_keys[0].valid_until == until
    assert json.loads(policy.to_json())["log_keys"][0]["valid_until"] == "2025-03-02T08:00:00Z"
    assert TrustPolicy.from_json(policy.to_json()) == policy


def test_finding_5_every_exported_entry_carries_its_index_and_leaf_hash(tmp_path: Path) -> None:
    path = write(tmp_path)
    export = read_export(path)
    assert export.index[150] == (150, hash_leaf(honest().bodies[150]))
    assert len(export.index) == 300
    (path / INDEX_FILE).write_bytes(b"0 not-base64\n")
    report = audit_export(path, policy=witnessed_policy())
    assert kind_of(report) is DivergenceKind.EXPORT_MALFORMED


def test_finding_6_backdated_entries_contradict_the_witnessed_time(tmp_path: Path) -> None:
    """Witnesses timestamp what they saw: entries claiming a later logged_at are backdated."""
    early = T0 - dt.timedelta(minutes=2)  # before the clock slack allows
    notes = [cosigned(n, when=early) for n in honest().notes]
    report = verify(honest().write(tmp_path / "export", notes))
    assert kind_of(report) is DivergenceKind.LOGGED_AT_AFTER_WITNESS
    assert report.divergence is not None
    assert report.divergence.checkpoint_size == 1


def test_finding_7_a_duplicate_entry_fails(tmp_path: Path) -> None:
    path = write(tmp_path)
    _duplicate(path)
    report = verify(path)
    assert kind_of(report) is DivergenceKind.DUPLICATE_ENTRY
    assert report.divergence is not None
    assert report.divergence.index == 300


# ---- cosignatures and the policy format -------------------------------------------------------


def test_cosignatures_verify_carry_their_time_and_ignore_unknown_witnesses() -> None:
    note = cosigned(honest().notes[-1])
    found = verified_cosignatures(note, [c.verifier for c in WITNESSES])
    assert set(found.values()) == {WITNESSED_AT}
    stranger = Cosigner.generate("witness.stranger.example")
    assert verified_cosignatures(note, [stranger.verifier]) == {}
    text, _ = parse_note(note)
    tampered = note.replace(text.encode(), text.replace("300", "301").encode())
    with pytest.raises(InvalidCosignatureError):
        verified_cosignatures(tampered, [WITNESSES[0].verifier])


def test_witness_keys_round_trip_and_differ_from_log_keys() -> None:
    witness = WITNESSES[0]
    assert CosignerVerifier.from_vkey(witness.verifier.vkey) == witness.verifier
    assert Cosigner.from_skey(witness.skey).verifier == witness.verifier
    with pytest.raises(KeyFormatError):
        CosignerVerifier.from_vkey(fixed_signer().verifier.vkey)  # type 0x01, not 0x04
    line = witness.cosign("o\n1\n" + "A" * 43 + "=\n", WITNESSED_AT).line
    assert parse_signature_lines(line.encode())[0].name == witness.name


def test_the_policy_v2_round_trips_and_checks_its_quorum() -> None:
    policy = witnessed_policy(quorum=2)
    assert TrustPolicy.from_json(policy.to_json()) == policy
    doc = json.loads(policy.to_json())
    doc["quorum"] = 3
    with pytest.raises(PolicyError, match="quorum"):
        TrustPolicy.from_json(json.dumps(doc))
    doc["quorum"] = 1
    doc["tsa_roots"] = []
    with pytest.raises(PolicyError, match="exactly the fields"):
        TrustPolicy.from_json(json.dumps(doc))
    v1 = {"version": 1, "origin": ORIGIN, "log_keys": [{"vkey": fixed_signer().verifier.vkey}]}
    assert TrustPolicy.from_json(json.dumps(v1)).quorum == 0


def test_an_expired_witness_key_does_not_count(tmp_path: Path) -> None:
    expired = TrustPolicy(
        ORIGIN,
        (LogKey(fixed_signer().verifier),),
        (
            WitnessKey(WITNESSES[0].verifier, valid_until=WITNESSED_AT - dt.timedelta(days=1)),
            WitnessKey(WITNESSES[1].verifier),
        ),
        2,
    )
    report = audit_export(write(tmp_path), policy=expired)
    assert kind_of(report) is DivergenceKind.NO_CHECKPOINT
    (tmp_path / "export" / POLICY_FILE).unlink()  # the auditor's policy needs none
    assert kind_of(audit_export(tmp_path / "export", policy=witnessed_policy())) is None


def test_receipts_and_consistency_need_the_quorum_too() -> None:
    """An agency's receipt verifies offline only with the witnesses' cosignatures the policy asks
    for; the same holds for the auditor's consistency check between two checkpoints."""
    tree = honest().tree()
    proof = inclusion_proof(tree, 123, 300)
    bare = build_receipt(123, proof, honest().notes[-1])
    report = verify_receipt_evidence(honest().bodies[123], bare, witnessed_policy())
    assert kind_of(report) is DivergenceKind.WITNESS_QUORUM_NOT_MET
    witnessed = build_receipt(123, proof, honest_notes()[-1])
    report = verify_receipt_evidence(honest().bodies[123], witnessed, witnessed_policy())
    assert report.ok, report.to_json()
    assert report.details["witnessed_at"] == WITNESSED_AT.isoformat()
    hashes = consistency_proof(tree, 100, 300)
    old, new = honest_notes()[SIZES.index(100)], honest_notes()[-1]
    assert verify_checkpoint_consistency(old, new, hashes, witnessed_policy()).ok
    unwitnessed = verify_checkpoint_consistency(old, honest().notes[-1], hashes, witnessed_policy())
    assert kind_of(unwitnessed) is DivergenceKind.WITNESS_QUORUM_NOT_MET
