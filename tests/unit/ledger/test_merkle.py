"""Merkle tree hashing, the compact range, and proof generation against verification."""

from __future__ import annotations

import functools
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docaxis_client.ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MalformedProofError,
    MemoryTree,
    ProofError,
    RootMismatchError,
    TreeSizeError,
    consistency_plan,
    consistency_proof,
    hash_children,
    hash_leaf,
    inclusion_plan,
    inclusion_proof,
    mth,
    right_edge,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

# No example database: the suite must not write a .hypothesis folder into the repository.
FAST = settings(database=None, deadline=None, max_examples=150)

# The eight leaves RFC 6962 implementations test with (ledger.md §2 sanity value).
RFC_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]


@functools.cache
def leaves(n: int) -> tuple[bytes, ...]:
    return tuple(hash_leaf(i.to_bytes(4, "big")) for i in range(n))


@functools.cache
def tree(n: int) -> MemoryTree:
    return MemoryTree(leaves(n))


@functools.cache
def reference_root(n: int) -> bytes:
    return mth(leaves(n))


def test_hashes_use_the_rfc_6962_domain_separation_prefixes() -> None:
    """Leaves hash 0x00 || data, nodes 0x01 || left || right, the empty tree SHA-256('')."""
    assert hash_leaf(b"x") == hashlib.sha256(b"\x00x").digest()
    assert (
        hash_children(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == mth([])


def test_the_eight_standard_leaves_give_the_published_root() -> None:
    """mth, CompactRange and MemoryTree all reach 5dc9da79…4328 on the standard leaves."""
    hashes = [hash_leaf(x) for x in RFC_LEAVES]
    want = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    cr = CompactRange()
    cr.extend(hashes)
    assert mth(hashes).hex() == cr.root().hex() == MemoryTree(hashes).root().hex() == want


@FAST
@given(st.lists(st.binary(max_size=40), max_size=600), st.data())
def test_compact_range_root_equals_the_recursive_mth_for_random_leaves(
    data: list[bytes], draw: st.DataObject
) -> None:
    """Appending one at a time or in batches gives mth's root and the right-edge nodes."""
    hashes = [hash_leaf(d) for d in data]
    cr = CompactRange()
    split = draw.draw(st.integers(0, len(hashes)))
    for h in hashes[:split]:
        cr.append(h)
    cr.extend(hashes[split:])
    assert cr.size == len(hashes)
    assert cr.root() == mth(hashes)
    assert len(cr.hashes) == len(hashes).bit_count()
    assert cr.nodes() == right_edge(len(hashes))


def test_compact_range_tracks_mth_after_each_of_300_appends() -> None:
    """The root is right after every single append, not just at the end."""
    cr = CompactRange()
    for n in range(1, 301):
        cr.append(leaves(300)[n - 1])
        assert cr.root() == reference_root(n)


@FAST
@given(st.integers(0, 5000))
def test_compact_range_survives_a_round_trip_through_bytes(size: int) -> None:
    """to_bytes/from_bytes and from_source reproduce the same range (the tree_state row)."""
    cr = tree(5000).compact_range(size)
    data = cr.to_bytes()
    assert len(data) == 8 + 32 * size.bit_count()
    again = CompactRange.from_bytes(data)
    assert again == cr
    assert again.root() == tree(5000).root(size)
    again.append(leaves(5001)[size] if size < 5000 else hash_leaf(b"next"))
    assert again.size == size + 1


def test_compact_range_refuses_inconsistent_encodings() -> None:
    """A stored range whose length disagrees with its size, or a short hash, is rejected."""
    good = tree(5000).compact_range(7).to_bytes()
    with pytest.raises(ValueError, match="length"):
        CompactRange.from_bytes(good[:-1])
    with pytest.raises(ValueError, match="too short"):
        CompactRange.from_bytes(b"\x00")
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append(b"short")


def test_every_inclusion_proof_up_to_size_300_verifies() -> None:
    """For all 0 <= i < n <= 300 the generated proof verifies against the mth root."""
    t = tree(300)
    for n in range(1, 301):
        root = reference_root(n)
        for i in range(n):
            proof = inclusion_proof(t, i, n)
            assert root_from_inclusion_proof(i, n, leaves(300)[i], proof) == root


@FAST
@given(st.data())
def test_flipping_any_single_bit_breaks_an_inclusion_proof(data: st.DataObject) -> None:
    """One flipped bit in a proof hash, the leaf hash or the root is always rejected."""
    n = data.draw(st.integers(1, 300), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(tree(300), i, n)
    leaf, root = leaves(300)[i], reference_root(n)
    parts = [*proof, leaf, root]
    which = data.draw(st.integers(0, len(parts) - 1), label="which")
    bit = data.draw(st.integers(0, 255), label="bit")
    flipped = bytearray(parts[which])
    flipped[bit // 8] ^= 1 << (bit % 8)
    parts[which] = bytes(flipped)
    with pytest.raises(RootMismatchError):
        verify_inclusion(i, n, parts[-2], parts[:-2], parts[-1])


@FAST
@given(st.data())
def test_inclusion_proofs_of_the_wrong_length_or_position_are_rejected(
    data: st.DataObject,
) -> None:
    """Dropping or adding a hash, or claiming another index or size, never verifies."""
    n = data.draw(st.integers(2, 300), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(tree(300), i, n)
    leaf, root = leaves(300)[i], reference_root(n)
    with pytest.raises(MalformedProofError):
        verify_inclusion(i, n, leaf, [*proof, root], root)
    if proof:
        with pytest.raises(MalformedProofError):
            verify_inclusion(i, n, leaf, proof[:-1], root)
    j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="other index")
    with pytest.raises(ProofError):
        verify_inclusion(j, n, leaf, proof, root)
    with pytest.raises(TreeSizeError):
        verify_inclusion(n, n, leaf, proof, root)


def test_every_consistency_proof_up_to_size_64_verifies() -> None:
    """For all 1 <= m <= n <= 64 the proof links mth(first m) to mth(first n)."""
    t = tree(64)
    for n in range(1, 65):
        for m in range(1, n + 1):
            proof = consistency_proof(t, m, n)
            verify_consistency(m, n, proof, reference_root(m), reference_root(n))
            if m < n:
                wrong = bytes([reference_root(n)[0] ^ 1]) + reference_root(n)[1:]
                with pytest.raises(RootMismatchError):
                    verify_consistency(m, n, proof, reference_root(m), wrong)


@FAST
@given(st.data())
def test_random_large_consistency_proofs_verify_and_reject_tampering(data: st.DataObject) -> None:
    """Consistency proofs between random sizes up to 5000 verify; a flipped bit never does."""
    n = data.draw(st.integers(2, 5000), label="size2")
    m = data.draw(st.integers(1, n - 1), label="size1")
    t = tree(5000)
    proof = consistency_proof(t, m, n)
    root1, root2 = t.root(m), t.root(n)
    verify_consistency(m, n, proof, root1, root2)
    which = data.draw(st.integers(0, len(proof) - 1), label="which")
    bit = data.draw(st.integers(0, 255), label="bit")
    bad = [bytearray(h) for h in proof]
    bad[which][bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(RootMismatchError):
        verify_consistency(m, n, [bytes(h) for h in bad], root1, root2)


def test_a_consistency_proof_from_the_empty_tree_is_refused() -> None:
    """Generation and verification agree with the reference: size 0 proves nothing."""
    with pytest.raises(TreeSizeError):
        consistency_plan(0, 5)
    with pytest.raises(TreeSizeError):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)


def test_proof_plans_name_perfect_subtrees_that_exist_at_the_size() -> None:
    """Every node a plan asks for is complete at the tree size, and equal sizes need none."""
    for n in range(1, 130):
        for i in range(n):
            for level, index in inclusion_plan(i, n).nodes:
                assert (index + 1) << level <= n
        for m in range(1, n + 1):
            for level, index in consistency_plan(m, n).nodes:
                assert (index + 1) << level <= n
    assert consistency_plan(9, 9).nodes == ()


def test_memory_tree_refuses_subtrees_that_are_not_complete() -> None:
    """Asking for a node past the right edge is a TreeSizeError, not a wrong hash."""
    t = MemoryTree(leaves(5))
    assert t.subtree_hash(2, 0) == mth(leaves(4))
    with pytest.raises(TreeSizeError):
        t.subtree_hash(1, 2)
    with pytest.raises(TreeSizeError):
        t.root(6)
