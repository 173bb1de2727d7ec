"""The demo/test PKI issues certificates shaped like the national CA's (national_profile)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from docaxis_client.trust.demo_pki import DemoCA, PkiFolder
from docaxis_client.trust.national_profile import DEMO_POLICY_OID
from services.demo import SENDER, SIGNER, ensure_demo_pki
from tests.unit.trust.factories import OFFICIAL, SENDER_NAME


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    (attribute,) = name.get_attributes_for_oid(oid)
    value = attribute.value
    assert isinstance(value, str)
    return value


def _urls(certificate: x509.Certificate) -> dict[str, list[str]]:
    aia = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    cdp = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    found: dict[str, list[str]] = {"crl": [], "ca": [], "ocsp": []}
    for point in cdp:
        assert point.full_name is not None
        found["crl"] += [str(name.value) for name in point.full_name]
    for description in aia:
        kind = "ocsp" if description.access_method == AuthorityInformationAccessOID.OCSP else "ca"
        found[kind].append(str(description.access_location.value))
    return found


def _policies(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    return [policy.policy_identifier for policy in policies]


def test_the_root_and_the_subordinate_ca_are_named_like_the_committees(ca: DemoCA) -> None:
    """A root and a subordinate CA for state agencies, marked DEMO; the subordinate names the
    root's CRL and certificate."""
    root, issuing = ca.root.certificate, ca.issuing.certificate
    assert root.subject.rfc4514_string() == (
        "CN=DEMO RootCA chuyên dùng Chính phủ G2,"
        "O=DEMO Ban Cơ yếu Chính phủ - NOT FOR PRODUCTION,C=VN"
    )
    assert _attribute(issuing.subject, NameOID.COMMON_NAME) == (
        "DEMO CA phục vụ các cơ quan Nhà nước G2"
    )
    assert issuing.issuer == root.subject
    assert _urls(issuing) == {
        "crl": ["http://ca.demo.invalid/pki/pub/crl/rootcag2.crl"],
        "ca": ["http://ca.demo.invalid/pki/pub/crt/rootcag2.crt"],
        "ocsp": [],
    }


def test_a_person_certificate_has_the_profiles_subject_usages_policy_crl_and_aia(
    ca: DemoCA,
) -> None:
    """CN the official, OU the unit, O the agency, L the province; nonRepudiation and
    digitalSignature (critical); the policy; CRL, caIssuers and OCSP URLs of the issuing CA."""
    person = ca.issue_person(
        OFFICIAL,
        SENDER,
        organization=SENDER_NAME,
        unit="Phòng Hành chính",
        locality="Quảng Ninh",
        ocsp_url="http://ocsp.demo.invalid",
    ).certificate
    subject = person.subject
    assert _attribute(subject, NameOID.COMMON_NAME) == OFFICIAL
    assert _attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME) == "Phòng Hành chính"
    assert _attribute(subject, NameOID.ORGANIZATION_NAME) == SENDER_NAME
    assert _attribute(subject, NameOID.LOCALITY_NAME) == "Quảng Ninh"
    assert _attribute(subject, NameOID.COUNTRY_NAME) == "VN"
    usage = person.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.content_commitment
    assert not usage.value.key_cert_sign
    assert _policies(person) == [DEMO_POLICY_OID]
    assert _urls(person) == {
        "crl": ["http://ca.demo.invalid/pki/pub/crl/cpg2.crl"],
        "ca": ["http://ca.demo.invalid/pki/pub/crt/cpg2.crt"],
        "ocsp": ["http://ocsp.demo.invalid"],
    }


def test_an_organisation_certificate_names_the_body_its_parent_and_province(ca: DemoCA) -> None:
    """CN the agency, O its parent body, L the province; the policy and the issuing CA's URLs."""
    agency = ca.issue_agency(
        SENDER, SENDER_NAME, parent="Ủy ban nhân dân tỉnh Quảng Ninh", locality="Quảng Ninh"
    ).certificate
    assert agency.subject.rfc4514_string() == (
        f"CN={SENDER_NAME},O=Ủy ban nhân dân tỉnh Quảng Ninh,L=Quảng Ninh,C=VN"
    )
    assert _policies(agency) == [DEMO_POLICY_OID]
    assert _urls(agency)["crl"] == ["http://ca.demo.invalid/pki/pub/crl/cpg2.crl"]


def test_the_demo_pki_folder_issues_profile_shaped_signer_certificates(tmp_path: Path) -> None:
    """What `make demo` signs its PDF with: the official's and the agency's certificates carry
    the profile's subject fields and policy."""
    folder = tmp_path / "pki"
    ensure_demo_pki(folder)
    person = PkiFolder.load_identity(folder / "persons" / SENDER / "nguyen-van-an.pem")
    agency = PkiFolder.load_identity(folder / "agencies" / f"{SENDER}.pem")
    assert _attribute(person.certificate.subject, NameOID.COMMON_NAME) == SIGNER
    assert _attribute(person.certificate.subject, NameOID.ORGANIZATION_NAME) == (
        "Văn phòng Ủy ban nhân dân tỉnh Quảng Ninh"
    )
    assert _attribute(agency.certificate.subject, NameOID.ORGANIZATION_NAME) == (
        "Ủy ban nhân dân tỉnh Quảng Ninh"
    )
    for identity in (person, agency):
        assert _policies(identity.certificate) == [DEMO_POLICY_OID]
        assert _urls(identity.certificate)["ca"] == ["http://ca.demo.invalid/pki/pub/crt/cpg2.crt"]
