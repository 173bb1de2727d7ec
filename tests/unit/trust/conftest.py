"""Session-scoped demo PKI for the trust tests, so RSA key generation happens once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate, KeyType, generate_key
from services.common.trust import TrustRegistry
from tests.unit.trust.factories import OFFICIAL, SENDER, SENDER_NAME


@dataclass(frozen=True, slots=True)
class Signers:
    """The official and the agency of SENDER, both with keys of one type."""

    person: IssuedCertificate
    organization: IssuedCertificate


@pytest.fixture
def now() -> dt.datetime:
    """This test's "now", taken when it starts: never at import, which may be long before."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def ca() -> DemoCA:
    """A P-256 root with an intermediate; never revoke through it (tests share it)."""
    return DemoCA.create()


@pytest.fixture
def fresh_ca() -> DemoCA:
    """A CA of one's own, for tests that revoke."""
    return DemoCA.create()


@pytest.fixture
def registry(fresh_ca: DemoCA) -> TrustRegistry:
    """The trust of a service whose anchors are `fresh_ca`'s."""
    assert fresh_ca.intermediate is not None
    return TrustRegistry([fresh_ca.root_certificate], [fresh_ca.intermediate.certificate])


@pytest.fixture(scope="session")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Two RSA-2048 keys, generated once per run."""
    first, second = generate_key(KeyType.RSA2048), generate_key(KeyType.RSA2048)
    assert isinstance(first, rsa.RSAPrivateKey)
    assert isinstance(second, rsa.RSAPrivateKey)
    return first, second


@pytest.fixture(scope="session")
def signers(
    ca: DemoCA, rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]
) -> dict[KeyType, Signers]:
    """SENDER's official and agency certificates for each key type under test."""
    result = {}
    for key_type in (KeyType.ED25519, KeyType.P256, KeyType.RSA2048):
        person_key, organization_key = rsa_keys if key_type is KeyType.RSA2048 else (None, None)
        result[key_type] = Signers(
            person=ca.issue_person(OFFICIAL, SENDER, key_type=key_type, key=person_key),
            organization=ca.issue_agency(
                SENDER, SENDER_NAME, key_type=key_type, key=organization_key
            ),
        )
    return result


@pytest.fixture(scope="session")
def p256(signers: dict[KeyType, Signers]) -> Signers:
    """The P-256 signers, the default for tests not about key types."""
    return signers[KeyType.P256]
