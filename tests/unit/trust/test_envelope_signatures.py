"""Tests for the edXML envelope's XML-DSig, including interoperability with xmlsec1."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from docaxis_client.trust import SenderMismatchError, SignatureInvalidError, UntrustedIssuerError
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate, KeyType, certificates_pem
from docaxis_client.trust.demo_pki import key_pem as private_pem
from docaxis_client.trust.errors import AlgorithmWeakError, SignatureMissingError, TrustError
from docaxis_client.trust.xmldsig import (
    Canonicalization,
    has_envelope_signature,
    sign_envelope,
    verify_envelope,
)
from gateway.edxml import edxml_bytes
from tests.unit.edxml.builders import PDF, a_document

SENDER = "000.00.11.H40"
PACKAGE = edxml_bytes(a_document())
XMLSEC1 = shutil.which("xmlsec1")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def agency(ca: DemoCA) -> IssuedCertificate:
    """The sender's agency certificate (P-256)."""
    return ca.issue_agency(SENDER, "Sở Tài chính")


@pytest.fixture(scope="module")
def rsa_agency(ca: DemoCA) -> IssuedCertificate:
    """The sender's agency certificate with an RSA key, as most DMS tokens hold."""
    return ca.issue_agency(SENDER, "Sở Tài chính", key_type=KeyType.RSA2048)


def _refusal(data: bytes, ca: DemoCA, *, allow_legacy: bool = False) -> TrustError:
    with pytest.raises(TrustError) as caught:
        verify_envelope(data, ca.trust_store(), agency=SENDER, at=_now(), allow_legacy=allow_legacy)
    return caught.value


def _xmlsec1() -> str:
    # deploy/local/install.sh installs Debian's xmlsec1: the independent tool these tests need.
    assert XMLSEC1 is not None, "xmlsec1 missing: run 'bash deploy/local/install.sh'"
    return XMLSEC1


_TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="{c14n}"/>
<ds:SignatureMethod Algorithm="{method}"/>
<ds:Reference URI="">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="{digest}"/>
<ds:DigestValue/>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue/>
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
</ds:Signature>"""
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


def _sign_with_xmlsec1(
    tmp_path: Path,
    signer: IssuedCertificate,
    *,
    method: str = RSA_SHA256,
    digest: str = SHA256,
    c14n: Canonicalization = Canonicalization.C14N_1_0,
) -> bytes:
    """What a Java or .NET DMS produces: a template in edXMLHeader, signed by xmlsec1."""
    template = _TEMPLATE.format(c14n=c14n.value, method=method, digest=digest)
    unsigned = PACKAGE.replace(
        b"</edXML:edXMLHeader>", template.encode() + b"</edXML:edXMLHeader>", 1
    )
    (tmp_path / "template.edxml").write_bytes(unsigned)
    (tmp_path / "key.pem").write_bytes(private_pem(signer.key))
    (tmp_path / "chain.pem").write_bytes(certificates_pem(signer.chain))
    subprocess.run(
        [
            _xmlsec1(),
            "--sign",
            "--privkey-pem",
            f"{tmp_path / 'key.pem'},{tmp_path / 'chain.pem'}",
            "--output",
            str(tmp_path / "signed.edxml"),
            str(tmp_path / "template.edxml"),
        ],
        check=True,
        capture_output=True,
    )
    return (tmp_path / "signed.edxml").read_bytes()


def test_an_envelope_signed_by_xmlsec1_verifies(
    tmp_path: Path, ca: DemoCA, rsa_agency: IssuedCertificate
) -> None:
    """An independent tool's RSA-SHA256 enveloped signature is accepted, facts read from it."""
    signed = _sign_with_xmlsec1(tmp_path, rsa_agency)

    result = verify_envelope(signed, ca.trust_store(), agency=SENDER, at=_now())

    assert result.signer.agency_code == SENDER
    assert result.signer.algorithm == "rsa-sha256"
    assert not result.signer.legacy_algorithm
    assert result.facts.sender == SENDER
    assert result.facts.recipients == ("000.00.00.H40", "000.00.12.H40")
    assert (result.facts.code_number, result.facts.code_notation) == ("2491", "STC-NS")
    assert result.facts.attachment_sha256 == (hashlib.sha256(PDF).hexdigest(),)


@pytest.mark.parametrize("c14n", list(Canonicalization))
def test_every_accepted_canonicalisation_verifies(
    tmp_path: Path, ca: DemoCA, rsa_agency: IssuedCertificate, c14n: Canonicalization
) -> None:
    """C14N 1.0, 1.1 and exclusive, as signed by xmlsec1."""
    signed = _sign_with_xmlsec1(tmp_path, rsa_agency, c14n=c14n)

    result = verify_envelope(signed, ca.trust_store(), agency=SENDER, at=_now())

    assert result.signer.canonicalization == c14n.value


def test_an_envelope_docaxis_signs_verifies_with_xmlsec1(
    tmp_path: Path, ca: DemoCA, agency: IssuedCertificate
) -> None:
    """The other direction: an ECDSA signature made by docaxis passes `xmlsec1 --verify`."""
    signed = sign_envelope(PACKAGE, agency.identity())
    (tmp_path / "signed.edxml").write_bytes(signed)
    (tmp_path / "ca.pem").write_bytes(certificates_pem([ca.root_certificate]))
    assert ca.intermediate is not None
    (tmp_path / "issuing.pem").write_bytes(certificates_pem([ca.intermediate.certificate]))

    run = subprocess.run(
        [
            _xmlsec1(),
            "--verify",
            "--trusted-pem",
            str(tmp_path / "ca.pem"),
            "--untrusted-pem",
            str(tmp_path / "issuing.pem"),
            str(tmp_path / "signed.edxml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert verify_envelope(signed, ca.trust_store(), agency=SENDER, at=_now()).signer.algorithm


def test_an_edited_header_field_is_signature_invalid(
    tmp_path: Path, ca: DemoCA, rsa_agency: IssuedCertificate
) -> None:
    """Changing the subject after signing breaks the reference digest."""
    signed = _sign_with_xmlsec1(tmp_path, rsa_agency)
    edited = signed.replace("quyết toán".encode(), "thanh toán".encode(), 1)
    assert edited != signed

    assert isinstance(_refusal(edited, ca), SignatureInvalidError)


def test_an_envelope_signed_by_another_agency_is_sender_mismatch(
    tmp_path: Path, ca: DemoCA
) -> None:
    """The signer must be the agency in From/OrganId."""
    other = ca.issue_agency("000.00.12.H40", "Sở Nội vụ", key_type=KeyType.RSA2048)
    signed = _sign_with_xmlsec1(tmp_path, other)

    error = _refusal(signed, ca)

    assert isinstance(error, SenderMismatchError)
    assert error.actual == "000.00.12.H40"


def test_a_package_claiming_another_sender_is_sender_mismatch(
    ca: DemoCA, agency: IssuedCertificate
) -> None:
    """A signed package whose From/OrganId is not the calling agency is refused."""
    document = a_document()
    sender = dataclasses.replace(document.header.sender, organ_id="000.00.12.H40")
    package = edxml_bytes(
        dataclasses.replace(document, header=dataclasses.replace(document.header, sender=sender))
    )

    error = _refusal(sign_envelope(package, agency.identity()), ca)

    assert isinstance(error, SenderMismatchError)


def test_rsa_sha1_is_weak_unless_legacy_algorithms_are_allowed(
    tmp_path: Path, ca: DemoCA, rsa_agency: IssuedCertificate
) -> None:
    """RSA-SHA1 (the official sample's algorithm) passes only under a legacy policy, flagged."""
    signed = _sign_with_xmlsec1(tmp_path, rsa_agency, method=RSA_SHA1, digest=SHA1)

    assert isinstance(_refusal(signed, ca), AlgorithmWeakError)
    result = verify_envelope(signed, ca.trust_store(), agency=SENDER, at=_now(), allow_legacy=True)
    assert result.signer.legacy_algorithm
    assert result.warnings == ("envelope signature uses legacy rsa-sha1",)


def test_an_envelope_from_an_untrusted_ca_is_untrusted_issuer(tmp_path: Path, ca: DemoCA) -> None:
    """A valid signature by a certificate the axis does not trust is refused."""
    rogue = DemoCA.create(common_name="rogue CA")
    signed = _sign_with_xmlsec1(
        tmp_path, rogue.issue_agency(SENDER, "Sở Tài chính", key_type=KeyType.RSA2048)
    )

    assert isinstance(_refusal(signed, ca), UntrustedIssuerError)


def test_an_empty_signature_element_is_signature_missing(ca: DemoCA) -> None:
    """Senders that send an empty DigitalSignature have not signed."""
    empty = PACKAGE.replace(
        b"</edXML:edXMLHeader>", b"<edXML:DigitalSignature/></edXML:edXMLHeader>", 1
    )

    assert not has_envelope_signature(empty)
    assert isinstance(_refusal(empty, ca), SignatureMissingError)


def test_a_package_with_a_dtd_is_refused_before_any_check(ca: DemoCA) -> None:
    """No DTD, hence no entity expansion, ever."""
    with_dtd = PACKAGE.replace(b"<edXML ", b'<!DOCTYPE edXML [<!ENTITY x "boom">]>\n<edXML ', 1)

    error = _refusal(with_dtd, ca)

    assert isinstance(error, SignatureInvalidError)
    assert "DTD" in str(error)
