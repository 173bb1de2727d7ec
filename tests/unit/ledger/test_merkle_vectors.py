"""The transparency-dev/merkle conformance vectors: every case gives its expected verdict."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from docaxis_client.ledger.merkle import ProofError, verify_consistency, verify_inclusion
from tests.testdata import IN_REPO, CorpusFile, corpus_files


def _cases(kind: str) -> list[Any]:
    """The repository's cases of ``kind`` (tests/data/merkle), then any more in ../shared."""
    files = corpus_files("merkle", "*.json")
    return [pytest.param(f, id=f.id) for f in files if f.name.startswith(f"{kind}/")]


INCLUSION = _cases("inclusion")
CONSISTENCY = _cases("consistency")


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def test_the_repository_holds_all_98_inclusion_and_98_consistency_cases() -> None:
    """A missing or moved vector folder fails loudly instead of silently testing nothing."""
    for cases in (INCLUSION, CONSISTENCY):
        own = [p for p in cases if str(p.id).startswith("repo:")]
        assert len(own) == 98, IN_REPO["merkle"]
        assert any("/additional/" in str(p.id) for p in own)


@pytest.mark.parametrize("path", INCLUSION)
def test_inclusion_vector_gets_its_verdict(path: CorpusFile) -> None:
    """verify_inclusion accepts exactly the cases the reference accepts."""
    case = json.loads(path.path.read_text())
    proof = [_b64(h) for h in case["proof"] or []]
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY)
def test_consistency_vector_gets_its_verdict(path: CorpusFile) -> None:
    """verify_consistency accepts exactly the cases the reference accepts (size 0 included)."""
    case = json.loads(path.path.read_text())
    proof = [_b64(h) for h in case["proof"] or []]
    args = (case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)
