"""C2SP tlog-proof receipts: built from a proof and a signed checkpoint, verified offline."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest

from docaxis_client.ledger.entry import EntryError
from docaxis_client.ledger.merkle import ProofError, inclusion_proof
from docaxis_client.ledger.note import NoteError, UnverifiedNoteError
from docaxis_client.ledger.receipt import (
    RECEIPT_HEADER,
    Receipt,
    ReceiptError,
    build_receipt,
    parse_receipt,
    verify_receipt,
)
from tests.unit.ledger.synthetic import ORIGIN, SyntheticLog, fixed_signer, synthetic_log


@functools.cache
def log() -> SyntheticLog:
    return synthetic_log(300)


def receipt_for(index: int, size: int = 300) -> bytes:
    note = log().notes[log().checkpoint_sizes.index(size)]
    return build_receipt(index, inclusion_proof(log().tree(), index, size), note)


def test_a_receipt_has_the_tlog_proof_layout() -> None:
    """Header, `index N`, one base64 hash per line, a blank line, then the note verbatim."""
    data = receipt_for(5)
    lines = data.decode().split("\n")
    assert lines[0] == RECEIPT_HEADER
    assert lines[1] == "index 5"
    assert lines[11] == ""  # 9 proof hashes for leaf 5 of 300
    assert data.endswith(log().notes[-1])
    parsed = parse_receipt(data)
    assert parsed.index == 5
    assert len(parsed.proof) == 9
    assert parsed.encode() == data


def test_extra_data_round_trips_and_stays_unauthenticated() -> None:
    """The optional `extra` line survives parsing; verification does not depend on it."""
    plain = parse_receipt(receipt_for(7))
    with_extra = Receipt(plain.index, plain.proof, plain.checkpoint_note, b"context")
    again = parse_receipt(with_extra.encode())
    assert again.extra == b"context"
    verify_receipt(again, log().bodies[7], ORIGIN, [fixed_signer().verifier])


@pytest.mark.parametrize("index", [0, 1, 99, 255, 256, 299])
def test_a_receipt_verifies_against_its_entry_and_the_log_key(index: int) -> None:
    """The entry's leaf hash, the proof and the signed root agree."""
    verified = verify_receipt(
        receipt_for(index), log().bodies[index], ORIGIN, [fixed_signer().verifier]
    )
    assert verified.index == index
    assert verified.checkpoint.size == 300
    assert verified.entry is not None


def test_a_receipt_for_a_one_entry_log_has_no_proof_hashes() -> None:
    """In a tree of one leaf the root is the leaf hash and the proof is empty."""
    data = receipt_for(0, size=1)
    assert b"index 0\n\n" in data
    verify_receipt(data, log().bodies[0], ORIGIN, [fixed_signer().verifier])


def test_a_changed_entry_body_fails_the_receipt() -> None:
    """Another (valid, canonical) body at the same index does not verify."""
    with pytest.raises(ProofError):
        verify_receipt(receipt_for(3), log().bodies[4], ORIGIN, [fixed_signer().verifier])
    with pytest.raises(EntryError):
        verify_receipt(receipt_for(3), log().bodies[3] + b" ", ORIGIN, [fixed_signer().verifier])


def test_a_receipt_needs_a_trusted_key_and_the_right_origin() -> None:
    """Unknown log key or another origin: the checkpoint is refused before the proof."""
    with pytest.raises(UnverifiedNoteError):
        verify_receipt(receipt_for(3), log().bodies[3], ORIGIN, [fixed_signer(seed="x").verifier])
    with pytest.raises(NoteError):
        verify_receipt(receipt_for(3), log().bodies[3], "other/v1", [fixed_signer().verifier])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b"@v1", b"@v2", 1),
        lambda b: b.replace(b"index 5", b"index 05"),
        lambda b: b.replace(b"index 5", b"idx 5"),
        lambda b: b.replace(b"index 5\n", b"index 5\nAAAA\n"),  # short hash
        lambda b: b.replace(b"index 5\n", b"index 5\nnot base64!\n"),
        lambda b: b.replace(b"\n\n", b"\n", 1),  # no blank line before the note
        lambda b: b.split(b"\n\n")[0] + b"\n\n",  # no note
        lambda b: b.replace(b"index 5", b"index 18446744073709551616"),
    ],
)
def test_malformed_receipts_are_refused(mangle: Callable[[bytes], bytes]) -> None:
    """Strict grammar: exact header, canonical index, 32-byte base64 hashes, blank line."""
    with pytest.raises(ReceiptError):
        parse_receipt(mangle(receipt_for(5)))
