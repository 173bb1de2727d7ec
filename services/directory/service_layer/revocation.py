"""Ingesting certificate revocation lists: verified against the anchors, then every process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from cryptography.hazmat.primitives import serialization

from docaxis_client.credentials import parse_crl
from docaxis_client.trust.errors import TrustError
from services.common.errors import FieldViolation, ValidationError
from services.common.trust import CrlInfo, TrustRegistry, domain_error

log = structlog.get_logger(__name__)

MAX_CRL_BYTES = 16 * 1024 * 1024


class Crls(Protocol):
    """The stored CRLs: the newest of each issuing CA."""

    async def save_if_newer(self, info: CrlInfo, der: bytes) -> bool:
        """Stores the CRL unless the stored one of the same issuer is as new; on a change, every
        process is told (at commit) to reload. Returns whether anything changed."""
        ...

    async def all(self) -> Sequence[bytes]:
        """Every stored CRL, DER."""
        ...


@dataclass(frozen=True, slots=True)
class Ingestion:
    info: CrlInfo
    changed: bool


class RevocationHandlers:
    def __init__(self, crls: Crls, trust: TrustRegistry) -> None:
        self._crls = crls
        self._trust = trust

    async def ingest(self, data: bytes) -> Ingestion:
        if not data or len(data) > MAX_CRL_BYTES:
            raise ValidationError(
                "invalid CRL", [FieldViolation("crl", f"1 to {MAX_CRL_BYTES} bytes")]
            )
        try:
            crl = parse_crl(data)
        except ValueError:
            raise ValidationError(
                "invalid CRL", [FieldViolation("crl", "not an X.509 CRL (PEM or DER)")]
            ) from None
        try:
            info = self._trust.check_crl(crl)
        except TrustError as exc:
            raise domain_error(exc) from None
        changed = await self._crls.save_if_newer(info, crl.public_bytes(serialization.Encoding.DER))
        if changed:
            # This process at once; the others on the NOTIFY sent at commit.
            await self.reload()
        log.info(
            "crl_ingested",
            issuer=info.issuer,
            crl_number=str(info.number),
            revoked=info.revoked_count,
            changed=changed,
        )
        return Ingestion(info, changed)

    async def reload(self) -> None:
        self._trust.use_crls([parse_crl(der) for der in await self._crls.all()])
