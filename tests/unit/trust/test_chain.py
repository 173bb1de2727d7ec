"""Tests for the trust store: identities, purposes, CRLs and expiry warnings."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store

from docaxis_client.trust import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificatePurpose,
    CertificateRevokedError,
    CertificateUsageError,
    CrlInvalidError,
    PersonIdentity,
    Role,
    TrustStore,
    ValidatedChain,
    agency_code_of,
    expiring_certificates,
    person_of,
    role_of,
)
from docaxis_client.trust.demo_pki import DemoCA, KeyType, certificates_pem, generate_key
from tests.unit.trust.conftest import Signers
from tests.unit.trust.factories import OFFICIAL, SENDER, SENDER_NAME


def test_agency_certificate_carries_its_code_in_a_uri_san(p256: Signers) -> None:
    """agency_code_of reads urn:docaxis:agency:<code>; it is neither a person nor a role."""
    certificate = p256.organization.certificate
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:docaxis:agency:{SENDER}"
    ]
    assert agency_code_of(certificate) == SENDER
    assert person_of(certificate) is None
    assert role_of(certificate) is None


def test_person_certificate_carries_the_name_and_the_employer(p256: Signers) -> None:
    """person_of reads the CN and urn:docaxis:official:<code>; it is not an agency identity."""
    certificate = p256.person.certificate
    assert person_of(certificate) == PersonIdentity(full_name=OFFICIAL, agency_code=SENDER)
    assert agency_code_of(certificate) is None


@pytest.mark.parametrize("role", list(Role))
def test_role_certificates_are_read_by_role_of(ca: DemoCA, role: Role) -> None:
    """admin, monitor and hub certificates carry urn:docaxis:role:<role>."""
    issued = ca.issue_role(role, f"docaxis {role}")
    assert role_of(issued.certificate) is role
    assert agency_code_of(issued.certificate) is None


def _self_signed(names: list[x509.GeneralName]) -> x509.Certificate:
    key = generate_key(KeyType.P256)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "two identities")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_certificate_with_two_docaxis_identities_is_refused() -> None:
    """An ambiguous certificate may not choose its identity: CERTIFICATE_USAGE."""
    certificate = _self_signed(
        [
            x509.UniformResourceIdentifier("urn:docaxis:agency:000.00.00.H45"),
            x509.UniformResourceIdentifier("urn:docaxis:role:admin"),
        ]
    )
    with pytest.raises(CertificateUsageError):
        agency_code_of(certificate)


def test_unknown_role_is_refused_rather_than_ignored() -> None:
    """A role name we do not know is a mis-issued certificate."""
    certificate = _self_signed([x509.UniformResourceIdentifier("urn:docaxis:role:root")])
    with pytest.raises(CertificateUsageError):
        role_of(certificate)


def test_agency_certificate_validates_for_mtls_client_auth(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """Agency certificates double as mTLS client certificates."""
    validated = ca.trust_store().validate(
        p256.organization.chain, at=now, purpose=CertificatePurpose.CLIENT_AUTH
    )
    assert validated.leaf == p256.organization.certificate
    assert validated.certificates[-1] == ca.root_certificate


def test_person_certificate_is_not_an_mtls_client_certificate(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """Officials sign documents; they do not log in: no clientAuth."""
    with pytest.raises(CertificateUsageError):
        ca.trust_store().validate(p256.person.chain, at=now, purpose=CertificatePurpose.CLIENT_AUTH)


def test_server_certificate_verifies_for_localhost_and_loopback(
    ca: DemoCA, now: dt.datetime
) -> None:
    """cryptography's own server verifier accepts it for DNS localhost and IP 127.0.0.1."""
    server = ca.issue_server()
    ca.trust_store().validate(server.chain, at=now, purpose=CertificatePurpose.SERVER_AUTH)
    builder = PolicyBuilder().store(Store([ca.root_certificate])).time(now)
    for subject in (DNSName("localhost"), IPAddress(ipaddress.ip_address("127.0.0.1"))):
        builder.build_server_verifier(subject).verify(server.certificate, list(server.chain[1:]))


def test_server_certificate_cannot_sign_documents(ca: DemoCA, now: dt.datetime) -> None:
    """serverAuth-only certificates fail the document-signing purpose."""
    server = ca.issue_server()
    with pytest.raises(CertificateUsageError):
        ca.trust_store().validate(server.chain, at=now)


def test_role_certificates_validate_as_mtls_clients(ca: DemoCA, now: dt.datetime) -> None:
    """Admin and monitor certificates pass cryptography's default client profile too."""
    admin = ca.issue_role(Role.ADMIN, "operator")
    builder = PolicyBuilder().store(Store([ca.root_certificate])).time(now)
    verified = builder.build_client_verifier().verify(admin.certificate, list(admin.chain[1:]))
    assert verified.subjects == [x509.UniformResourceIdentifier("urn:docaxis:role:admin")]


def test_crl_signed_by_a_wrong_key_is_rejected(ca: DemoCA, now: dt.datetime) -> None:
    """A CRL naming our intermediate but signed by another key makes the store refuse to load."""
    assert ca.intermediate is not None
    impostor_key = generate_key(KeyType.P256)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.intermediate.certificate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .sign(impostor_key, hashes.SHA256())
    )
    with pytest.raises(CrlInvalidError) as caught:
        TrustStore(
            [ca.root_certificate], intermediates=[ca.intermediate.certificate], crls=[forged]
        )
    assert caught.value.reason == "CRL_INVALID"


def test_crl_of_a_foreign_ca_is_rejected(ca: DemoCA) -> None:
    """A CRL from a CA outside the store is not silently ignored."""
    foreign = DemoCA.create(common_name="foreign CA")
    with pytest.raises(CrlInvalidError):
        TrustStore([ca.root_certificate], crls=foreign.crls())


def test_revoked_intermediate_rejects_every_leaf_below_it(
    fresh_ca: DemoCA, now: dt.datetime
) -> None:
    """Revocation is checked along the whole path, not only for the leaf."""
    assert fresh_ca.intermediate is not None
    agency = fresh_ca.issue_agency(SENDER, SENDER_NAME)
    fresh_ca.revoke(fresh_ca.intermediate.certificate)
    with pytest.raises(CertificateRevokedError) as caught:
        fresh_ca.trust_store().validate(agency.chain, at=now)
    assert caught.value.serial == fresh_ca.intermediate.certificate.serial_number


def test_store_loads_from_pem_bundles(ca: DemoCA, p256: Signers, now: dt.datetime) -> None:
    """from_pem accepts the root bundle, intermediates and PEM CRLs."""
    assert ca.intermediate is not None
    store = TrustStore.from_pem(
        certificates_pem([ca.root_certificate]),
        intermediates_pem=certificates_pem([ca.intermediate.certificate]),
        crls_pem=[crl.public_bytes(serialization.Encoding.PEM) for crl in ca.crls()],
    )
    # The leaf alone is enough: the store supplies the intermediate for path building.
    store.validate([p256.organization.certificate], at=now)


def test_expiry_warnings_list_certificates_expiring_within_the_window_soonest_first(
    ca: DemoCA,
    now: dt.datetime,
) -> None:
    """Certificates ending inside the window (or already ended) are listed, soonest first."""
    soon = ca.issue_agency(SENDER, SENDER_NAME, not_after=now + dt.timedelta(days=10))
    sooner = ca.issue_role(Role.MONITOR, "monitor", not_after=now + dt.timedelta(days=2))
    gone = ca.issue_role(
        Role.ADMIN,
        "admin",
        not_before=now - dt.timedelta(days=9),
        not_after=now - dt.timedelta(days=1),
    )
    later = ca.issue_person(OFFICIAL, SENDER, not_after=now + dt.timedelta(days=90))
    certificates = [c.certificate for c in (soon, sooner, gone, later)]
    warnings = expiring_certificates(certificates, within=dt.timedelta(days=30), at=now)
    assert [w.serial for w in warnings] == [
        gone.certificate.serial_number,
        sooner.certificate.serial_number,
        soon.certificate.serial_number,
    ]
    assert [w.expired for w in warnings] == [True, False, False]
    assert dt.timedelta(days=1) < warnings[1].remaining <= dt.timedelta(days=2)


def test_store_warns_about_its_own_expiring_cas(now: dt.datetime) -> None:
    """TrustStore.expiring covers the roots and intermediates it holds."""
    short_lived = DemoCA.create(not_after=now + dt.timedelta(days=20))
    warnings = short_lived.trust_store().expiring(within=dt.timedelta(days=30), at=now)
    assert len(warnings) == 2
    assert short_lived.trust_store().expiring(within=dt.timedelta(days=7), at=now) == []


def test_naive_validation_time_is_refused(ca: DemoCA, p256: Signers) -> None:
    """Validation times without a zone are a programming error."""
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.trust_store().validate(p256.organization.chain, at=dt.datetime(2025, 7, 1))


def test_demo_ca_refuses_ed25519_ca_keys() -> None:
    """cryptography's verifier rejects Ed25519-signed certificates, so CAs use P-256 or RSA."""
    with pytest.raises(ValueError, match="CA keys"):
        DemoCA.create(key_type=KeyType.ED25519)


def test_demo_certificates_are_valid_to_a_clock_half_an_hour_behind(ca: DemoCA) -> None:
    """Issued certificates start well in the past: a lagging peer (or a test whose "now" was
    taken before a slow suite reached the issuing fixture) does not see them as not yet valid."""
    agency = ca.issue_agency(SENDER, SENDER_NAME)
    half_an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    validated = ca.trust_store().validate(
        agency.chain, at=half_an_hour_ago, purpose=CertificatePurpose.CLIENT_AUTH
    )
    assert validated.leaf == agency.certificate


class _CountingStore(TrustStore):
    """Counts the paths it builds (the work a kept chain saves)."""

    built = 0

    def _build_path(
        self, chain: Sequence[x509.Certificate], *, at: dt.datetime, purpose: CertificatePurpose
    ) -> ValidatedChain:
        self.built += 1
        return super()._build_path(chain, at=at, purpose=purpose)


def _counting_store(ca: DemoCA) -> _CountingStore:
    assert ca.intermediate is not None
    return _CountingStore([ca.root_certificate], intermediates=[ca.intermediate.certificate])


def test_a_chain_validated_once_is_kept_for_the_times_its_certificates_are_valid(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    """Every document of a signer presents the same chain: its path is built once."""
    store = _counting_store(ca)
    first = store.validate(p256.person.chain, at=now)
    again = store.validate(p256.person.chain, at=now - dt.timedelta(minutes=5))
    assert again == first
    assert store.built == 1
    # Another purpose is another question (an official's certificate is no login).
    with pytest.raises(CertificateUsageError):
        store.validate(p256.person.chain, at=now, purpose=CertificatePurpose.CLIENT_AUTH)
    assert store.built == 2


def test_a_kept_chain_still_fails_outside_its_certificates_validity(
    ca: DemoCA, p256: Signers, now: dt.datetime
) -> None:
    store = _counting_store(ca)
    store.validate(p256.person.chain, at=now)
    leaf = p256.person.certificate
    with pytest.raises(CertificateExpiredError):
        store.validate(p256.person.chain, at=leaf.not_valid_after_utc + dt.timedelta(seconds=1))
    with pytest.raises(CertificateNotYetValidError):
        store.validate(p256.person.chain, at=leaf.not_valid_before_utc - dt.timedelta(seconds=1))
    assert store.built == 3
    # And the kept path still answers inside it.
    store.validate(p256.person.chain, at=now)
    assert store.built == 3


def test_a_kept_chain_is_checked_against_the_crls_of_each_store(
    fresh_ca: DemoCA, now: dt.datetime
) -> None:
    """A reloaded CRL comes as a new store: a chain it revokes is refused there, whatever an
    earlier store kept."""
    agency = fresh_ca.issue_agency(SENDER, SENDER_NAME)
    before = fresh_ca.trust_store()
    before.validate(agency.chain, at=now)
    fresh_ca.revoke(agency.certificate)
    with pytest.raises(CertificateRevokedError):
        fresh_ca.trust_store().validate(agency.chain, at=now)
