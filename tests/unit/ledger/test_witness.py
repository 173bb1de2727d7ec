"""The witness (C2SP tlog-witness) on synthetic checkpoints: it cosigns consistent growth,
answers every other request with the spec's status, and keeps evidence of forks."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path

import httpx
import pytest

from docaxis_client.ledger.cosignature import (
    merge_signatures,
    parse_signature_lines,
    verified_cosignatures,
)
from docaxis_client.ledger.merkle import consistency_proof
from docaxis_client.ledger.note import Checkpoint, sign_checkpoint
from services.witness.domain import Outcome, Witness, format_request, parse_request
from services.witness.server import SIZE_CONTENT_TYPE, witness_app
from services.witness.state import FileWitnessStore
from tests.unit.ledger.synthetic import (
    ORIGIN,
    WITNESSED_AT,
    WITNESSES,
    SyntheticLog,
    checkpoint_note,
    fixed_signer,
    synthetic_log,
)


@functools.cache
def log() -> SyntheticLog:
    return synthetic_log(300, (10, 100, 300))


def note(size: int) -> bytes:
    return checkpoint_note(log().bodies, size)


def witness(state: Path) -> Witness:
    return Witness(
        WITNESSES[0],
        {ORIGIN: [fixed_signer().verifier]},
        FileWitnessStore(state),
        lambda: WITNESSED_AT,
    )


def request(old: int, size: int, body: bytes | None = None) -> bytes:
    proof = [] if old in (0, size) else consistency_proof(log().tree(), old, size)
    return format_request(old, proof, note(size) if body is None else body)


async def test_consistent_growth_is_cosigned_with_the_witness_key_and_time(tmp_path: Path) -> None:
    w = witness(tmp_path)
    first = await w.add_checkpoint(request(0, 10))
    assert first.outcome is Outcome.COSIGNED
    cosigned = merge_signatures(note(10), parse_signature_lines(first.body))
    assert verified_cosignatures(cosigned, [WITNESSES[0].verifier]) == {
        WITNESSES[0].verifier: WITNESSED_AT
    }
    assert (await w.add_checkpoint(request(10, 100))).outcome is Outcome.COSIGNED
    # Restarted on the same folder, it remembers the size it cosigned.
    again = witness(tmp_path)
    stale = await again.add_checkpoint(request(10, 300))
    assert (stale.outcome, stale.size, stale.body) == (Outcome.CONFLICT, 100, b"100\n")
    assert (await again.add_checkpoint(request(100, 300))).outcome is Outcome.COSIGNED


async def test_a_second_root_for_a_cosigned_size_is_refused_as_a_fork(tmp_path: Path) -> None:
    w = witness(tmp_path)
    assert (await w.add_checkpoint(request(0, 100))).outcome is Outcome.COSIGNED
    forked = sign_checkpoint(Checkpoint(ORIGIN, 100, b"\x07" * 32), [fixed_signer()])
    answer = await w.add_checkpoint(format_request(100, [], forked))
    assert (answer.outcome, answer.fork) == (Outcome.CONFLICT, True)
    (evidence,) = FileWitnessStore(tmp_path).fork_evidence()
    doc = json.loads(evidence.read_text())
    assert doc["held_note"].encode() == note(100)
    assert doc["shown_note"].encode() == forked
    assert "forked" in doc["why"]


async def test_a_proof_that_does_not_join_the_trees_is_refused(tmp_path: Path) -> None:
    w = witness(tmp_path)
    assert (await w.add_checkpoint(request(0, 10))).outcome is Outcome.COSIGNED
    bodies = list(log().bodies)
    bodies[3] = bodies[4]  # history before size 10 rewritten
    rewritten = SyntheticLog(bodies, [300])
    bogus = format_request(10, consistency_proof(log().tree(), 10, 300), rewritten.notes[0])
    answer = await w.add_checkpoint(bogus)
    assert (answer.outcome, answer.fork) == (Outcome.BAD_PROOF, True)
    assert len(FileWitnessStore(tmp_path).fork_evidence()) == 1


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (b"garbage", Outcome.BAD_REQUEST),
        (b"old 01\n\n" + b"x", Outcome.BAD_REQUEST),
        (format_request(300, [], b"x"), Outcome.BAD_REQUEST),
    ],
)
async def test_malformed_requests_are_bad_requests(
    tmp_path: Path, body: bytes, outcome: Outcome
) -> None:
    assert (await witness(tmp_path).add_checkpoint(body)).outcome is outcome


async def test_unknown_logs_keys_and_impossible_sizes_get_their_statuses(tmp_path: Path) -> None:
    w = witness(tmp_path)
    foreign = sign_checkpoint(Checkpoint("other.example/v1", 10, b"\x01" * 32), [fixed_signer()])
    assert (await w.add_checkpoint(format_request(0, [], foreign))).outcome is Outcome.UNKNOWN_LOG
    stranger = checkpoint_note(log().bodies, 10, [fixed_signer(seed="stranger")])
    assert (await w.add_checkpoint(format_request(0, [], stranger))).outcome is Outcome.FORBIDDEN
    too_old = format_request(100, [], note(10))
    assert (await w.add_checkpoint(too_old)).outcome is Outcome.BAD_REQUEST


def test_requests_round_trip_through_the_wire_format() -> None:
    proof = consistency_proof(log().tree(), 10, 300)
    parsed = parse_request(format_request(10, proof, note(300)))
    assert (parsed.old_size, list(parsed.proof), parsed.note) == (10, proof, note(300))


async def test_the_http_interface_speaks_the_spec(tmp_path: Path) -> None:
    """POST /add-checkpoint: 200 with signature lines, 409 with text/x.tlog.size."""
    app = witness_app(witness(tmp_path))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://witness"
    ) as client:
        ok = await client.post("/add-checkpoint", content=request(0, 10))
        assert ok.status_code == 200
        assert ok.text.startswith("\u2014 " + WITNESSES[0].name + " ")
        conflict = await client.post("/add-checkpoint", content=request(0, 100))
        assert conflict.status_code == 409
        assert conflict.headers["content-type"].startswith(SIZE_CONTENT_TYPE)
        assert conflict.text == "10\n"
        assert (await client.get("/add-checkpoint")).status_code == 405


def test_cosignature_times_are_whole_seconds() -> None:
    line = WITNESSES[1].cosign(
        "o\n1\n" + "A" * 43 + "=\n", WITNESSED_AT + dt.timedelta(seconds=0.7)
    )
    assert int.from_bytes(line.signature[:8], "big") == int(WITNESSED_AT.timestamp())
