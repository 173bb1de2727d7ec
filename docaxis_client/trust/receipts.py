"""Hub-signed transport receipts: offline-verifiable proof that a recipient picked a document up."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from cryptography import x509

from docaxis_client.trust.canonical import (
    TRANSPORT_RECEIPT_PURPOSE,
    JsonValue,
    canonical_json,
    format_utc,
    nfc,
    parse_utc,
    utc_now,
)
from docaxis_client.trust.chain import (
    CertificatePurpose,
    Role,
    TrustStore,
    describe,
    peer_hub_of,
    role_of,
)
from docaxis_client.trust.errors import (
    SignatureInvalidError,
    SignerMismatchError,
    UnsupportedAlgorithmError,
)
from docaxis_client.trust.keys import (
    SignatureAlgorithm,
    SigningIdentity,
    key_id,
    load_der_chain,
    parse_algorithm,
    verify_bytes,
    verifying_key,
)

RECEIPT_VERSION = 1
_RECEIPT_ROLE = "hub"
# Receipts are many and small: compact, fast signatures only.
_RECEIPT_ALGORITHMS = frozenset({SignatureAlgorithm.ED25519, SignatureAlgorithm.ECDSA_P256_SHA256})


@dataclass(frozen=True, slots=True)
class TransportReceipt:
    """A recipient's acknowledgement of one document, as attested by the hub.

    This is the transport layer ("picked up"), not a business status such as 03 "accepted".
    """

    document_uuid: str
    document_id: str
    manifest_sha256: str
    recipient: str
    acknowledged_at: dt.datetime
    hub_key_id: str
    algorithm: SignatureAlgorithm
    signature: bytes
    chain: tuple[bytes, ...]

    def canonical_bytes(self) -> bytes:
        """The RFC 8785 bytes the hub signed (everything except the signature and chain)."""
        return receipt_payload(
            document_uuid=self.document_uuid,
            document_id=self.document_id,
            manifest_sha256=self.manifest_sha256,
            recipient=self.recipient,
            acknowledged_at=self.acknowledged_at,
            hub_key_id=self.hub_key_id,
            algorithm=self.algorithm,
        )

    def to_json(self) -> bytes:
        """Self-contained JSON for archiving or handing to the sender."""
        return self.json_with_chain([base64.b64encode(der).decode("ascii") for der in self.chain])

    def json_with_chain(self, chain: JsonValue) -> bytes:
        """:meth:`to_json`'s bytes with `chain` in the place of the certificate chain (a hub
        stores its receipts with a reference to a chain it keeps once: the chain is the same
        for every receipt of one key, and four fifths of the bytes)."""
        body: dict[str, JsonValue] = {
            "v": RECEIPT_VERSION,
            "document_uuid": self.document_uuid,
            "document_id": self.document_id,
            "manifest_sha256": self.manifest_sha256,
            "recipient": self.recipient,
            "acknowledged_at": format_utc(self.acknowledged_at),
            "hub_key_id": self.hub_key_id,
            "alg": self.algorithm.value,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "chain": chain,
        }
        return canonical_json(body)

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        """Inverse of :meth:`to_json`; malformed input raises ``ValueError``."""
        body: Mapping[str, Any] = json.loads(data)
        if body.get("v") != RECEIPT_VERSION:
            raise ValueError(f"unsupported receipt version {body.get('v')!r}")
        try:
            return cls(
                document_uuid=str(body["document_uuid"]),
                document_id=str(body["document_id"]),
                manifest_sha256=str(body["manifest_sha256"]),
                recipient=str(body["recipient"]),
                acknowledged_at=parse_utc(str(body["acknowledged_at"])),
                hub_key_id=str(body["hub_key_id"]),
                algorithm=parse_algorithm(str(body["alg"])),
                signature=base64.b64decode(body["signature"], validate=True),
                chain=tuple(base64.b64decode(der, validate=True) for der in body["chain"]),
            )
        except KeyError as exc:
            raise ValueError(f"receipt field {exc.args[0]!r} is missing") from exc


def receipt_payload(
    *,
    document_uuid: str,
    document_id: str,
    manifest_sha256: str,
    recipient: str,
    acknowledged_at: dt.datetime,
    hub_key_id: str,
    algorithm: SignatureAlgorithm,
) -> bytes:
    """Canonical bytes of a receipt; ``purpose`` keeps it distinct from document signatures."""
    return canonical_json(
        {
            "v": RECEIPT_VERSION,
            "purpose": TRANSPORT_RECEIPT_PURPOSE,
            "document_uuid": document_uuid,
            "document_id": document_id,
            "manifest_sha256": manifest_sha256,
            "recipient": recipient,
            "acknowledged_at": format_utc(acknowledged_at),
            "hub_key_id": hub_key_id,
            "alg": algorithm.value,
        }
    )


def sign_receipt(
    *,
    document_uuid: str,
    document_id: str,
    manifest_sha256: str,
    recipient: str,
    hub: SigningIdentity,
    acknowledged_at: dt.datetime | None = None,
) -> TransportReceipt:
    """Sign a receipt with the hub's Ed25519 or P-256 key."""
    algorithm = hub.effective_algorithm
    if algorithm not in _RECEIPT_ALGORITHMS:
        raise UnsupportedAlgorithmError(
            f"receipts are signed with Ed25519 or P-256, not {algorithm}"
        )
    if acknowledged_at is None:
        moment = utc_now()
    elif acknowledged_at.tzinfo is None or acknowledged_at.utcoffset() is None:
        raise ValueError("acknowledged_at must be timezone-aware")
    else:
        moment = acknowledged_at.astimezone(dt.UTC).replace(microsecond=0)
    fields = {
        "document_uuid": str(uuid.UUID(document_uuid)),  # one spelling: lowercase, hyphenated
        "document_id": nfc(document_id),
        "manifest_sha256": manifest_sha256,
        "recipient": nfc(recipient),
        "hub_key_id": hub.key_id,
    }
    payload = receipt_payload(**fields, acknowledged_at=moment, algorithm=algorithm)
    return TransportReceipt(
        **fields,
        acknowledged_at=moment,
        algorithm=algorithm,
        signature=hub.sign(payload),
        chain=hub.chain_der(),
    )


def verify_receipt(receipt: TransportReceipt, trust: TrustStore) -> x509.Certificate:
    """Check a receipt offline: hub signature, hub certificate and chain at acknowledgement time.

    Returns the hub's leaf certificate. Raises a ``TrustError`` subclass on failure.
    """
    leaf = _verified_leaf(receipt, trust)
    if role_of(leaf) is not Role.HUB:
        raise SignerMismatchError(_RECEIPT_ROLE, "a hub certificate", describe(leaf))
    return leaf


def verify_hop_receipt(
    receipt: TransportReceipt, trust: TrustStore, *, hub_code: str
) -> x509.Certificate:
    """Check offline a receipt one hub gave another for a document handed over to it
    (federation): signed, at its time, under a peer certificate that names hub `hub_code`
    (``urn:docaxis:peer:<hub code>``), so it proves which hub took the document over.

    Returns that hub's leaf certificate. Raises a ``TrustError`` subclass on failure.
    """
    leaf = _verified_leaf(receipt, trust)
    named = peer_hub_of(leaf)
    if named != hub_code:
        raise SignerMismatchError(_RECEIPT_ROLE, f"hub {hub_code}", describe(leaf))
    return leaf


def _verified_leaf(receipt: TransportReceipt, trust: TrustStore) -> x509.Certificate:
    """The signing certificate, once the signature verifies and its chain is trusted at the
    receipt's time (who it names is for the caller to check)."""
    if receipt.algorithm not in _RECEIPT_ALGORITHMS:
        raise UnsupportedAlgorithmError(f"receipt algorithm {receipt.algorithm} is not accepted")
    try:
        certificates = load_der_chain(receipt.chain)
    except ValueError as exc:
        raise SignatureInvalidError(_RECEIPT_ROLE, "malformed certificate chain") from exc
    if not certificates:
        raise SignatureInvalidError(_RECEIPT_ROLE, "no hub certificate")
    leaf = certificates[0]
    if key_id(leaf) != receipt.hub_key_id:
        raise SignatureInvalidError(_RECEIPT_ROLE, "hub key id does not match the certificate")
    if not verify_bytes(
        verifying_key(leaf), receipt.algorithm, receipt.canonical_bytes(), receipt.signature
    ):
        raise SignatureInvalidError(_RECEIPT_ROLE, "does not verify")
    validated = trust.validate(
        certificates, at=receipt.acknowledged_at, purpose=CertificatePurpose.DOCUMENT_SIGNING
    )
    return validated.leaf
