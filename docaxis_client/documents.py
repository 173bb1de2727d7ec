"""A document as signed: its canonical manifest, its signatures on the wire, and their checks.

One implementation for both sides. The DMS signs ``manifest_of(header, attachments)`` before
submitting; docaxis rebuilds the manifest from what it stores (``build_manifest``, which
``manifest_of`` also calls) and accepts only signatures over exactly that; the recipient calls
``verify_delivery`` on what it is pushed. The DocumentId inside the manifest comes from
``document_id_of`` on every side, the hub's routing key included.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2

from docaxis_client.trust.chain import TrustStore, person_of
from docaxis_client.trust.document import (
    AttachmentFields,
    build_manifest,
    document_id_of,
    normalise,
)
from docaxis_client.trust.errors import (
    ManifestInvalidError,
    SignatureInvalidError,
    SigningTimeError,
)
from docaxis_client.trust.keys import SigningIdentity, parse_algorithm
from docaxis_client.trust.manifest import Manifest
from docaxis_client.trust.receipts import TransportReceipt, verify_receipt
from docaxis_client.trust.signatures import (
    DocumentSignature,
    DocumentSignatures,
    SignerRole,
    VerifiedSigners,
    sign_document,
    verify_document,
)

__all__ = [
    "AttachmentFields",
    "build_manifest",
    "document_id_of",
    "document_signatures",
    "manifest_of",
    "normalise",
    "sign_submission",
    "signature_of",
    "signatures_from_pb",
    "signatures_to_pb",
    "verify_delivery",
    "verify_transport_receipt",
    "with_signer",
]

# The protobuf BusinessType is shifted by one so that zero means "not given"; the manifest
# carries the edXML value (0 new, 1 revoke, 2 update, 3 replace), like the hub's domain model.
_BUSINESS_TYPE_FROM_PB = {
    common_pb2.BUSINESS_TYPE_UNSPECIFIED: 0,
    common_pb2.BUSINESS_TYPE_NEW: 0,
    common_pb2.BUSINESS_TYPE_REVOKE: 1,
    common_pb2.BUSINESS_TYPE_UPDATE: 2,
    common_pb2.BUSINESS_TYPE_REPLACE: 3,
}
_ROLE_TO_PB = {
    SignerRole.PERSON: common_pb2.SIGNATURE_ROLE_PERSON,
    SignerRole.ORGANIZATION: common_pb2.SIGNATURE_ROLE_ORGANIZATION,
}
_ROLE_FROM_PB = {value: key for key, value in _ROLE_TO_PB.items()}


def manifest_of(
    header: common_pb2.DocumentHeader, attachments: Sequence[common_pb2.AttachmentRef]
) -> Manifest:
    """The canonical manifest of a header and its attachment references, as both signatures
    cover it. ``header.document_id`` is output only and ignored: it is recomputed."""
    business_type = _BUSINESS_TYPE_FROM_PB.get(header.business_type)
    if business_type is None:
        raise ManifestInvalidError("business_type", f"unknown value {header.business_type}")
    return build_manifest(
        sender=header.sender,
        recipients=header.recipients,
        code_number=header.code.number,
        code_notation=header.code.notation,
        promulgation_place=header.promulgation_place,
        promulgation_date=header.promulgation_date,
        document_type=header.document_type,
        type_name=header.type_name,
        subject=header.subject,
        signer_competence=header.signer.competence,
        signer_position=header.signer.position,
        signer_full_name=header.signer.full_name,
        due_date=header.due_date or None,
        priority=header.priority,
        business_type=business_type,
        response_for=header.response_for,
        attachments=[AttachmentFields(a.name, a.media_type, a.size, a.sha256) for a in attachments],
    )


def signature_of(
    role: SignerRole,
    algorithm: str,
    value: bytes,
    chain: Sequence[bytes],
    signed_at: dt.datetime | None,
) -> DocumentSignature:
    """One signature from its transported parts; refuses an unknown algorithm or no time."""
    if signed_at is None:
        raise SignatureInvalidError(role, "carries no signing time")
    if signed_at.tzinfo is None or signed_at.utcoffset() is None:
        raise SigningTimeError(role, signed_at, "must be timezone-aware")
    return DocumentSignature(
        role=role,
        algorithm=parse_algorithm(algorithm),
        signature=bytes(value),
        chain=tuple(bytes(der) for der in chain),
        signed_at=signed_at.astimezone(dt.UTC),
    )


def document_signatures(signatures: Sequence[DocumentSignature]) -> DocumentSignatures:
    """Exactly one person and one organisation signature, or SignatureInvalidError."""
    by_role: dict[SignerRole, list[DocumentSignature]] = {role: [] for role in SignerRole}
    for signature in signatures:
        by_role[signature.role].append(signature)
    for role, found in by_role.items():
        if len(found) != 1:
            raise SignatureInvalidError(
                role, "missing" if not found else f"given {len(found)} times (exactly once)"
            )
    return DocumentSignatures(
        person=by_role[SignerRole.PERSON][0], organization=by_role[SignerRole.ORGANIZATION][0]
    )


def signatures_to_pb(signatures: DocumentSignatures) -> list[common_pb2.DocumentSignature]:
    """Both signatures as SubmitRequest carries them, person first (the signing order)."""
    result = []
    for signature in (signatures.person, signatures.organization):
        item = common_pb2.DocumentSignature(
            role=_ROLE_TO_PB[signature.role],
            algorithm=signature.algorithm.value,
            signature=signature.signature,
            certificate_chain=list(signature.chain),
        )
        item.signed_at.FromDatetime(signature.signed_at)
        result.append(item)
    return result


def signatures_from_pb(items: Sequence[common_pb2.DocumentSignature]) -> DocumentSignatures:
    """The pair of signatures a Delivery (or a SubmitRequest) carries."""
    parsed = []
    for item in items:
        role = _ROLE_FROM_PB.get(item.role)
        if role is None:
            raise SignatureInvalidError("unknown", f"role {item.role} is neither person nor org")
        parsed.append(
            signature_of(
                role,
                item.algorithm,
                item.signature,
                item.certificate_chain,
                item.signed_at.ToDatetime(dt.UTC) if item.HasField("signed_at") else None,
            )
        )
    return document_signatures(parsed)


def with_signer(
    header: common_pb2.DocumentHeader, person: SigningIdentity
) -> common_pb2.DocumentHeader:
    """The header with the official's full name taken from the person certificate when it
    leaves ``signer.full_name`` empty (the manifest, and so both signatures, cover the name, and
    docaxis refuses a name the certificate does not hold). The given header is not changed."""
    if header.signer.full_name:
        return header
    official = person_of(person.certificate)
    if official is None:
        raise ValueError("the person identity's certificate is not an official's certificate")
    completed = common_pb2.DocumentHeader()
    completed.CopyFrom(header)
    completed.signer.full_name = official.full_name
    return completed


def sign_submission(
    header: common_pb2.DocumentHeader,
    attachments: Sequence[common_pb2.AttachmentRef],
    *,
    person: SigningIdentity,
    organization: SigningIdentity,
    signed_at: dt.datetime | None = None,
) -> list[common_pb2.DocumentSignature]:
    """Person then organisation signature over the submission's manifest, ready for Submit
    (submit ``with_signer(header, person)``, which is what is signed here)."""
    signatures = sign_document(
        manifest_of(with_signer(header, person), attachments),
        person=person,
        organization=organization,
        signed_at=signed_at,
    )
    return signatures_to_pb(signatures)


def verify_delivery(
    delivery: exchange_service_pb2.Delivery, trust: TrustStore, *, at: dt.datetime | None = None
) -> VerifiedSigners:
    """Check a pushed document independently of docaxis: both signatures over the manifest of
    what arrived, both chains against the recipient's own trust anchors, and that the
    organisation signature is the sender's. Raises a TrustError subclass on any failure.

    Attachment bytes are covered by their SHA-256 in the manifest: compare downloads against it.
    """
    header = delivery.header
    manifest = manifest_of(header, delivery.attachments)
    if header.document_id and normalise(header.document_id) != manifest.document_id:
        raise ManifestInvalidError("document_id", "does not match the header it was sent with")
    return verify_document(
        manifest,
        signatures_from_pb(delivery.signatures),
        trust,
        at=at,
        expected_sender=header.sender,
    )


def verify_transport_receipt(
    receipt: TransportReceipt,
    trust: TrustStore,
    *,
    manifest_sha256: str,
    recipient: str | None = None,
    document_uuid: str | None = None,
) -> x509.Certificate:
    """A sender's offline check of a transport receipt: the hub's signature and chain, and that
    it attests the manifest the sender signed (and the recipient it expects). Returns the hub's
    certificate; raises a TrustError subclass otherwise."""
    hub = verify_receipt(receipt, trust)
    if receipt.manifest_sha256 != manifest_sha256:
        raise SignatureInvalidError("hub", "the receipt attests another manifest")
    if recipient is not None and receipt.recipient != normalise(recipient):
        raise SignatureInvalidError("hub", f"the receipt is for {receipt.recipient}")
    if document_uuid is not None and receipt.document_uuid != document_uuid.lower():
        raise SignatureInvalidError("hub", "the receipt is for another document")
    return hub
