"""The test corpora: the repository's own, plus the wider one in ../shared/testdata if present.

The repository carries what its suite needs (tests/data, and the demo directory the services
ship). A clone with nothing beside it runs on those alone; where ../shared/testdata exists (CI),
its extra cases are run too, and the pytest header says which corpora were used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from services.directory.agency_csv import DEMO_DIRECTORY_CSV

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "testdata"
# Each corpus's folder inside the repository, by the name of its folder under ../shared/testdata.
IN_REPO = {
    "directory": DEMO_DIRECTORY_CSV.parent,
    "edxml": REPO / "tests" / "data" / "edxml",
    "merkle": REPO / "tests" / "data" / "merkle",
}


@dataclass(frozen=True, slots=True)
class CorpusFile:
    """One test file: where it comes from ("repo" or "shared") and its path within its corpus."""

    origin: str
    name: str
    path: Path

    @property
    def id(self) -> str:
        """A test id that says where the case comes from."""
        return f"{self.origin}:{self.name}"


def shared_present() -> bool:
    """Whether the wider corpus sits beside the repository."""
    return SHARED.is_dir()


def corpus_files(corpus: str, pattern: str, *, shared: Path = SHARED) -> list[CorpusFile]:
    """Every file of ``corpus`` matching ``pattern``: the repository's, then those of
    ../shared/testdata/<corpus> whose content the repository does not already hold."""
    own = _files("repo", IN_REPO[corpus], pattern)
    seen = {_digest(found.path) for found in own}
    extra = [
        found
        for found in _files("shared", shared / corpus, pattern)
        if _digest(found.path) not in seen
    ]
    return own + extra


def header_line() -> str:
    """What the pytest header reports about the corpora in use."""
    if not shared_present():
        return f"testdata: the repository's corpus only ({SHARED} is absent)"
    return f"testdata: the repository's corpus and the wider one at {SHARED}"


def _files(origin: str, root: Path, pattern: str) -> list[CorpusFile]:
    if not root.is_dir():
        return []
    return [
        CorpusFile(origin, path.relative_to(root).as_posix(), path)
        for path in sorted(root.rglob(pattern))
        if path.is_file()
    ]


def _digest(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()
