"""Conversions between exchange protos and the domain model. Malformed input is reported per
field, all at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf import timestamp_pb2

from docaxis_client.recent import Recent
from services.common.errors import FieldViolation, parse_iso_date
from services.common.grpc_serialized import Parts, delimited
from services.exchange.domain.model import (
    VIETNAM,
    AttachmentRef,
    BusinessType,
    DeliveryState,
    Header,
    Receipt,
    Signature,
    Submission,
    nfc,
)
from services.exchange.domain.peering import Hop
from services.exchange.domain.verification import SignatureMode, Verification
from services.exchange.service_layer.ports import DocumentTrack, PushItem

_BUSINESS_FROM_PB = {
    common_pb2.BUSINESS_TYPE_UNSPECIFIED: BusinessType.NEW,
    common_pb2.BUSINESS_TYPE_NEW: BusinessType.NEW,
    common_pb2.BUSINESS_TYPE_REVOKE: BusinessType.REVOKE,
    common_pb2.BUSINESS_TYPE_UPDATE: BusinessType.UPDATE,
    common_pb2.BUSINESS_TYPE_REPLACE: BusinessType.REPLACE,
}
_BUSINESS_TO_PB = {
    BusinessType.NEW: common_pb2.BUSINESS_TYPE_NEW,
    BusinessType.REVOKE: common_pb2.BUSINESS_TYPE_REVOKE,
    BusinessType.UPDATE: common_pb2.BUSINESS_TYPE_UPDATE,
    BusinessType.REPLACE: common_pb2.BUSINESS_TYPE_REPLACE,
}
_ROLE_FROM_PB = {
    common_pb2.SIGNATURE_ROLE_PERSON: "person",
    common_pb2.SIGNATURE_ROLE_ORGANIZATION: "organization",
}
_ROLE_TO_PB = {value: key for key, value in _ROLE_FROM_PB.items()}
_FORM_TO_PB = {
    "manifest": common_pb2.SIGNATURE_FORM_MANIFEST,
    "pades": common_pb2.SIGNATURE_FORM_PADES,
    "xmldsig": common_pb2.SIGNATURE_FORM_XMLDSIG,
}
_MODE_TO_PB = {
    SignatureMode.SIGNED: common_pb2.SIGNATURE_MODE_SIGNED,
    SignatureMode.TRANSPORT_ATTESTED: common_pb2.SIGNATURE_MODE_TRANSPORT_ATTESTED,
    SignatureMode.UNSIGNED: common_pb2.SIGNATURE_MODE_UNSIGNED,
}
_STATE_TO_PB = {
    DeliveryState.ACCEPTED: pb.DELIVERY_STATE_ACCEPTED,
    DeliveryState.QUEUED: pb.DELIVERY_STATE_QUEUED,
    DeliveryState.PUSHED: pb.DELIVERY_STATE_PUSHED,
    DeliveryState.ACKNOWLEDGED: pb.DELIVERY_STATE_ACKNOWLEDGED,
    DeliveryState.FAILED: pb.DELIVERY_STATE_FAILED,
    DeliveryState.WITHDRAWN: pb.DELIVERY_STATE_WITHDRAWN,
    DeliveryState.DEAD_LETTERED: pb.DELIVERY_STATE_DEAD_LETTERED,
}
_STATE_FROM_PB: dict[int, DeliveryState] = {value: key for key, value in _STATE_TO_PB.items()}


def business_type_to_pb(value: BusinessType) -> common_pb2.BusinessType.ValueType:
    return _BUSINESS_TO_PB[value]


def state_to_pb(state: DeliveryState) -> pb.DeliveryState.ValueType:
    return _STATE_TO_PB[state]


def state_from_pb(value: int) -> DeliveryState | None:
    """None for DELIVERY_STATE_UNSPECIFIED and unknown values."""
    return _STATE_FROM_PB.get(value)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    """The Timestamp `FromDatetime` would fill, from the instant's distance to the epoch: its
    three Python frames (with `calendar.timegm` and the range check) were a push's largest
    protobuf cost after the bytes (a copy's document carries one a signature). The timedelta
    is normalised as timegm floors, so instants before 1970 give the same seconds and nanos,
    and every datetime is within Timestamp's range."""
    if value is None:
        return None
    since = value.astimezone(dt.UTC) - _EPOCH
    return timestamp_pb2.Timestamp(
        seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1_000
    )


def submission_from_pb(request: pb.SubmitRequest) -> tuple[Submission, list[FieldViolation]]:
    """Parses the request's shape (dates, enums). Fields that do not parse are returned as
    problems with placeholders in the submission, so that the domain's content checks run too and
    one answer lists every problem."""
    problems: list[FieldViolation] = []
    h = request.header
    promulgation = parse_iso_date(
        problems, "header.promulgation_date", h.promulgation_date, required=True
    )
    due = parse_iso_date(problems, "header.due_date", h.due_date, required=False)
    business = _BUSINESS_FROM_PB.get(h.business_type)
    if business is None:
        problems.append(FieldViolation("header.business_type", "unknown value"))
    if h.document_id:
        problems.append(
            FieldViolation("header.document_id", "output only: docaxis computes the DocumentId")
        )
    if not 0 <= h.priority <= common_pb2.PRIORITY_TIMED_EXPRESS:
        problems.append(FieldViolation("header.priority", "unknown value"))
    signatures: list[Signature] = []
    for index, s in enumerate(request.signatures):
        role = _ROLE_FROM_PB.get(s.role)
        if role is None:
            problems.append(FieldViolation(f"signatures[{index}].role", "PERSON or ORGANIZATION"))
            continue
        signatures.append(
            Signature(
                role=role,
                algorithm=s.algorithm,
                value=s.signature,
                certificate_chain=tuple(s.certificate_chain),
                signed_at=s.signed_at.ToDatetime(dt.UTC) if s.HasField("signed_at") else None,
            )
        )
    header = Header(
        sender=nfc(h.sender),
        recipients=tuple(nfc(r) for r in h.recipients),
        code_number=nfc(h.code.number),
        code_notation=nfc(h.code.notation),
        promulgation_date=promulgation or dt.datetime.now(VIETNAM).date(),
        subject=nfc(h.subject),
        promulgation_place=nfc(h.promulgation_place),
        document_type=h.document_type,
        type_name=nfc(h.type_name),
        content=nfc(h.content),
        signer_competence=nfc(h.signer.competence),
        signer_position=nfc(h.signer.position),
        signer_full_name=nfc(h.signer.full_name),
        due_date=due,
        priority=h.priority,
        business_type=business or BusinessType.NEW,
        response_for=tuple(nfc(r) for r in h.response_for),
        to_places=tuple(nfc(p) for p in h.to_places),
    )
    attachments = tuple(_attachment_from_pb(a) for a in request.attachments)
    envelope = _attachment_from_pb(request.envelope) if request.HasField("envelope") else None
    submission = Submission(
        request.consignment_id, header, attachments, tuple(signatures), envelope=envelope
    )
    return submission, problems


def _attachment_from_pb(a: common_pb2.AttachmentRef) -> AttachmentRef:
    return AttachmentRef(
        name=nfc(a.name),
        media_type=a.media_type.strip(),
        size=a.size,
        sha256=a.sha256.strip(),
        description=nfc(a.description),
    )


def verification_to_pb(verification: Verification | None) -> common_pb2.Verification | None:
    """None for documents stored before verifications were kept."""
    if verification is None:
        return None
    return common_pb2.Verification(
        mode=_MODE_TO_PB[verification.mode],
        warnings=list(verification.warnings),
        verified_at=timestamp(verification.verified_at),
        checks=[
            common_pb2.SignatureCheck(
                form=_FORM_TO_PB.get(c.form, common_pb2.SIGNATURE_FORM_UNSPECIFIED),
                role=_ROLE_TO_PB.get(c.role, common_pb2.SIGNATURE_ROLE_UNSPECIFIED),
                attachment=c.attachment,
                field=c.field,
                subject=c.subject,
                agency_code=c.agency_code,
                full_name=c.full_name,
                signed_at=timestamp(c.signed_at),
                algorithm=c.algorithm,
                certificate_sha256=c.certificate_sha256,
                serial=c.serial,
                covers_whole_document=c.covers_whole_document,
                legacy_algorithm=c.legacy_algorithm,
                checked=c.checked,
            )
            for c in verification.checks
        ],
    )


def envelope_to_pb(envelope: AttachmentRef | None) -> common_pb2.AttachmentRef | None:
    return None if envelope is None else attachment_to_pb(envelope)


def header_to_pb(header: Header) -> common_pb2.DocumentHeader:
    return common_pb2.DocumentHeader(
        sender=header.sender,
        recipients=list(header.recipients),
        code=common_pb2.DocumentCode(number=header.code_number, notation=header.code_notation),
        promulgation_place=header.promulgation_place,
        promulgation_date=header.promulgation_date.isoformat(),
        document_type=header.document_type,
        type_name=header.type_name,
        subject=header.subject,
        content=header.content,
        signer=common_pb2.Signer(
            competence=header.signer_competence,
            position=header.signer_position,
            full_name=header.signer_full_name,
        ),
        due_date=header.due_date.isoformat() if header.due_date else "",
        priority=header.priority,  # type: ignore[arg-type]  # range-checked on the way in
        business_type=_BUSINESS_TO_PB[header.business_type],
        response_for=list(header.response_for),
        document_id=header.document_id,
        to_places=list(header.to_places),
    )


def attachment_to_pb(a: AttachmentRef) -> common_pb2.AttachmentRef:
    return common_pb2.AttachmentRef(
        name=a.name,
        media_type=a.media_type,
        size=a.size,
        sha256=a.sha256,
        description=a.description,
    )


def receipt_to_pb(receipt: Receipt) -> pb.SubmissionReceipt:
    return pb.SubmissionReceipt(
        document_uuid=receipt.document_uuid,
        document_id=receipt.document_id,
        consignment_id=receipt.consignment_id,
        accepted_at=timestamp(receipt.accepted_at),
        routes=[
            pb.Route(
                requested_recipient=r.requested_recipient,
                effective_recipient=r.effective_recipient,
                delivery_id=r.delivery_id,
            )
            for r in receipt.routes
        ],
    )


def delivery_to_pb(item: PushItem) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=item.delivery_id,
        document_uuid=item.document_uuid,
        header=header_to_pb(item.header),
        attachments=[attachment_to_pb(a) for a in item.attachments],
        signatures=[signature_to_pb(s) for s in item.signatures],
        submitted_at=timestamp(item.submitted_at),
        requested_recipient=item.requested_recipient,
        verification=verification_to_pb(item.verification),
        envelope=envelope_to_pb(item.envelope),
        trace=trace_to_pb(item.trace),
    )


def trace_to_pb(trace: Sequence[Hop]) -> list[pb.TraceHop]:
    return [pb.TraceHop(hub_code=h.hub, at=timestamp(h.at)) for h in trace]


# Documents whose delivery message DeliveryProtos keeps (the last ones pushed or fetched).
DOCUMENTS_KEPT = 64


class DeliveryProtos:
    """Deliveries as pushed or fetched, each document's part built once.

    All copies of a document share everything but their delivery id and requested recipient:
    the header (with every recipient's code: 3,000 of them in a circular to every commune),
    attachments, signatures with their certificate chains, the verification. Building that
    from the stored document for each of a circular's copies cost more than pushing it; so the
    last few documents' messages are kept (a stored document never changes) and each copy is a
    copy of its document's message with its own two fields set."""

    def __init__(self, kept: int = DOCUMENTS_KEPT) -> None:
        self._documents: Recent[str, pb.Delivery] = Recent(kept)
        self._serialized: Recent[str, bytes] = Recent(kept)

    def _document(self, item: PushItem) -> pb.Delivery:
        """`item`'s document part: its delivery without the copy's own two fields."""
        document = self._documents.get(item.document_uuid)
        if document is None:
            document = delivery_to_pb(item)
            document.ClearField("delivery_id")
            document.ClearField("requested_recipient")
            self._documents.put(item.document_uuid, document)
        return document

    def fill(self, into: pb.Delivery, item: PushItem) -> None:
        into.CopyFrom(self._document(item))
        into.delivery_id = item.delivery_id
        into.requested_recipient = item.requested_recipient

    def received(self, item: PushItem) -> Parts:
        """`item` as a serialized ReceiveResponse, in parts: the copy's two fields serialized,
        then its document's part, serialized once (protobuf merges a message's concatenated
        fields, and the document's part has neither of the two), so that each of a circular's
        copies costs no copy of its 49 KB message, nor its serialization: about 30 us a copy
        kept until sent, with ReceiveStream's wrap (`stream_item`), against 125-240 us built in
        place and serialized. Left in parts for Receive to join, or ReceiveStream to join
        inside its own message: one copy of the 49 KB where joining here made two."""
        document = self._serialized.get(item.document_uuid)
        if document is None:
            document = self._document(item).SerializeToString()
            self._serialized.put(item.document_uuid, document)
        own = pb.Delivery(
            delivery_id=item.delivery_id, requested_recipient=item.requested_recipient
        ).SerializeToString()
        return delimited(_RECEIVED_DELIVERY, own, document)


_RECEIVED_DELIVERY = pb.ReceiveResponse.DESCRIPTOR.fields_by_name["delivery"].number


def signature_to_pb(s: Signature) -> common_pb2.DocumentSignature:
    return common_pb2.DocumentSignature(
        role=_ROLE_TO_PB[s.role],
        algorithm=s.algorithm,
        signature=s.value,
        certificate_chain=list(s.certificate_chain),
        signed_at=timestamp(s.signed_at),
    )


def submission_to_pb(submission: Submission) -> pb.SubmitRequest:
    """A stored document as its sender submitted it (a peer hub forwards it like this)."""
    header = header_to_pb(submission.header)
    header.ClearField("document_id")  # output only: the receiving hub computes it again
    return pb.SubmitRequest(
        consignment_id=submission.consignment_id,
        header=header,
        attachments=[attachment_to_pb(a) for a in submission.attachments],
        signatures=[signature_to_pb(s) for s in submission.signatures],
        envelope=envelope_to_pb(submission.envelope),
    )


def track_to_pb(track: DocumentTrack) -> pb.TrackResponse:
    return pb.TrackResponse(
        document_uuid=track.document_uuid,
        header=header_to_pb(track.header),
        submitted_at=timestamp(track.submitted_at),
        recipients=[
            pb.RecipientState(
                requested_recipient=r.requested_recipient,
                effective_recipient=r.effective_recipient,
                delivery_id=r.delivery_id,
                state=state_to_pb(r.state),
                accepted_at=timestamp(r.accepted_at),
                queued_at=timestamp(r.queued_at),
                pushed_at=timestamp(r.pushed_at),
                acknowledged_at=timestamp(r.acknowledged_at),
                push_count=r.push_count,
                dead_lettered_at=timestamp(r.dead_lettered_at),
                dead_letter_reason=r.dead_letter_reason,
            )
            for r in track.recipients
        ],
        verification=verification_to_pb(track.verification),
        envelope=envelope_to_pb(track.envelope),
    )
