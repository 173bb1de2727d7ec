"""Signature policy use cases: read the policy in force, set one (administrators, ledgered)."""

from __future__ import annotations

import dataclasses

import structlog

from services.common.errors import NotFoundError, ValidationError
from services.directory.domain.signature_policy import (
    ANY_DOCUMENT_TYPE,
    DEFAULT_POLICY,
    SignaturePolicy,
    policy_problems,
)
from services.directory.service_layer.ports import Agencies, SignaturePolicies

log = structlog.get_logger(__name__)


class SignaturePolicyHandlers:
    def __init__(
        self,
        policies: SignaturePolicies,
        agencies: Agencies,
        default: SignaturePolicy = DEFAULT_POLICY,
    ) -> None:
        self._policies = policies
        self._agencies = agencies
        self._default = default

    async def get(self, agency_code: str, document_type: int) -> tuple[SignaturePolicy, bool]:
        """The policy in force and whether it is the deployment default."""
        found = await self._policies.find(agency_code, max(document_type, ANY_DOCUMENT_TYPE))
        if found is not None:
            return found, False
        return dataclasses.replace(self._default, agency_code=agency_code), True

    async def set(self, policy: SignaturePolicy, actor: str) -> SignaturePolicy:
        problems = policy_problems(policy)
        if problems:
            raise ValidationError("invalid signature policy", problems)
        if await self._agencies.get(policy.agency_code) is None:
            raise NotFoundError(f"no agency {policy.agency_code}")
        stored = await self._policies.save(dataclasses.replace(policy, updated_by=actor))
        # An audited decision: the ledger has it too (staged by the store in its transaction).
        log.warning(
            "signature_policy_set",
            agency=stored.agency_code,
            document_type=stored.document_type,
            policy=stored.describe(),
            by=actor,
        )
        return stored
