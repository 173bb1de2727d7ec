"""C2SP tlog-tiles addressing: tile coordinates and the exact path syntax of hash tiles
(`tile/<L>/<N>[.p/<W>]`) and entry bundles (`tile/entries/<N>[.p/<W>]`). Shared by the log's
server side, the gateway that serves the paths, and any client mirroring the log."""

from __future__ import annotations

import re
from dataclasses import dataclass

from docaxis_client.ledger.merkle import HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE
MAX_TILE_LEVEL = 63

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_INDEX = re.compile(r"(?:x[0-9]{3}/)*[0-9]{3}")


@dataclass(frozen=True, slots=True, order=True)
class TileCoord:
    """Tile `index` at tile `level` (tree level 8*level), holding `width` hashes (256 = full)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_TILE_LEVEL:
            raise ValueError(f"tile level {self.level} outside 0..{MAX_TILE_LEVEL}")
        if self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise ValueError(f"bad tile index {self.index} or width {self.width}")

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        return tile_path(self.level, self.index, self.width)

    @property
    def start(self) -> int:
        """First leaf index the tile spans."""
        return self.index << (TILE_HEIGHT * (self.level + 1))

    def with_width(self, width: int) -> TileCoord:
        return TileCoord(self.level, self.index, width)


def format_tile_index(n: int) -> str:
    """`1234067` -> `x001/x234/067`: 3-digit groups, all but the last prefixed with `x`."""
    if n < 0:
        raise ValueError("tile index must be non-negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def parse_tile_index(text: str) -> int:
    """Inverse of format_tile_index; refuses non-canonical forms such as `x000/001`."""
    if not _INDEX.fullmatch(text):
        raise ValueError(f"malformed tile index {text!r}")
    n = int(text.replace("x", "").replace("/", ""))
    if format_tile_index(n) != text:
        raise ValueError(f"non-canonical tile index {text!r}")
    return n


def _width_suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} outside 1..256")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """`tile/<L>/<N>[.p/<W>]`."""
    if not 0 <= level <= MAX_TILE_LEVEL:
        raise ValueError(f"tile level {level} outside 0..{MAX_TILE_LEVEL}")
    return f"tile/{level}/{format_tile_index(index)}{_width_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """`tile/entries/<N>[.p/<W>]`."""
    return f"tile/entries/{format_tile_index(index)}{_width_suffix(width)}"


def _parse_suffix(rest: str) -> tuple[int, int]:
    index_text, sep, width_text = rest.partition(".p/")
    width = TILE_WIDTH
    if sep:
        if not _DECIMAL.fullmatch(width_text) or not 1 <= int(width_text) < TILE_WIDTH:
            raise ValueError(f"malformed partial width {width_text!r}")
        width = int(width_text)
    return parse_tile_index(index_text), width


def parse_tile_path(path: str) -> TileCoord:
    """Parse `tile/<L>/<N>[.p/<W>]` strictly (no leading zeros, canonical index)."""
    prefix, _, rest = path.partition("/")
    level_text, _, rest = rest.partition("/")
    if prefix != "tile" or not _DECIMAL.fullmatch(level_text):
        raise ValueError(f"not a hash tile path: {path!r}")
    index, width = _parse_suffix(rest)
    return TileCoord(int(level_text), index, width)


def parse_entries_path(path: str) -> tuple[int, int]:
    """Parse `tile/entries/<N>[.p/<W>]` into (index, width)."""
    if not path.startswith("tile/entries/"):
        raise ValueError(f"not an entry bundle path: {path!r}")
    return _parse_suffix(path.removeprefix("tile/entries/"))
