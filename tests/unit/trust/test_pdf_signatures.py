"""Tests for PAdES verification of signed PDFs: the official first, then the agency."""

from __future__ import annotations

import datetime as dt

import pytest

from docaxis_client.trust import (
    CertificateExpiredError,
    CertificateRevokedError,
    SenderMismatchError,
    SignatureInvalidError,
    SignerMismatchError,
    SignerRole,
    UntrustedIssuerError,
)
from docaxis_client.trust.demo_pki import DemoCA
from docaxis_client.trust.errors import AlgorithmWeakError, SignatureMissingError, TrustError
from docaxis_client.trust.pdf import demo_pdf, sign_pdf, verify_pdf
from tests.unit.trust.conftest import Signers
from tests.unit.trust.factories import OFFICIAL, OTHER_AGENCY, SENDER, SENDER_NAME

PAGE = demo_pdf(["Cong van 1234/UBND-VP", "Ve viec trien khai chinh quyen hai cap"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _signed(signers: Signers, pdf: bytes = PAGE) -> bytes:
    person = sign_pdf(pdf, signers.person.identity(), field_name="ChuKyNguoiKy")
    return sign_pdf(person, signers.organization.identity(), field_name="ChuKyCoQuan")


@pytest.fixture(scope="module")
def signed(p256: Signers) -> bytes:
    """The main document signed by SENDER's official and then by SENDER."""
    return _signed(p256)


def _refusal(
    pdf: bytes, ca: DemoCA, *, main: bool = True, allow_legacy: bool = False
) -> TrustError:
    with pytest.raises(TrustError) as caught:
        verify_pdf(
            pdf, ca.trust_store(), agency=SENDER, main=main, at=_now(), allow_legacy=allow_legacy
        )
    return caught.value


def test_a_pdf_signed_by_the_official_then_the_agency_reports_both_signers(
    signed: bytes, ca: DemoCA
) -> None:
    """Both signatures verify; each is mapped to its ND30 role, the last covers the file."""
    result = verify_pdf(signed, ca.trust_store(), agency=SENDER, main=True, at=_now())

    person, organization = result.signers
    assert (person.role, person.field_name) == (SignerRole.PERSON, "ChuKyNguoiKy")
    assert person.full_name == OFFICIAL
    assert not person.covers_whole_file  # the agency's revision came after it
    assert (organization.role, organization.agency_code) == (SignerRole.ORGANIZATION, SENDER)
    assert organization.covers_whole_file
    assert organization.algorithm == "ecdsa-sha256"
    assert result.warnings == ()


def test_one_byte_changed_after_signing_is_signature_invalid(signed: bytes, ca: DemoCA) -> None:
    """A change inside the signed bytes breaks the integrity check."""
    tampered = signed.replace(b"Cong van 1234", b"Cong van 1235", 1)
    assert tampered != signed

    error = _refusal(tampered, ca)

    assert isinstance(error, SignatureInvalidError)
    assert error.context == {"signature": "ChuKyNguoiKy"}


def test_a_revision_appended_after_the_last_signature_is_refused(signed: bytes, ca: DemoCA) -> None:
    """Bytes added after the agency signed are not covered by any signature."""
    error = _refusal(signed + b"\n1 0 obj\n(changed)\nendobj\n", ca)

    assert isinstance(error, SignatureInvalidError)
    assert "changed after" in str(error)


def test_the_officials_signature_alone_is_signature_missing(p256: Signers, ca: DemoCA) -> None:
    """The agency's signature must follow the official's."""
    only_person = sign_pdf(PAGE, p256.person.identity(), field_name="ChuKyNguoiKy")

    error = _refusal(only_person, ca)

    assert isinstance(error, SignatureMissingError)
    assert error.reason == "SIGNATURE_MISSING"
    assert error.role == SignerRole.ORGANIZATION


def test_an_unsigned_main_document_is_signature_missing(ca: DemoCA) -> None:
    """No signature at all names the official's as missing."""
    error = _refusal(PAGE, ca)

    assert isinstance(error, SignatureMissingError)
    assert error.role == SignerRole.PERSON


def test_signatures_in_the_wrong_order_are_signer_mismatch(p256: Signers, ca: DemoCA) -> None:
    """The agency sealing before the official signed is not the ND30 order."""
    agency_first = sign_pdf(PAGE, p256.organization.identity(), field_name="ChuKyCoQuan")
    reversed_order = sign_pdf(agency_first, p256.person.identity(), field_name="ChuKyNguoiKy")

    error = _refusal(reversed_order, ca)

    assert isinstance(error, SignerMismatchError)
    assert error.context == {"signature": "ChuKyCoQuan"}


def test_a_pdf_sealed_by_another_agency_is_sender_mismatch(ca: DemoCA, p256: Signers) -> None:
    """The organisation signature must be the sending agency's."""
    other = ca.issue_agency(OTHER_AGENCY, "Ủy ban nhân dân tỉnh Nghệ An")
    person = sign_pdf(PAGE, p256.person.identity(), field_name="ChuKyNguoiKy")
    sealed = sign_pdf(person, other.identity(), field_name="ChuKyCoQuan")

    error = _refusal(sealed, ca)

    assert isinstance(error, SenderMismatchError)
    assert error.actual == OTHER_AGENCY


def test_an_official_of_another_agency_is_signer_mismatch(ca: DemoCA, p256: Signers) -> None:
    """The person signature must be by an official of the sender."""
    stranger = ca.issue_person("Lê Thị Hoa", OTHER_AGENCY)
    person = sign_pdf(PAGE, stranger.identity(), field_name="ChuKyNguoiKy")
    sealed = sign_pdf(person, p256.organization.identity(), field_name="ChuKyCoQuan")

    error = _refusal(sealed, ca)

    assert isinstance(error, SignerMismatchError)
    assert error.role == SignerRole.PERSON


def test_a_signature_by_an_expired_certificate_is_certificate_expired(ca: DemoCA) -> None:
    """A certificate that had expired when it signed is refused."""
    start = _now() - dt.timedelta(days=30)
    expired = ca.issue_person(OFFICIAL, SENDER, not_before=start, not_after=start + dt.timedelta(1))
    agency = ca.issue_agency(SENDER, SENDER_NAME)
    pdf = sign_pdf(
        sign_pdf(PAGE, expired.identity(), field_name="P"), agency.identity(), field_name="O"
    )

    assert isinstance(_refusal(pdf, ca), CertificateExpiredError)


def test_a_signature_by_a_revoked_certificate_is_certificate_revoked(fresh_ca: DemoCA) -> None:
    """The CRLs the axis holds are checked."""
    person = fresh_ca.issue_person(OFFICIAL, SENDER)
    agency = fresh_ca.issue_agency(SENDER, SENDER_NAME)
    pdf = _signed(Signers(person=person, organization=agency))
    fresh_ca.revoke(agency.certificate)

    error = _refusal(pdf, fresh_ca)

    assert isinstance(error, CertificateRevokedError)
    assert error.context == {"signature": "ChuKyCoQuan"}


def test_a_signature_chaining_to_another_ca_is_untrusted_issuer(ca: DemoCA) -> None:
    """Certificates from a CA the axis does not trust are refused."""
    rogue = DemoCA.create(common_name="rogue CA")
    pdf = _signed(
        Signers(
            person=rogue.issue_person(OFFICIAL, SENDER),
            organization=rogue.issue_agency(SENDER, SENDER_NAME),
        )
    )

    assert isinstance(_refusal(pdf, ca), UntrustedIssuerError)


def test_sha1_is_weak_unless_the_policy_allows_legacy_algorithms(p256: Signers, ca: DemoCA) -> None:
    """SHA-1 is refused by default and accepted, with a warning, under a legacy policy."""
    person = sign_pdf(PAGE, p256.person.identity(), field_name="P", digest="sha1")
    pdf = sign_pdf(person, p256.organization.identity(), field_name="O", digest="sha1")

    error = _refusal(pdf, ca)
    assert isinstance(error, AlgorithmWeakError)
    assert error.reason == "SIGNATURE_ALGORITHM_WEAK"

    result = verify_pdf(
        pdf, ca.trust_store(), agency=SENDER, main=True, at=_now(), allow_legacy=True
    )
    assert [signer.legacy_algorithm for signer in result.signers] == [True, True]
    assert len(result.warnings) == 2


def test_an_appendix_carries_the_organisation_signature_only(p256: Signers, ca: DemoCA) -> None:
    """Appendices are sealed by the agency alone; an official's signature there is refused."""
    appendix = sign_pdf(PAGE, p256.organization.identity(), field_name="ChuKyCoQuan")

    result = verify_pdf(appendix, ca.trust_store(), agency=SENDER, main=False, at=_now())
    assert [signer.role for signer in result.signers] == [SignerRole.ORGANIZATION]

    by_official = sign_pdf(PAGE, p256.person.identity(), field_name="ChuKyNguoiKy")
    assert isinstance(_refusal(by_official, ca, main=False), SignerMismatchError)


def test_bytes_that_are_not_a_pdf_are_signature_invalid(ca: DemoCA) -> None:
    """A zip or a text file named .pdf is not a signed PDF."""
    assert isinstance(_refusal(b"PK\x03\x04not a pdf", ca), SignatureInvalidError)
    assert isinstance(_refusal(b"%PDF-1.7\ngarbage", ca), TrustError)
