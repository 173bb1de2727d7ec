"""The witness's state on disk: one JSON file per log (latest cosigned checkpoint), replaced
atomically and fsynced before a cosignature leaves, plus fork evidence files kept forever."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import structlog

from services.witness.domain import WitnessedState

log = structlog.get_logger(__name__)


class FileWitnessStore:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._forks = folder / "forks"
        self._forks.mkdir(parents=True, exist_ok=True)

    def _path(self, origin: str) -> Path:
        # Origins are URL-like: a digest keeps them out of the file system's syntax.
        return self._folder / f"log-{hashlib.sha256(origin.encode()).hexdigest()[:32]}.json"

    def load(self, origin: str) -> WitnessedState | None:
        path = self._path(origin)
        if not path.exists():
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc["origin"] != origin:
            raise RuntimeError(f"{path} belongs to {doc['origin']!r}, not {origin!r}")
        return WitnessedState(
            doc["size"], base64.b64decode(doc["root"]), base64.b64decode(doc["note"])
        )

    def save(self, origin: str, state: WitnessedState) -> None:
        doc = {
            "origin": origin,
            "size": state.size,
            "root": base64.b64encode(state.root).decode(),
            "note": base64.b64encode(state.note).decode(),
        }
        _write_durably(self._path(origin), json.dumps(doc, indent=2).encode())

    def keep_fork_evidence(self, origin: str, held: WitnessedState, shown: bytes, why: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        doc = {
            "origin": origin,
            "why": why,
            "held_note": held.note.decode("utf-8"),
            "shown_note": shown.decode("utf-8", errors="replace"),
        }
        path = self._forks / f"{stamp}.json"
        _write_durably(path, json.dumps(doc, indent=2, ensure_ascii=False).encode())
        log.error("witness_fork_evidence", origin=origin, why=why, evidence=str(path))

    def fork_evidence(self) -> list[Path]:
        return sorted(self._forks.glob("*.json"))


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
