"""The emulator's mailboxes and agency registry, kept in one JSON file (rewritten atomically after
every change) so that a restarted emulator still holds what it accepted."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class System:
    """A connected system (a provincial axis, a ministry's DMS): id, secret, agencies served."""

    system_id: str
    secret: str
    agencies: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RegistryAgency:
    code: str
    name: str
    pid: str = ""
    mail: str = ""
    old_code: str = ""
    locked: bool = False
    deleted: bool = False
    version: int = 0


@dataclass(slots=True)
class MailboxItem:
    """One upload (`doc_id`) for one recipient agency."""

    doc_id: str
    messagetype: str  # edoc | status
    sender: str
    recipient: str
    sha256: str
    file_b64: str
    document_id: str
    notation: str
    title: str
    created_at: str  # ISO 8601, UTC
    status: str = "initial"  # initial | done | fail
    updated_at: str = ""

    @property
    def file(self) -> bytes:
        return base64.b64decode(self.file_b64)


@dataclass(slots=True)
class EmulatorState:
    systems: dict[str, System] = field(default_factory=dict)
    agencies: dict[str, RegistryAgency] = field(default_factory=dict)
    items: list[MailboxItem] = field(default_factory=list)
    registry_version: int = 0
    next_doc: int = 1

    def system_of(self, agency: str) -> System | None:
        for system in self.systems.values():
            if agency in system.agencies:
                return system
        return None

    def touch(self, agency: RegistryAgency) -> None:
        self.registry_version += 1
        agency.version = self.registry_version

    def to_json(self) -> dict[str, Any]:
        return {
            "systems": [dataclasses.asdict(s) for s in self.systems.values()],
            "agencies": [dataclasses.asdict(a) for a in self.agencies.values()],
            "items": [dataclasses.asdict(i) for i in self.items],
            "registry_version": self.registry_version,
            "next_doc": self.next_doc,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmulatorState:
        state = cls(
            registry_version=int(data.get("registry_version", 0)),
            next_doc=int(data.get("next_doc", 1)),
        )
        for raw in data.get("systems", []):
            system = System(**raw)
            state.systems[system.system_id] = system
        for raw in data.get("agencies", []):
            agency = RegistryAgency(**raw)
            state.agencies[agency.code] = agency
        state.items = [MailboxItem(**raw) for raw in data.get("items", [])]
        return state


def load(path: Path, seed: Path | None) -> EmulatorState:
    """The saved state, else the seed file's systems and agencies (each agency a new version)."""
    if path.exists():
        return EmulatorState.from_json(json.loads(path.read_text("utf-8")))
    state = EmulatorState()
    if seed is not None:
        data = json.loads(seed.read_text("utf-8"))
        for raw in data.get("systems", []):
            system = System(raw["system_id"], _secret(raw), list(raw.get("agencies", [])))
            state.systems[system.system_id] = system
        for raw in data.get("agencies", []):
            agency = RegistryAgency(
                code=raw["code"],
                name=raw.get("name", raw["code"]),
                pid=raw.get("pid", ""),
                mail=raw.get("mail", ""),
                old_code=raw.get("oldCode", ""),
                locked=bool(raw.get("locked", False)),
            )
            state.agencies[agency.code] = agency
            state.touch(agency)
    return state


def _secret(raw: dict[str, Any]) -> str:
    """A system's secret, from a file when the seed names one (never written into the seed)."""
    if "secret_file" in raw:
        return Path(raw["secret_file"]).read_text("utf-8").strip()
    return str(raw["secret"])


def save(path: Path, state: EmulatorState) -> None:
    """Written to a temporary file, flushed, then renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".emulator-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(state.to_json(), out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
