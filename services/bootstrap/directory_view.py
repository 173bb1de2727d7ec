"""The directory of this process seen through the exchange's DirectoryLookup port (all-in-one
mode: no network hop). Only the composition root knows both sides, so it adapts one to the
other; the exchange's own code sees its port and its own types."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from docaxis_client.trust.bindings import Bindings, CertificateBinding
from docaxis_client.trust.signatures import SignerRole
from docaxis_client.vietnam import today_in_vietnam
from services.directory.domain import reorganisation as directory
from services.directory.domain.signature_policy import SignaturePolicy
from services.directory.service_layer.certificate_bindings import CertificateBindingHandlers
from services.directory.service_layer.handlers import DirectoryHandlers
from services.directory.service_layer.signature_policies import SignaturePolicyHandlers
from services.exchange.adapters.directory import pieces
from services.exchange.domain.addresses import AddressState, Resolution
from services.exchange.domain.signature_rules import DEFAULT_RULES, SignatureForm, SignatureRules
from services.exchange.service_layer.ports import AgencyView


class LocalDirectoryLookup:
    def __init__(
        self,
        handlers: DirectoryHandlers,
        policies: SignaturePolicyHandlers | None = None,
        bindings: CertificateBindingHandlers | None = None,
    ) -> None:
        self._handlers = handlers
        self._policies = policies
        self._bindings = bindings

    async def certificate_bindings(self, spki_sha256: Sequence[str]) -> Bindings:
        if self._bindings is None or not spki_sha256:
            return {}
        found = await self._bindings.find(spki_sha256=spki_sha256)
        return {
            b.spki_sha256: CertificateBinding(b.spki_sha256, b.agency_code, SignerRole(b.role))
            for b in found
        }

    async def lookup(self, codes: Sequence[str]) -> dict[str, AgencyView]:
        today = today_in_vietnam()
        views: dict[str, AgencyView] = {}
        for piece in pieces(codes):
            found, _unknown = await self._handlers.get_many(piece)
            for a in found:
                views[a.code] = AgencyView(
                    a.code,
                    open=a.is_open_on(today),
                    successor_codes=a.successor_codes,
                    served_here=a.served_by is None,
                )
        return views

    async def resolve(self, codes: Sequence[str], on_date: dt.date) -> dict[str, Resolution]:
        return {
            r.code: exchange_view(r)
            for piece in pieces(codes)
            for r in await self._handlers.resolve(piece, on_date)
        }

    async def signature_policy(self, agency_code: str, document_type: int) -> SignatureRules:
        if self._policies is None:
            return DEFAULT_RULES
        policy, _default = await self._policies.get(agency_code, document_type)
        return exchange_rules(policy)


def exchange_rules(policy: SignaturePolicy) -> SignatureRules:
    return SignatureRules(
        person_forms=frozenset(SignatureForm(f.value) for f in policy.person_forms),
        organization_forms=frozenset(SignatureForm(f.value) for f in policy.organization_forms),
        allow_legacy_algorithms=policy.allow_legacy_algorithms,
        transport_attested=policy.transport_attested,
    )


def exchange_view(resolution: directory.Resolution) -> Resolution:
    return Resolution(
        code=resolution.code,
        state=AddressState(resolution.state.value),
        effective=resolution.effective,
        chain=resolution.chain,
        valid_to=resolution.valid_to,
        successor_codes=resolution.successor_codes,
        problem=resolution.problem,
        hub=resolution.hub,
    )
