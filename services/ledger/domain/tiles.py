"""C2SP tlog-tiles: building tiles, subtree hashes from tiles, entry bundles (the path syntax is
docaxis_client.ledger.tiles, re-exported here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Self

from docaxis_client.ledger.merkle import (
    HASH_SIZE,
    MAX_TREE_SIZE,
    HashSource,
    Node,
    TreeSizeError,
    perfect_root,
)
from docaxis_client.ledger.tiles import (
    TILE_BYTES,
    TILE_HEIGHT,
    TILE_WIDTH,
    TileCoord,
)

MAX_ENTRY_SIZE = 0xFFFF  # entry bundles frame each entry with a big-endian uint16 length

# ---- geometry --------------------------------------------------------------------------------


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile (level, index) holds in a tree of `size` leaves (0 = does not exist)."""
    count = size >> (TILE_HEIGHT * level)  # hashes that exist at this tile level
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def tiles_for_size(size: int) -> list[TileCoord]:
    """Every tile (full and partial) a log of `size` leaves serves, level by level."""
    tiles: list[TileCoord] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        tiles.extend(TileCoord(level, i) for i in range(count // TILE_WIDTH))
        if count % TILE_WIDTH:
            tiles.append(TileCoord(level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return tiles


def new_full_tiles(old_size: int, new_size: int) -> list[TileCoord]:
    """Full tiles that exist at `new_size` but not at `old_size`: what a batch must insert."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"sizes must grow: {old_size} -> {new_size}")
    tiles: list[TileCoord] = []
    level = 0
    while new_size >> (TILE_HEIGHT * (level + 1)):
        before = (old_size >> (TILE_HEIGHT * level)) // TILE_WIDTH
        after = (new_size >> (TILE_HEIGHT * level)) // TILE_WIDTH
        tiles.extend(TileCoord(level, i) for i in range(before, after))
        level += 1
    return tiles


def node_tile(level: int, index: int) -> tuple[TileCoord, int, int]:
    """Where the hashes of tree node (level, index) live: (full-width tile, offset, count).

    A node at tree level 8L + r is the root over 2**r consecutive hashes of one tile at tile
    level L, so any node costs exactly one tile read plus at most 127 hashes.
    """
    tile_level, r = divmod(level, TILE_HEIGHT)
    first = index << r  # position among the hashes of tile level `tile_level`
    return TileCoord(tile_level, first // TILE_WIDTH), first % TILE_WIDTH, 1 << r


def tiles_for_nodes(nodes: Iterable[Node], size: int) -> list[TileCoord]:
    """The tiles, with their widths at `size`, needed to hash `nodes` (e.g. a ProofPlan's)."""
    wanted: set[TileCoord] = set()
    for level, index in nodes:
        tile, offset, count = node_tile(level, index)
        width = tile_width(tile.level, tile.index, size)
        if offset + count > width:
            raise TreeSizeError(f"node ({level}, {index}) is not complete at size {size}")
        wanted.add(tile.with_width(width))
    return sorted(wanted)


def split_tile(data: bytes) -> list[bytes]:
    if len(data) % HASH_SIZE or not 0 < len(data) <= TILE_BYTES:
        raise ValueError(f"tile data of {len(data)} bytes is not 1..256 hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def tile_root(data: bytes) -> bytes:
    """The hash a full tile contributes to the tile one level up (root of its 256 hashes)."""
    if len(data) != TILE_BYTES:
        raise ValueError("only full tiles have a root in the level above")
    return perfect_root(split_tile(data))


def subtree_hash_from_tile(data: bytes, level: int, index: int) -> bytes:
    """Hash of node (level, index) from the tile holding it (see node_tile)."""
    _, offset, count = node_tile(level, index)
    if (offset + count) * HASH_SIZE > len(data):
        raise ValueError(f"tile of {len(data) // HASH_SIZE} hashes lacks node ({level}, {index})")
    start = offset * HASH_SIZE
    if count == 1:
        return data[start : start + HASH_SIZE]
    return perfect_root(split_tile(data[start : start + count * HASH_SIZE]))


class TileHashSource:
    """A merkle.HashSource over tiles (full or partial) at a fixed tree size.

    `read_tile` returns the bytes of a tile (the coordinate carries its width at `size`); tiles are
    cached per instance, so a proof costs one read per distinct tile. For async storage, prefetch
    `tiles_for_nodes(plan.nodes, size)` and pass a dict lookup as `read_tile`.
    """

    def __init__(self, size: int, read_tile: Callable[[TileCoord], bytes]) -> None:
        if not 0 <= size <= MAX_TREE_SIZE:
            raise TreeSizeError(f"size {size} is not a uint64")
        self._size = size
        self._read = read_tile
        self._cache: dict[TileCoord, bytes] = {}

    @property
    def size(self) -> int:
        return self._size

    def subtree_hash(self, level: int, index: int) -> bytes:
        tile, offset, count = node_tile(level, index)
        width = tile_width(tile.level, tile.index, self._size)
        if offset + count > width:
            raise TreeSizeError(f"node ({level}, {index}) is not complete at size {self._size}")
        coord = tile.with_width(width)
        data = self._cache.get(coord)
        if data is None:
            data = self._read(coord)
            if len(data) != width * HASH_SIZE:
                raise ValueError(f"{coord.path}: {len(data)} bytes, want {width * HASH_SIZE}")
            self._cache[coord] = data
        return subtree_hash_from_tile(data, level, index)


def tiles_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> dict[TileCoord, bytes]:
    """Every tile of the tree over `leaf_hashes` (reference construction for exports and tests)."""
    tiles: dict[TileCoord, bytes] = {}
    level_hashes = list(leaf_hashes)
    level = 0
    while level_hashes:
        parents: list[bytes] = []
        for i in range(0, len(level_hashes), TILE_WIDTH):
            chunk = b"".join(level_hashes[i : i + TILE_WIDTH])
            width = len(chunk) // HASH_SIZE
            tiles[TileCoord(level, i // TILE_WIDTH, width)] = chunk
            if width == TILE_WIDTH:
                parents.append(tile_root(chunk))
        level_hashes = parents
        level += 1
    return tiles


class TileBuilder:
    """The partial right-edge tile of every tile level; appending leaves yields full tiles.

    State is at most ~255 hashes per level (8 KiB each); it can live next to the compact range in
    `tree_state` (`to_bytes`) or be rebuilt from stored hashes with `from_source`. Full tiles come
    out exactly once, in order, so they can be inserted as immutable rows.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self, size: int = 0, partial: Sequence[bytes] | None = None) -> None:
        if not 0 <= size <= MAX_TREE_SIZE:
            raise TreeSizeError(f"size {size} is not a uint64")
        widths = self._widths(size)
        if partial is None:
            if size:
                raise ValueError("a non-empty tile builder needs its partial tiles")
            partial = [b""]
        if len(partial) != len(widths):
            raise ValueError(f"size {size} needs {len(widths)} partial tile levels")
        for level, (data, width) in enumerate(zip(partial, widths, strict=True)):
            if len(data) != width * HASH_SIZE:
                raise ValueError(f"partial tile at level {level} must hold {width} hashes")
        self._size = size
        self._levels = [bytearray(p) for p in partial]

    @staticmethod
    def _widths(size: int) -> list[int]:
        widths = [size & (TILE_WIDTH - 1)]
        level = 1
        while size >> (TILE_HEIGHT * level):
            widths.append((size >> (TILE_HEIGHT * level)) & (TILE_WIDTH - 1))
            level += 1
        return widths

    @property
    def size(self) -> int:
        return self._size

    def extend(self, leaf_hashes: Iterable[bytes]) -> list[tuple[TileCoord, bytes]]:
        """Append leaf hashes; returns the tiles that became full, lower levels first per leaf."""
        done: list[tuple[TileCoord, bytes]] = []
        levels = self._levels
        size = self._size
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ValueError("leaf hash must be 32 bytes")
            levels[0] += h
            size += 1
            level = 0
            while len(levels[level]) == TILE_BYTES:
                data = bytes(levels[level])
                levels[level].clear()
                index = (size >> (TILE_HEIGHT * (level + 1))) - 1
                done.append((TileCoord(level, index), data))
                level += 1
                if level == len(levels):
                    levels.append(bytearray())
                levels[level] += tile_root(data)
        self._size = size
        return done

    def partial_tiles(self) -> list[tuple[TileCoord, bytes]]:
        """The non-empty partial tiles at the current size (what `tile/<L>/<N>.p/<W>` serves)."""
        out: list[tuple[TileCoord, bytes]] = []
        for level, data in enumerate(self._levels):
            if data:
                index = self._size >> (TILE_HEIGHT * (level + 1))
                out.append((TileCoord(level, index, len(data) // HASH_SIZE), bytes(data)))
        return out

    def to_bytes(self) -> bytes:
        return self._size.to_bytes(8, "big") + b"".join(self._levels)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if len(data) < 8:
            raise ValueError("tile builder encoding too short")
        size = int.from_bytes(data[:8], "big")
        partial: list[bytes] = []
        pos = 8
        for width in cls._widths(size):
            partial.append(data[pos : pos + width * HASH_SIZE])
            pos += width * HASH_SIZE
        if pos != len(data):
            raise ValueError("tile builder encoding length does not match its size")
        return cls(size, partial)

    @classmethod
    def from_source(cls, source: HashSource, size: int) -> Self:
        """Rebuild the partial tiles at `size` from stored subtree hashes (leaf rows, tiles)."""
        partial: list[bytes] = []
        for level, width in enumerate(cls._widths(size)):
            first = (size >> (TILE_HEIGHT * level)) - width
            partial.append(
                b"".join(source.subtree_hash(TILE_HEIGHT * level, first + i) for i in range(width))
            )
        return cls(size, partial)


# ---- entry bundles ---------------------------------------------------------------------------


class EntryBundleError(ValueError):
    """Entry bundle bytes that do not frame whole entries."""

    reason = "BUNDLE_MALFORMED"


def encode_entries(bodies: Iterable[bytes]) -> bytes:
    """Entry bundle framing: each body prefixed by its big-endian uint16 length."""
    out = bytearray()
    for i, body in enumerate(bodies):
        if len(body) > MAX_ENTRY_SIZE:
            raise ValueError(
                f"entry {i} is {len(body)} bytes, the bundle limit is {MAX_ENTRY_SIZE}"
            )
        out += len(body).to_bytes(2, "big")
        out += body
    return bytes(out)


def iter_entries(data: bytes) -> Iterator[bytes]:
    """Decode an entry bundle (or a concatenation of bundles) lazily; raises on truncation."""
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 2 > end:
            raise EntryBundleError(f"truncated length prefix at byte {pos}")
        n = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + n > end:
            raise EntryBundleError(f"truncated entry at byte {pos - 2}: {n} bytes announced")
        yield data[pos : pos + n]
        pos += n


def decode_entries(data: bytes) -> list[bytes]:
    return list(iter_entries(data))
