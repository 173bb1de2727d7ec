"""Signature policies in the directory: the default, setting one (ledgered), refusals."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common.errors import NotFoundError, ValidationError
from services.directory.domain.model import Agency, AgencyKind
from services.directory.domain.signature_policy import SignatureForm, SignaturePolicy
from services.directory.service_layer.signature_policies import SignaturePolicyHandlers
from tests.fakes import FakeAgencies, FakeSignaturePolicies

AGENCY = "000.00.11.H40"
ADMIN = "CN=quản trị viên"


@pytest.fixture
def policies() -> FakeSignaturePolicies:
    return FakeSignaturePolicies()


@pytest.fixture
def handlers(policies: FakeSignaturePolicies) -> SignaturePolicyHandlers:
    agencies = FakeAgencies(
        [Agency(AGENCY, "Sở Tài chính", AgencyKind.DEPARTMENT, dt.date(2019, 1, 1))]
    )
    return SignaturePolicyHandlers(policies, agencies)


async def test_an_agency_without_a_policy_gets_the_deployment_default(
    handlers: SignaturePolicyHandlers,
) -> None:
    """Every form counts, no legacy algorithms, no transport attestation."""
    policy, default = await handlers.get(AGENCY, 1)

    assert default
    assert policy.person_forms == {SignatureForm.MANIFEST, SignatureForm.PADES}
    assert policy.organization_forms == set(SignatureForm)
    assert not (policy.allow_legacy_algorithms)
    assert not (policy.transport_attested)


async def test_setting_a_policy_records_who_and_stages_a_ledger_fact(
    handlers: SignaturePolicyHandlers, policies: FakeSignaturePolicies
) -> None:
    """The administrator's decision is kept with their name and ledgered."""
    await handlers.set(SignaturePolicy(agency_code=AGENCY, transport_attested=True), ADMIN)

    policy, default = await handlers.get(AGENCY, 7)
    assert not default
    assert policy.transport_attested
    assert policy.updated_by == ADMIN
    assert policies.ledger == [
        {
            "event": "signature_policy_set",
            "agency": AGENCY,
            "document_type": 0,
            "person_forms": ["manifest", "pades"],
            "organization_forms": ["manifest", "pades", "xmldsig"],
            "allow_legacy_algorithms": False,
            "transport_attested": True,
            "by": ADMIN,
        }
    ]


async def test_a_document_types_own_policy_wins_over_the_agencys(
    handlers: SignaturePolicyHandlers,
) -> None:
    """Type 1 (công văn) may allow SHA-1 while the agency's other documents do not."""
    await handlers.set(SignaturePolicy(agency_code=AGENCY), ADMIN)
    await handlers.set(
        SignaturePolicy(agency_code=AGENCY, document_type=1, allow_legacy_algorithms=True), ADMIN
    )

    assert (await handlers.get(AGENCY, 1))[0].allow_legacy_algorithms
    assert not (await handlers.get(AGENCY, 2))[0].allow_legacy_algorithms


async def test_xmldsig_cannot_be_the_officials_form_and_unknown_agencies_are_refused(
    handlers: SignaturePolicyHandlers,
) -> None:
    """The envelope is signed by the agency; a policy names a registered agency."""
    with pytest.raises(ValidationError) as invalid:
        await handlers.set(
            SignaturePolicy(agency_code=AGENCY, person_forms=frozenset({SignatureForm.XMLDSIG})),
            ADMIN,
        )
    assert [v.field for v in invalid.value.violations] == ["policy.person_forms"]
    with pytest.raises(NotFoundError):
        await handlers.set(SignaturePolicy(agency_code="000.00.99.H40"), ADMIN)
