"""Reading agency lists (code, name, parent_code, kind, valid_from, valid_to, successor_code)."""

from __future__ import annotations

import csv
from collections.abc import Awaitable, Callable
from pathlib import Path

from docaxis.directory.v1 import directory_service_pb2 as pb

# The demo directory `docaxis run --seed-demo` registers; it ships inside the package so that a
# clone (or an installed wheel) runs its demo with nothing beside it.
DEMO_DIRECTORY_CSV = Path(__file__).resolve().parent / "demo" / "agencies.csv"
_KINDS = {
    "ministry": pb.AGENCY_KIND_MINISTRY,
    "province": pb.AGENCY_KIND_PROVINCE,
    "department": pb.AGENCY_KIND_DEPARTMENT,
    "district": pb.AGENCY_KIND_DISTRICT,
    "ward": pb.AGENCY_KIND_WARD,
    "commune": pb.AGENCY_KIND_COMMUNE,
    "special_zone": pb.AGENCY_KIND_SPECIAL_ZONE,
    "other": pb.AGENCY_KIND_OTHER,
}


def kind_from_name(name: str) -> pb.AgencyKind.ValueType:
    try:
        return _KINDS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown agency kind {name!r} (one of {', '.join(_KINDS)})") from None


def read_agency_csv(path: Path) -> list[pb.Agency]:
    """Agencies from a CSV file, parents before children so each registration finds its parent."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    agencies = {
        row["code"].strip(): pb.Agency(
            code=row["code"].strip(),
            name=row["name"].strip(),
            parent_code=(row.get("parent_code") or "").strip(),
            kind=kind_from_name(row.get("kind") or "other"),
            valid_from=(row.get("valid_from") or "").strip(),
            valid_to=(row.get("valid_to") or "").strip(),
            successor_codes=[
                code.strip()
                for code in (row.get("successor_code") or "").split(";")
                if code.strip()
            ],
            email=(row.get("email") or "").strip(),
        )
        for row in rows
    }
    ordered: list[pb.Agency] = []
    placed: set[str] = set()

    def place(code: str, seen: tuple[str, ...]) -> None:
        if code in placed or code not in agencies:
            return
        if code in seen:
            raise ValueError(f"parent cycle through {code}")
        parent = agencies[code].parent_code
        if parent:
            place(parent, (*seen, code))
        placed.add(code)
        ordered.append(agencies[code])

    for code in agencies:
        place(code, ())
    return ordered


async def register_all(
    agencies: list[pb.Agency],
    register: Callable[[pb.Agency], Awaitable[bool]],
    progress: Callable[[int], None] = lambda _done: None,
) -> tuple[int, int]:
    """Registers each agency (telling `progress` of each); returns (created, already present)."""
    created = 0
    for agency in agencies:
        if await register(agency):
            created += 1
        progress(1)
    return created, len(agencies) - created
