"""RFC 6962 / RFC 9162 Merkle trees: hashing, compact range, proof generation and verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, Self

HASH_SIZE = 32
# Proof sizes and indices are uint64 in every wire format we speak (RFC 9162, C2SP, Go reference).
MAX_TREE_SIZE = (1 << 64) - 1

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = _sha256(b"").digest()

Node = tuple[int, int]
"""A perfect subtree `(level, index)`: the 2**level leaves starting at leaf index * 2**level."""


class ProofError(ValueError):
    """A Merkle proof did not verify or could not be built; `reason` is machine-readable."""

    reason = "PROOF_INVALID"


class TreeSizeError(ProofError):
    """The index / size combination is impossible (index beyond size, shrinking, size 0...)."""

    reason = "TREE_SIZE"


class MalformedProofError(ProofError):
    """The proof has the wrong number of hashes or a hash of the wrong length."""

    reason = "PROOF_MALFORMED"


class RootMismatchError(ProofError):
    """The proof is well-formed but leads to a different root than the one claimed."""

    reason = "ROOT_MISMATCH"

    def __init__(self, expected: bytes, calculated: bytes) -> None:
        super().__init__(f"calculated root {calculated.hex()} != expected {expected.hex()}")
        self.expected = expected
        self.calculated = calculated


def hash_leaf(data: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2): the size of the left subtree."""
    return 1 << ((n - 1).bit_length() - 1)


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """Reference Merkle Tree Hash over leaf hashes, as the RFC states it (slow, recursive)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return hash_children(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree given its 2**k bottom hashes, by pairwise rounds (no recursion)."""
    level = list(hashes)
    n = len(level)
    if n == 0 or n & (n - 1):
        raise ValueError(f"perfect_root needs a power-of-two count, got {n}")
    sha = _sha256
    while len(level) > 1:
        level = [
            sha(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)
        ]
    return level[0]


def right_edge(size: int) -> list[Node]:
    """The perfect subtrees a tree of `size` leaves decomposes into, left (largest) to right."""
    nodes: list[Node] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def fold_right_edge(hashes: Sequence[bytes]) -> bytes:
    """Root from right-edge perfect-subtree roots: the smaller subtrees hang off the right."""
    if not hashes:
        return EMPTY_ROOT
    sha = _sha256
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = sha(_NODE_PREFIX + h + root).digest()
    return root


def _check_size(name: str, value: int) -> None:
    if value < 0 or value > MAX_TREE_SIZE:
        raise TreeSizeError(f"{name} {value} is not a uint64")


class CompactRange:
    """The right edge of a tree: one perfect-subtree root per set bit of `size`, largest first.

    Appending merges equal-height neighbours (one hash per leaf amortised), so the sequencer keeps
    O(log n) state between batches and stores it as `to_bytes()` in its single `tree_state` row.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_size("size", size)
        if len(hashes) != size.bit_count():
            raise ValueError(f"a compact range of size {size} holds {size.bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("compact range hashes must be 32 bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def nodes(self) -> list[Node]:
        """The `(level, index)` of each stored hash, in the same order."""
        return right_edge(self._size)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash; merges completed subtrees on the way up."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError("leaf hash must be 32 bytes")
        size = self._size
        hashes = self._hashes
        h = leaf_hash
        s = size
        # Each trailing 1 bit of the old size is a right-edge subtree of the same height as the
        # one being carried: merge, exactly like binary increment.
        while s & 1:
            h = _sha256(_NODE_PREFIX + hashes.pop() + h).digest()
            s >>= 1
        hashes.append(h)
        self._size = size + 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes; the loop is inlined because this is the sequencer's hot path."""
        size = self._size
        hashes = self._hashes
        pop = hashes.pop
        push = hashes.append
        sha = _sha256
        prefix = _NODE_PREFIX
        try:
            for h in leaf_hashes:
                if len(h) != HASH_SIZE:
                    raise ValueError("leaf hash must be 32 bytes")
                s = size
                while s & 1:
                    h = sha(prefix + pop() + h).digest()
                    s >>= 1
                push(h)
                size += 1
        finally:
            # Keep size and hashes in step even if a bad hash aborts the batch half-way.
            self._size = size

    def root(self) -> bytes:
        return fold_right_edge(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def to_bytes(self) -> bytes:
        """uint64 big-endian size followed by the hashes: self-checking, 8 + 32*popcount bytes."""
        return self._size.to_bytes(8, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) < 8:
            raise ValueError("compact range encoding too short")
        size = int.from_bytes(data[:8], "big")
        body = data[8:]
        if len(body) != HASH_SIZE * size.bit_count():
            raise ValueError("compact range encoding length does not match its size")
        hashes = [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        return cls(size, hashes)

    @classmethod
    def from_source(cls, source: HashSource, size: int) -> Self:
        """Rebuild the range at `size` from stored subtrees (e.g. after losing `tree_state`)."""
        return cls(size, [source.subtree_hash(level, index) for level, index in right_edge(size)])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable: equal now, maybe not after append

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


class HashSource(Protocol):
    """Read access to the hash of any complete perfect subtree (a database, tiles, memory)."""

    def subtree_hash(self, level: int, index: int) -> bytes:
        """Hash of the 2**level leaves starting at index * 2**level; they must all exist."""
        ...


class MemoryTree:
    """Every level of the tree in memory (64 bytes per leaf): a HashSource for tests and audits.

    Levels are packed bytearrays rather than lists of bytes objects, which would cost ~150 bytes per
    hash; the audit tool replays whole exports through this.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError("leaf hash must be 32 bytes")
        levels = self._levels
        levels[0] += leaf_hash
        h = leaf_hash
        index = self._size
        level = 0
        while index & 1:
            left = levels[level][(index - 1) * HASH_SIZE : index * HASH_SIZE]
            h = _sha256(_NODE_PREFIX + left + h).digest()
            level += 1
            index >>= 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += h
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def leaf_hash(self, index: int) -> bytes:
        return self.subtree_hash(0, index)

    def subtree_hash(self, level: int, index: int) -> bytes:
        if level < 0 or index < 0 or (index + 1) << level > self._size:
            raise TreeSizeError(f"subtree ({level}, {index}) is not complete at size {self._size}")
        return bytes(self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """Root at `size` (default: current) from the stored right-edge subtrees."""
        size = self._size if size is None else size
        if size < 0 or size > self._size:
            raise TreeSizeError(f"size {size} beyond tree size {self._size}")
        return fold_right_edge([self.subtree_hash(lv, ix) for lv, ix in right_edge(size)])

    def compact_range(self, size: int | None = None) -> CompactRange:
        return CompactRange.from_source(self, self._size if size is None else size)


# ---- proof generation ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """Which perfect subtrees a proof needs, and how to combine them.

    `nodes` lists every subtree to fetch; `spans[i]` says how many consecutive nodes make proof
    hash i (more than one only for the right-border node, which is not a perfect subtree and is
    the fold of its pieces). Splitting plan / fetch / assemble lets an async adapter fetch all the
    tiles it needs in one round trip and keeps this module free of I/O.
    """

    nodes: tuple[Node, ...]
    spans: tuple[int, ...]

    def assemble(self, hashes: Sequence[bytes]) -> list[bytes]:
        """Build the proof from the hashes of `nodes`, in the same order."""
        if len(hashes) != len(self.nodes):
            raise ValueError(f"plan needs {len(self.nodes)} hashes, got {len(hashes)}")
        proof: list[bytes] = []
        pos = 0
        for span in self.spans:
            proof.append(hashes[pos] if span == 1 else fold_right_edge(hashes[pos : pos + span]))
            pos += span
        return proof

    def fetch(self, source: HashSource) -> list[bytes]:
        return self.assemble([source.subtree_hash(level, index) for level, index in self.nodes])


def _decompose(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion path into the part below the fork with the right border and above it.

    `inner` levels lie below the point where the paths to `index` and `size - 1` meet; the
    `border` part above it only has left siblings, one per set bit of `index >> inner`.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _path_plan(index: int, size: int, skip: int) -> tuple[list[Node], list[int]]:
    """Nodes of the inclusion path of `index` in `size`, starting at tree level `skip`."""
    inner, _ = _decompose(index, size)
    nodes: list[Node] = []
    spans: list[int] = []
    for level in range(skip, inner):
        sibling = (index >> level) ^ 1
        if level < inner - 1:
            nodes.append((level, sibling))
            spans.append(1)
            continue
        # The sibling at the fork level contains `size - 1` and may be truncated by the tree's
        # right border; its hash is the fold of the perfect subtrees covering [begin, size).
        begin = sibling << level
        pieces = right_edge(size - begin)
        for piece_level, piece_index in pieces:
            nodes.append((piece_level, (begin >> piece_level) + piece_index))
        spans.append(len(pieces))
    for level in range(inner, (index >> inner).bit_length() + inner):
        if index >> level & 1:
            nodes.append((level, (index >> level) - 1))
            spans.append(1)
    return nodes, spans


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The subtrees behind an RFC 9162 §2.1.3.1 inclusion proof for leaf `index` in `size`."""
    _check_size("size", size)
    if not 0 <= index < size:
        raise TreeSizeError(f"index {index} is not below size {size}")
    nodes, spans = _path_plan(index, size, 0)
    return ProofPlan(tuple(nodes), tuple(spans))


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """The subtrees behind an RFC 9162 §2.1.4.1 consistency proof from size1 to size2."""
    _check_size("size2", size2)
    if not 0 <= size1 <= size2:
        raise TreeSizeError(f"size1 {size1} is not within [0, {size2}]")
    if size1 == 0:
        raise TreeSizeError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        return ProofPlan((), ())
    # A consistency proof is the inclusion path of leaf size1-1 with its bottom `shift` levels
    # replaced by the perfect subtree that ends at size1, which is omitted when it is the whole
    # old tree (size1 a power of two) because the verifier already holds root1.
    shift = ((size1 & -size1).bit_length()) - 1
    nodes: list[Node] = []
    spans: list[int] = []
    if size1 != 1 << shift:
        nodes.append((shift, (size1 - 1) >> shift))
        spans.append(1)
    path_nodes, path_spans = _path_plan(size1 - 1, size2, shift)
    return ProofPlan(tuple(nodes + path_nodes), tuple(spans + path_spans))


def inclusion_proof(source: HashSource, index: int, size: int) -> list[bytes]:
    return inclusion_plan(index, size).fetch(source)


def consistency_proof(source: HashSource, size1: int, size2: int) -> list[bytes]:
    return consistency_plan(size1, size2).fetch(source)


# ---- verification (RFC 9162 §2.1.3.2 and §2.1.4.2, edge cases as the Go reference) -----------


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise MalformedProofError(f"proof hash {i} has {len(h)} bytes, want {HASH_SIZE}")


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    sha = _sha256
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = sha(_NODE_PREFIX + h + seed).digest()
        else:
            seed = sha(_NODE_PREFIX + seed + h).digest()
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    # Only left siblings count: this recomputes the older, smaller version of the same subtree.
    sha = _sha256
    for i, h in enumerate(proof):
        if (index >> i) & 1:
            seed = sha(_NODE_PREFIX + h + seed).digest()
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    sha = _sha256
    for h in proof:
        seed = sha(_NODE_PREFIX + h + seed).digest()
    return seed


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof commits to; raises unless the proof has exactly its shape."""
    _check_size("size", size)
    if not 0 <= index < size:
        raise TreeSizeError(f"index {index} is not below size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise MalformedProofError(f"leaf hash has {len(leaf_hash)} bytes, want {HASH_SIZE}")
    inner, border = _decompose(index, size)
    if len(proof) != inner + border:
        raise MalformedProofError(f"proof has {len(proof)} hashes, want {inner + border}")
    _check_proof_hashes(proof)
    res = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(res, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise a ProofError unless `proof` shows `leaf_hash` is leaf `index` of the tree `root`."""
    calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)
    if calculated != root:
        raise RootMismatchError(root, calculated)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise a ProofError unless the tree (size2, root2) extends the tree (size1, root1)."""
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size2 < size1:
        raise TreeSizeError(f"size2 {size2} < size1 {size1}")
    # Checked before the equal-size shortcut: the reference vectors reject 0 -> 0 too, since an
    # empty old tree commits to nothing and proves nothing.
    if size1 == 0:
        raise TreeSizeError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise MalformedProofError("size1 == size2 but the proof is not empty")
        if root1 != root2:
            raise RootMismatchError(root2, root1)
        return
    if not proof:
        raise MalformedProofError("empty consistency proof for different sizes")

    inner, border = _decompose(size1 - 1, size2)
    shift = ((size1 & -size1).bit_length()) - 1
    inner -= shift  # shift < inner whenever size1 < size2
    if size1 == 1 << shift:
        seed, start = root1, 0
    else:
        seed, start = proof[0], 1
    if len(proof) != start + inner + border:
        raise MalformedProofError(f"proof has {len(proof)} hashes, want {start + inner + border}")
    _check_proof_hashes(proof)
    rest = proof[start:]
    mask = (size1 - 1) >> shift  # chaining starts at level `shift`

    hash1 = _chain_inner_right(seed, rest[:inner], mask)
    hash1 = _chain_border_right(hash1, rest[inner:])
    if hash1 != root1:
        raise RootMismatchError(root1, hash1)
    hash2 = _chain_inner(seed, rest[:inner], mask)
    hash2 = _chain_border_right(hash2, rest[inner:])
    if hash2 != root2:
        raise RootMismatchError(root2, hash2)
