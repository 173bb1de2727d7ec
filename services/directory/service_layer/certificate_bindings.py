"""Certificate binding use cases: bind and unbind (administrators, ledgered), look up."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import structlog
from cryptography import x509

from services.common.errors import NotFoundError, ValidationError
from services.directory.domain.certificate_binding import (
    CertificateBinding,
    CertificateRole,
    binding_of,
)
from services.directory.service_layer.ports import Agencies, CertificateBindings

log = structlog.get_logger(__name__)


class CertificateBindingHandlers:
    def __init__(self, bindings: CertificateBindings, agencies: Agencies) -> None:
        self._bindings = bindings
        self._agencies = agencies

    async def bind(
        self,
        certificate: x509.Certificate,
        agency_code: str,
        role: CertificateRole | None,
        actor: str,
    ) -> tuple[CertificateBinding, bool]:
        binding, problems = binding_of(certificate, agency_code, role)
        if binding is None:
            raise ValidationError("cannot bind this certificate", problems)
        if await self._agencies.get(agency_code) is None:
            raise NotFoundError(f"no agency {agency_code}")
        stored, changed = await self._bindings.bind(dataclasses.replace(binding, bound_by=actor))
        if changed:
            log.warning(
                "certificate_bound",
                agency=stored.agency_code,
                role=stored.role.value,
                subject=stored.subject,
                spki_sha256=stored.spki_sha256,
                by=actor,
            )
        return stored, changed

    async def unbind(self, spki_sha256: str, actor: str) -> CertificateBinding:
        removed = await self._bindings.unbind(spki_sha256.lower(), actor)
        if removed is None:
            raise NotFoundError(f"no certificate binding for key {spki_sha256}")
        log.warning(
            "certificate_unbound",
            agency=removed.agency_code,
            role=removed.role.value,
            spki_sha256=removed.spki_sha256,
            by=actor,
        )
        return removed

    async def find(
        self, *, agency_code: str | None = None, spki_sha256: Sequence[str] | None = None
    ) -> list[CertificateBinding]:
        keys = None if spki_sha256 is None else [key.lower() for key in spki_sha256]
        return await self._bindings.find(agency_code=agency_code, spki_sha256=keys)
