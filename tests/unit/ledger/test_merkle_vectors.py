"""The transparency-dev/merkle conformance vectors: every case gives its expected verdict."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from docaxis_client.ledger.merkle import ProofError, verify_consistency, verify_inclusion

# tests/unit/ledger/<this file> -> the repository root, whose sibling `shared` holds the vectors.
VECTORS = Path(__file__).resolve().parents[3].parent / "shared" / "testdata" / "merkle"


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(f, id=f.relative_to(VECTORS).as_posix()) for f in files]


INCLUSION = _cases("inclusion")
CONSISTENCY = _cases("consistency")


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def test_the_vector_folder_holds_all_98_inclusion_and_98_consistency_cases() -> None:
    """A missing or moved vector folder fails loudly instead of silently testing nothing."""
    assert len(INCLUSION) == 98, VECTORS
    assert len(CONSISTENCY) == 98, VECTORS
    assert any("additional" in str(p.values[0]) for p in INCLUSION)
    assert any("additional" in str(p.values[0]) for p in CONSISTENCY)


@pytest.mark.parametrize("path", INCLUSION)
def test_inclusion_vector_gets_its_verdict(path: Path) -> None:
    """verify_inclusion accepts exactly the cases the reference accepts."""
    case = json.loads(path.read_text())
    proof = [_b64(h) for h in case["proof"] or []]
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY)
def test_consistency_vector_gets_its_verdict(path: Path) -> None:
    """verify_consistency accepts exactly the cases the reference accepts (size 0 included)."""
    case = json.loads(path.read_text())
    proof = [_b64(h) for h in case["proof"] or []]
    args = (case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
