"""C2SP tlog-tiles: paths, tile construction, proofs served from tiles, entry bundles."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from docaxis_client.ledger.merkle import (
    MemoryTree,
    TreeSizeError,
    consistency_plan,
    hash_leaf,
    inclusion_plan,
    mth,
)
from docaxis_client.ledger.tiles import (
    TILE_BYTES,
    TileCoord,
    entries_path,
    format_tile_index,
    parse_entries_path,
    parse_tile_index,
    parse_tile_path,
    tile_path,
)
from services.ledger.domain.tiles import (
    TileBuilder,
    TileHashSource,
    decode_entries,
    encode_entries,
    new_full_tiles,
    tile_root,
    tiles_for_nodes,
    tiles_for_size,
    tiles_from_leaf_hashes,
)

FAST = settings(database=None, deadline=None, max_examples=60)
# Past 256**2 leaves, so level-2 tiles and partial tiles at three levels take part.
BIG = 256 * 256 + 3 * 256 + 17


@functools.cache
def leaves(n: int) -> tuple[bytes, ...]:
    return tuple(hash_leaf(i.to_bytes(4, "big")) for i in range(n))


@functools.cache
def big_tree() -> MemoryTree:
    return MemoryTree(leaves(BIG))


@functools.cache
def big_tiles() -> dict[TileCoord, bytes]:
    return tiles_from_leaf_hashes(leaves(BIG))


@functools.cache
def widest() -> dict[tuple[int, int], bytes]:
    return {(c.level, c.index): data for c, data in big_tiles().items()}


def prefix_of_big_tile(coord: TileCoord) -> bytes:
    """A tile at a smaller size read from the big tree's tiles: a partial tile is a prefix of
    its eventual full (or wider partial) tile, which is what lets logs derive them on read."""
    return widest()[(coord.level, coord.index)][: coord.width * 32]


def tile_reader(size: int) -> TileHashSource:
    return TileHashSource(size, prefix_of_big_tile)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")],
)
def test_tile_indices_encode_in_three_digit_groups(n: int, text: str) -> None:
    """N is written in zero-padded 3-digit groups, all but the last prefixed with x."""
    assert format_tile_index(n) == text
    assert parse_tile_index(text) == n


def test_tile_paths_follow_the_spec_and_parse_back() -> None:
    """Full, partial and entry-bundle paths round-trip; non-canonical forms are refused."""
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(2, 5, 17) == "tile/2/005.p/17"
    assert entries_path(1000, 3) == "tile/entries/x001/000.p/3"
    assert parse_tile_path("tile/2/005.p/17") == TileCoord(2, 5, 17)
    assert parse_tile_path("tile/0/x001/x234/067") == TileCoord(0, 1234067)
    assert parse_entries_path("tile/entries/x001/000.p/3") == (1000, 3)
    assert TileCoord(1, 2, 3).path == "tile/1/002.p/3"
    for bad in [
        "tile/01/000",
        "tile/0/x000/001",
        "tile/0/1",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/64/000",
        "tile/0/000.p/07",
        "tiles/0/000",
        "tile/entries/000",
    ]:
        with pytest.raises(ValueError):  # noqa: PT011 - each case fails a different check
            parse_tile_path(bad)


def test_a_tree_of_70000_leaves_has_the_tiles_the_spec_lists() -> None:
    """273 full level-0 tiles, one of width 112, a full level-1 tile, width 17, then width 1."""
    tiles = tiles_for_size(70_000)
    assert [t for t in tiles if t.level == 0 and not t.full] == [TileCoord(0, 273, 112)]
    assert len([t for t in tiles if t.level == 0 and t.full]) == 273
    assert [t for t in tiles if t.level >= 1] == [
        TileCoord(1, 0),
        TileCoord(1, 1, 17),
        TileCoord(2, 0, 1),
    ]
    assert tiles_for_size(256) == [TileCoord(0, 0), TileCoord(1, 0, 1)]


def test_tiles_built_from_leaf_hashes_match_the_tree() -> None:
    """Each tile hash is the root of its 256**level leaves, and tile_root feeds the level up."""
    tiles = big_tiles()
    assert set(tiles) == set(tiles_for_size(BIG))
    t = big_tree()
    for coord, data in tiles.items():
        for i in range(0, len(data) // 32, 37):
            assert data[i * 32 : (i + 1) * 32] == t.subtree_hash(
                8 * coord.level, coord.index * 256 + i
            )
    assert tile_root(tiles[TileCoord(0, 3)]) == tiles[TileCoord(1, 0)][3 * 32 : 4 * 32]


def test_partial_tiles_are_prefixes_of_later_tiles() -> None:
    """The tiles of a smaller tree are the big tree's tiles cut to the smaller width."""
    for size in (1, 255, 256, 257, 65_535, 65_536 + 255):
        small = tiles_from_leaf_hashes(leaves(BIG)[:size])
        for coord, data in small.items():
            assert prefix_of_big_tile(coord) == data


@FAST
@given(st.data())
def test_proofs_from_tiles_equal_proofs_from_the_full_tree(data: st.DataObject) -> None:
    """A TileHashSource gives the same proofs, reading at most two tiles per tile level."""
    size = data.draw(st.integers(1, BIG), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    old = data.draw(st.integers(1, size), label="old size")
    source = tile_reader(size)
    for plan in (inclusion_plan(index, size), consistency_plan(old, size)):
        assert plan.fetch(source) == plan.fetch(big_tree())
        levels = (size.bit_length() + 7) // 8
        assert len(tiles_for_nodes(plan.nodes, size)) <= 2 * levels


def test_tile_sources_refuse_nodes_past_the_right_edge() -> None:
    """A node not complete at the size has no tile to come from."""
    with pytest.raises(TreeSizeError):
        tile_reader(300).subtree_hash(8, 1)
    with pytest.raises(TreeSizeError):
        tiles_for_nodes([(0, 300)], 300)
    assert tile_reader(300).subtree_hash(3, 5) == mth(leaves(BIG)[40:48])


@FAST
@given(st.lists(st.integers(0, 700), max_size=8))
def test_tile_builder_emits_each_full_tile_once_in_any_batching(batches: list[int]) -> None:
    """Batches of appends yield exactly the full tiles of the final size, with the right bytes,
    and the state survives to_bytes/from_bytes and a rebuild from stored hashes."""
    builder = TileBuilder()
    emitted: list[tuple[TileCoord, bytes]] = []
    start = 0
    for count in batches:
        old = builder.size
        state = TileBuilder.from_bytes(builder.to_bytes())
        new = state.extend(leaves(BIG)[start : start + count])
        assert [c for c, _ in new] == new_full_tiles(old, old + count)
        emitted += new
        builder = state
        start += count
    size = builder.size
    reference = tiles_from_leaf_hashes(leaves(BIG)[:size])
    assert dict(emitted) == {c: d for c, d in reference.items() if c.full}
    assert dict(builder.partial_tiles()) == {c: d for c, d in reference.items() if not c.full}
    rebuilt = TileBuilder.from_source(big_tree(), size)
    assert rebuilt.to_bytes() == builder.to_bytes()


def test_tile_builder_crosses_into_level_two_tiles() -> None:
    """Appending 65,536 leaves completes level-0 and level-1 tiles in order."""
    builder = TileBuilder()
    out = builder.extend(leaves(BIG)[: 256 * 256])
    assert out[-1][0] == TileCoord(1, 0)
    assert len(out) == 257
    assert len(out[-1][1]) == TILE_BYTES
    assert builder.partial_tiles() == [(TileCoord(2, 0, 1), tile_root(out[-1][1]))]


def test_entry_bundles_frame_bodies_with_a_uint16_length() -> None:
    """Bodies round-trip; truncation and oversized bodies are refused."""
    bodies = [b"", b"a", b"x" * 65535]
    data = encode_entries(bodies)
    assert data[:5] == b"\x00\x00\x00\x01a"
    assert decode_entries(data) == bodies
    with pytest.raises(ValueError, match="truncated"):
        decode_entries(data[:-1])
    with pytest.raises(ValueError, match="truncated"):
        decode_entries(b"\x00")
    with pytest.raises(ValueError, match="limit"):
        encode_entries([b"x" * 65536])
