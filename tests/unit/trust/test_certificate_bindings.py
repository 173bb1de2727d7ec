"""National-CA certificates (no docaxis identity) sign for the agency the directory binds."""

from __future__ import annotations

import datetime as dt

import pytest

from docaxis_client.trust import (
    CertificateUnboundError,
    SenderMismatchError,
    SignerMismatchError,
    SignerRole,
)
from docaxis_client.trust.bindings import Bindings, CertificateBinding, signer_identity
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate
from docaxis_client.trust.errors import TrustError
from docaxis_client.trust.keys import key_id
from docaxis_client.trust.pdf import demo_pdf, read_pdf, sign_pdf, verify_pdf
from docaxis_client.trust.xmldsig import sign_envelope, signer_certificate, verify_envelope
from gateway.edxml import edxml_bytes
from tests.unit.edxml.builders import a_document
from tests.unit.trust.factories import OFFICIAL, OTHER_AGENCY, SENDER, SENDER_NAME

PAGE = demo_pdf(["Cong van 77/UBND-VP"])
# The sender of tests.unit.edxml.builders' package.
EDXML_SENDER = "000.00.11.H40"


@pytest.fixture(scope="module")
def official(ca: DemoCA) -> IssuedCertificate:
    """An official's certificate as the national CA issues it: no docaxis identity."""
    return ca.issue_person(OFFICIAL, SENDER, organization=SENDER_NAME, docaxis_identity=False)


@pytest.fixture(scope="module")
def seal(ca: DemoCA) -> IssuedCertificate:
    """The agency's organisation certificate as the national CA issues it."""
    return ca.issue_agency(SENDER, SENDER_NAME, docaxis_identity=False)


@pytest.fixture(scope="module")
def signed(official: IssuedCertificate, seal: IssuedCertificate) -> bytes:
    pdf = sign_pdf(PAGE, official.identity(), field_name="ChuKyNguoiKy")
    return sign_pdf(pdf, seal.identity(), field_name="ChuKyCoQuan")


def _bind(
    issued: IssuedCertificate, agency: str, role: SignerRole
) -> dict[str, CertificateBinding]:
    key = key_id(issued.certificate)
    return {key: CertificateBinding(key, agency, role)}


def _verify(pdf: bytes, ca: DemoCA, bindings: Bindings) -> list[tuple[str, str, str | None]]:
    result = verify_pdf(
        pdf,
        ca.trust_store(),
        agency=SENDER,
        main=True,
        at=dt.datetime.now(dt.UTC),
        bindings=bindings,
    )
    return [(s.role.value, s.agency_code, s.full_name) for s in result.signers]


def _refusal(pdf: bytes, ca: DemoCA, bindings: Bindings) -> TrustError:
    with pytest.raises(TrustError) as caught:
        _verify(pdf, ca, bindings)
    return caught.value


def test_national_certificates_carry_no_docaxis_identity(
    official: IssuedCertificate, seal: IssuedCertificate
) -> None:
    """Without a binding they speak for nobody: CERTIFICATE_UNBOUND naming the key to bind."""
    for issued in (official, seal):
        with pytest.raises(CertificateUnboundError) as caught:
            signer_identity(issued.certificate, {})
        assert caught.value.meta["spki_sha256"] == key_id(issued.certificate)


def test_an_unbound_signature_is_certificate_unbound_naming_the_field(
    signed: bytes, ca: DemoCA
) -> None:
    error = _refusal(signed, ca, {})
    assert isinstance(error, CertificateUnboundError)
    assert error.reason == "CERTIFICATE_UNBOUND"
    assert error.context == {"signature": "ChuKyNguoiKy"}


def test_bound_certificates_sign_for_their_agency_with_the_officials_name(
    signed: bytes, ca: DemoCA, official: IssuedCertificate, seal: IssuedCertificate
) -> None:
    """The person binding names the official (the certificate's CN); both verify."""
    bindings = {
        **_bind(official, SENDER, SignerRole.PERSON),
        **_bind(seal, SENDER, SignerRole.ORGANIZATION),
    }
    assert _verify(signed, ca, bindings) == [
        ("person", SENDER, OFFICIAL),
        ("organization", SENDER, None),
    ]
    assert [key_id(cert) for cert in read_pdf(signed).signer_certificates()] == list(bindings)


def test_only_the_seal_bound_leaves_the_official_unbound(
    signed: bytes, ca: DemoCA, seal: IssuedCertificate
) -> None:
    error = _refusal(signed, ca, _bind(seal, SENDER, SignerRole.ORGANIZATION))
    assert isinstance(error, CertificateUnboundError)
    assert error.context == {"signature": "ChuKyNguoiKy"}


def test_an_official_bound_to_another_agency_is_signer_mismatch(
    signed: bytes, ca: DemoCA, official: IssuedCertificate, seal: IssuedCertificate
) -> None:
    bindings = {
        **_bind(official, OTHER_AGENCY, SignerRole.PERSON),
        **_bind(seal, SENDER, SignerRole.ORGANIZATION),
    }
    assert isinstance(_refusal(signed, ca, bindings), SignerMismatchError)


def test_a_seal_bound_to_another_agency_is_sender_mismatch(
    signed: bytes, ca: DemoCA, official: IssuedCertificate, seal: IssuedCertificate
) -> None:
    bindings = {
        **_bind(official, SENDER, SignerRole.PERSON),
        **_bind(seal, OTHER_AGENCY, SignerRole.ORGANIZATION),
    }
    error = _refusal(signed, ca, bindings)
    assert isinstance(error, SenderMismatchError)
    assert error.context == {"signature": "ChuKyCoQuan"}


def test_a_key_bound_in_the_other_role_is_signer_mismatch(
    signed: bytes, ca: DemoCA, official: IssuedCertificate, seal: IssuedCertificate
) -> None:
    """The official's key bound as the agency's seal cannot make the person signature."""
    bindings = {
        **_bind(official, SENDER, SignerRole.ORGANIZATION),
        **_bind(seal, SENDER, SignerRole.ORGANIZATION),
    }
    assert isinstance(_refusal(signed, ca, bindings), SignerMismatchError)


def test_an_envelope_sealed_with_a_national_certificate_needs_its_binding(ca: DemoCA) -> None:
    """XML-DSig: unbound refused, bound to the sender accepted, bound elsewhere refused."""
    seal = ca.issue_agency(EDXML_SENDER, "Sở Tài chính", docaxis_identity=False)
    signed = sign_envelope(edxml_bytes(a_document()), seal.identity())
    found = signer_certificate(signed)
    assert found is not None
    assert key_id(found) == key_id(seal.certificate)

    def verify(bindings: Bindings) -> str:
        result = verify_envelope(
            signed,
            ca.trust_store(),
            agency=EDXML_SENDER,
            at=dt.datetime.now(dt.UTC),
            bindings=bindings,
        )
        return result.signer.agency_code

    with pytest.raises(CertificateUnboundError):
        verify({})
    assert verify(_bind(seal, EDXML_SENDER, SignerRole.ORGANIZATION)) == EDXML_SENDER
    with pytest.raises(SenderMismatchError):
        verify(_bind(seal, OTHER_AGENCY, SignerRole.ORGANIZATION))
    with pytest.raises(SignerMismatchError):
        verify(_bind(seal, EDXML_SENDER, SignerRole.PERSON))
