"""A signing identity signs with the scheme its key and algorithm name, found once (keys.signer):
a hub signs a receipt for every copy acknowledged."""

from __future__ import annotations

import pytest

from docaxis_client.trust import keys
from docaxis_client.trust.demo_pki import KeyType
from docaxis_client.trust.keys import (
    SignatureAlgorithm,
    SigningIdentity,
    verify_bytes,
    verifying_key,
)
from tests.unit.trust.conftest import Signers

MESSAGE = b'{"purpose":"docaxis-transport-receipt","v":1}'
SCHEMES = [
    (KeyType.ED25519, SignatureAlgorithm.ED25519),
    (KeyType.P256, SignatureAlgorithm.ECDSA_P256_SHA256),
    (KeyType.RSA2048, SignatureAlgorithm.RSA_PKCS1V15_SHA256),
    (KeyType.RSA2048, SignatureAlgorithm.RSA_PSS_SHA256),
]


def _identity(
    signers: dict[KeyType, Signers], key_type: KeyType, algorithm: SignatureAlgorithm
) -> SigningIdentity:
    return signers[key_type].organization.identity(algorithm)


@pytest.mark.parametrize(("key_type", "algorithm"), SCHEMES)
def test_an_identity_signs_under_its_own_algorithm_only(
    signers: dict[KeyType, Signers], key_type: KeyType, algorithm: SignatureAlgorithm
) -> None:
    identity = _identity(signers, key_type, algorithm)
    public = verifying_key(identity.certificate)
    signature = identity.sign(MESSAGE)
    assert verify_bytes(public, algorithm, MESSAGE, signature)
    assert not verify_bytes(public, algorithm, MESSAGE + b" ", signature)
    # The other RSA scheme is not what was asked for: PSS and PKCS#1 v1.5 are not confused.
    for other in keys._RSA_FAMILY - {algorithm} if algorithm in keys._RSA_FAMILY else ():
        assert not verify_bytes(public, other, MESSAGE, signature)


@pytest.mark.parametrize(("key_type", "algorithm"), SCHEMES)
def test_an_identity_finds_its_scheme_once(
    signers: dict[KeyType, Signers],
    key_type: KeyType,
    algorithm: SignatureAlgorithm,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once made, an identity signs without checking its key's type or pairing again (the
    one-off `sign_bytes` still does both)."""
    identity = _identity(signers, key_type, algorithm)

    def checked_again(*_: object) -> None:
        raise AssertionError("the key and algorithm were checked for a signature")

    monkeypatch.setattr(keys, "_check_pair", checked_again)
    monkeypatch.setattr(keys, "default_algorithm", checked_again)
    signature = identity.sign(MESSAGE)
    with pytest.raises(AssertionError):
        keys.sign_bytes(identity.key, algorithm, MESSAGE)
    monkeypatch.undo()
    assert verify_bytes(verifying_key(identity.certificate), algorithm, MESSAGE, signature)
