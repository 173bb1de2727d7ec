"""Values of a certificate kept by the certificate object (per_certificate.py): asked again of
that object, never answered for another one."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from docaxis_client.trust.chain import CertificatePurpose
from docaxis_client.trust.demo_pki import DemoCA
from docaxis_client.trust.errors import UntrustedIssuerError
from docaxis_client.trust.per_certificate import PerCertificate


def test_the_same_object_is_answered_from_memory_and_another_is_computed(ca: DemoCA) -> None:
    """The function runs once per certificate object; an object of the same bytes parsed apart
    is computed again (and answered the same)."""
    asked: list[x509.Certificate] = []

    def subject(certificate: x509.Certificate) -> str:
        asked.append(certificate)
        return certificate.subject.rfc4514_string()

    kept = PerCertificate(subject, kept=8)
    certificate = ca.issue_agency("000.00.00.H45", "Ủy ban").certificate
    twin = x509.load_der_x509_certificate(certificate.public_bytes(serialization.Encoding.DER))

    assert kept(certificate) == kept(certificate) == kept(twin)
    assert asked == [certificate, twin]


def test_a_certificate_is_never_answered_with_another_ones_value(ca: DemoCA) -> None:
    """Certificates made and dropped one after the other (whose objects' memory, and so ids, the
    interpreter reuses) each get their own subject, kept or forgotten."""
    for kept in (2, 1024):
        describe_kept = PerCertificate(lambda c: c.subject.rfc4514_string(), kept=kept)
        for n in range(50):
            issued = ca.issue_agency(f"000.00.{n:02d}.H45", f"Cơ quan {n}").certificate
            certificate = x509.load_der_x509_certificate(
                issued.public_bytes(serialization.Encoding.DER)
            )
            del issued
            assert describe_kept(certificate) == certificate.subject.rfc4514_string()
            del certificate
        assert len(describe_kept) <= kept


def test_a_failure_is_raised_again_every_time() -> None:
    calls = []

    def refuse(certificate: x509.Certificate) -> str:
        calls.append(certificate)
        raise ValueError("refused")

    kept = PerCertificate(refuse, kept=8)
    certificate = DemoCA.create().root_certificate
    for _ in range(2):
        with pytest.raises(ValueError, match="refused"):
            kept(certificate)
    assert len(calls) == 2


def _parsed(chain_der: tuple[bytes, ...]) -> tuple[x509.Certificate, ...]:
    """New certificate objects for `chain_der` (not load_der_chain's kept ones)."""
    return tuple(x509.load_der_x509_certificate(der) for der in chain_der)


def test_a_kept_path_is_never_answered_for_another_chain(ca: DemoCA) -> None:
    """The trust store keeps validated paths by their chains' objects: chains of this CA and of
    another one, parsed and dropped in turn (objects whose ids the interpreter reuses), are each
    judged as what they are."""
    store = ca.trust_store()
    at = dt.datetime.now(dt.UTC)
    genuine = ca.issue_agency("000.00.00.H45", "Ủy ban").identity().chain_der()
    stranger = DemoCA.create().issue_agency("000.00.00.H45", "Ủy ban").identity().chain_der()
    for _ in range(30):
        chain = _parsed(genuine)
        store.validate(chain, at=at, purpose=CertificatePurpose.DOCUMENT_SIGNING)
        del chain
        chain = _parsed(stranger)
        with pytest.raises(UntrustedIssuerError):
            store.validate(chain, at=at, purpose=CertificatePurpose.DOCUMENT_SIGNING)
        del chain
