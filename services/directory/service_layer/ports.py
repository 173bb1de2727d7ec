"""What the directory's use cases need from the outside world."""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from services.directory.domain.certificate_binding import CertificateBinding
from services.directory.domain.model import Agency
from services.directory.domain.reorganisation import Reorganisation
from services.directory.domain.signature_policy import SignaturePolicy


class AgencyExistsError(Exception):
    """`add` found the code already taken (a concurrent registration won)."""


class StaleAgencyError(Exception):
    """`record_reorganisation` found an agency changed since it was read."""


class Agencies(Protocol):
    """The agency store. Codes are never deleted: closing an agency is an update."""

    async def get(self, code: str) -> Agency | None: ...

    async def get_many(self, codes: Sequence[str]) -> dict[str, Agency]: ...

    async def add(self, agency: Agency) -> Agency:
        """Stores a new agency and returns it with its version; AgencyExistsError if the code is
        taken."""
        ...

    async def list(
        self, *, parent_code: str | None, open_on: dt.date | None, after_code: str, limit: int
    ) -> list[Agency]:
        """Agencies ordered by code, strictly after `after_code`; with `open_on`, only those not
        closed on that day."""
        ...

    async def record_reorganisation(
        self, reorganisation: Reorganisation, closed: Sequence[Agency]
    ) -> tuple[Reorganisation, builtins.list[Agency]]:
        """In one transaction: stores the reorganisation (returned with its id), replaces each
        agency of `closed` (as read, with its version, then closed by the reorganisation) under a
        new version, and stages a `directory` ledger event. StaleAgencyError, storing nothing, if
        any of them changed since it was read."""
        ...

    async def changes(self, since_version: int, limit: int) -> builtins.list[Agency]:
        """Agencies whose version is above `since_version`, by version. Versions are assigned
        under one lock, so a reader never sees a version commit after a higher one."""
        ...

    async def latest_version(self) -> int:
        """The highest version stored (0 when empty)."""
        ...


class SignaturePolicies(Protocol):
    """Signature policies per agency and document type (ANY_DOCUMENT_TYPE for every type)."""

    async def find(self, agency_code: str, document_type: int) -> SignaturePolicy | None:
        """The agency's policy for this type, else its policy for every type, else None."""
        ...

    async def save(self, policy: SignaturePolicy) -> SignaturePolicy:
        """Stores (replaces) the policy of its agency and type and stages a `directory` ledger
        event in the same transaction; returns it as stored."""
        ...


class CertificateBindings(Protocol):
    """Certificates bound to agencies, by the SHA-256 of their key."""

    async def find(
        self, *, agency_code: str | None, spki_sha256: Sequence[str] | None
    ) -> builtins.list[CertificateBinding]:
        """Bindings of the agency and/or of these keys (neither: all), by agency then key."""
        ...

    async def bind(self, binding: CertificateBinding) -> tuple[CertificateBinding, bool]:
        """Stores (replaces) the binding of its key and stages a `directory` ledger event in the
        same transaction when it changed; returns it as stored and whether it changed."""
        ...

    async def unbind(self, spki_sha256: str, actor: str) -> CertificateBinding | None:
        """Removes the key's binding (staging a ledger event) and returns it; None if none."""
        ...


class HubRoutes(Protocol):
    """Federation: route patterns to peer hubs, and the agencies pulled from peers' directories
    (stored among this hub's agencies with `served_by` set, domain/hubs.py)."""

    async def routes(self) -> dict[str, str]:
        """Every route, pattern → hub code."""
        ...

    async def set_route(self, pattern: str, hub_code: str | None, updated_by: str) -> None:
        """Stores (or with None removes) the route of a pattern and stages a `directory` ledger
        event in the same transaction."""
        ...

    async def peer_since(self, hub_code: str) -> int:
        """The peer's feed version applied so far (0: nothing yet)."""
        ...

    async def apply_peer_page(
        self, hub_code: str, agencies: Sequence[Agency], next_since: int
    ) -> int:
        """In one transaction: stores each agency as served by the peer under a new version of
        this directory (new or changed ones only; an agency this hub serves itself is never
        replaced), and the peer's feed position. Returns how many agencies changed."""
        ...
