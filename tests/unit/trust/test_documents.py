"""The manifest the DMS signs is the one the hub verifies and the recipient re-checks."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Literal

import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from hypothesis import given
from hypothesis import strategies as st

from docaxis_client.documents import (
    manifest_of,
    sign_submission,
    signatures_from_pb,
    verify_delivery,
)
from docaxis_client.trust import ManifestInvalidError, SignatureInvalidError
from docaxis_client.trust.demo_pki import DemoCA
from services.exchange.domain.model import manifest_of as hub_manifest_of
from services.exchange.entrypoints.convert import (
    attachment_to_pb,
    header_to_pb,
    submission_from_pb,
)
from tests.unit.trust.conftest import Signers

SENDER = "000.00.00.H45"
RECIPIENTS = ["000.00.00.G22", "000.00.13.H45"]
SHA = "ab" * 32

# Vietnamese letters whose NFC and NFD spellings differ, plus spaces the hub trims.
_letters = st.sampled_from(list("aăâđeêioôơuưyáàảãạắằẳẵặấầẩẫậếềểễệốồổỗộớờởỡợứừửữựýỳỷỹỵ Đ-/.,"))
_text = st.text(_letters, min_size=1, max_size=20).map(lambda t: t.strip() or "x")


def _spelled(text: str, form: Literal["NFC", "NFD"], pad: bool) -> str:
    spelled = unicodedata.normalize(form, text)
    return f"  {spelled}\t" if pad else spelled


def _request(
    subject: str,
    signer: str,
    place: str,
    attachment: str,
    form: Literal["NFC", "NFD"],
    pad: bool,
) -> pb.SubmitRequest:
    def spell(text: str) -> str:
        return _spelled(text, form, pad)

    return pb.SubmitRequest(
        consignment_id="c-1",
        header=common_pb2.DocumentHeader(
            sender=spell(SENDER),
            recipients=[spell(code) for code in RECIPIENTS],
            code=common_pb2.DocumentCode(number=spell("12"), notation=spell("UBND-VP")),
            promulgation_place=spell(place),
            promulgation_date="2025-07-01",
            document_type=1,
            type_name=spell("Công văn"),
            subject=spell(subject),
            signer=common_pb2.Signer(
                competence=spell("KT. CHỦ TỊCH"),
                position=spell("Phó Chủ tịch"),
                full_name=spell(signer),
            ),
            due_date="2025-07-15",
            priority=common_pb2.PRIORITY_URGENT,
            business_type=common_pb2.BUSINESS_TYPE_REPLACE,
            response_for=[spell(f"{SENDER},2025/06/01,11/UBND-VP")],
        ),
        attachments=[
            common_pb2.AttachmentRef(
                name=spell(attachment), media_type=" application/pdf ", size=7, sha256=SHA
            )
        ],
    )


@given(
    subject=_text,
    signer=_text,
    place=_text,
    attachment=_text,
    form=st.sampled_from(["NFC", "NFD"]),
    pad=st.booleans(),
)
def test_the_dms_the_hub_and_the_recipient_compute_the_same_manifest(
    subject: str,
    signer: str,
    place: str,
    attachment: str,
    form: Literal["NFC", "NFD"],
    pad: bool,
) -> None:
    """Whatever the spelling (NFC or NFD) and spacing the DMS sends, the manifest it signs from
    its own request equals the hub's (from what it stores) and the recipient's (from what it is
    pushed), DocumentId included."""
    request = _request(subject, signer, place, attachment, form, pad)
    signed_by_dms = manifest_of(request.header, request.attachments)
    submission, problems = submission_from_pb(request)
    assert problems == []
    verified_by_hub = hub_manifest_of(submission.header, submission.attachments)
    pushed = header_to_pb(submission.header)
    seen_by_recipient = manifest_of(pushed, [attachment_to_pb(a) for a in submission.attachments])
    assert signed_by_dms.canonical_bytes() == verified_by_hub.canonical_bytes()
    assert seen_by_recipient.canonical_bytes() == verified_by_hub.canonical_bytes()
    assert signed_by_dms.document_id == submission.header.document_id == pushed.document_id


def test_a_date_spelled_another_iso_way_signs_the_same_bytes() -> None:
    header = _request("a", "b", "c", "d.pdf", "NFC", pad=False).header
    compact = common_pb2.DocumentHeader()
    compact.CopyFrom(header)
    compact.promulgation_date = "20250701"
    assert manifest_of(compact, []) == manifest_of(header, [])


def test_a_header_that_makes_no_manifest_is_refused_with_its_field() -> None:
    header = _request("a", "b", "c", "d.pdf", "NFC", pad=False).header
    header.promulgation_date = "1 tháng 7"
    with pytest.raises(ManifestInvalidError) as failure:
        manifest_of(header, [])
    assert failure.value.field == "promulgation_date"


@pytest.fixture
def delivery(ca: DemoCA, p256: Signers) -> pb.Delivery:
    """A pushed delivery of a document signed by SENDER's official and SENDER."""
    request = _request("Trích yếu", "Nguyễn Văn Đức", "Khánh Hòa", "a.pdf", "NFC", pad=False)
    submission, _ = submission_from_pb(request)
    header = header_to_pb(submission.header)
    attachments = [attachment_to_pb(a) for a in submission.attachments]
    signatures = sign_submission(
        header,
        attachments,
        person=p256.person.identity(),
        organization=p256.organization.identity(),
    )
    return pb.Delivery(header=header, attachments=attachments, signatures=signatures)


def test_a_recipient_verifies_a_delivery_and_notices_any_change(
    ca: DemoCA, delivery: pb.Delivery
) -> None:
    trust = ca.trust_store()
    signers = verify_delivery(delivery, trust)
    assert (signers.sender, signers.person.full_name) == (SENDER, "Nguyễn Văn Đức")

    changed = pb.Delivery()
    changed.CopyFrom(delivery)
    changed.header.subject = "Trích yếu khác"
    with pytest.raises(SignatureInvalidError):
        verify_delivery(changed, trust)
    changed.CopyFrom(delivery)
    changed.attachments[0].sha256 = "cd" * 32
    with pytest.raises(SignatureInvalidError):
        verify_delivery(changed, trust)
    changed.CopyFrom(delivery)
    changed.header.document_id = f"{SENDER},2025/07/01,13/UBND-VP"
    with pytest.raises(ManifestInvalidError):
        verify_delivery(changed, trust)


def test_a_delivery_needs_exactly_one_signature_per_role(delivery: pb.Delivery) -> None:
    person, organization = delivery.signatures
    for signatures in ([person], [organization, organization, person], []):
        with pytest.raises(SignatureInvalidError):
            signatures_from_pb(signatures)
    untimed = common_pb2.DocumentSignature()
    untimed.CopyFrom(person)
    untimed.ClearField("signed_at")
    with pytest.raises(SignatureInvalidError, match="no signing time"):
        signatures_from_pb([untimed, organization])
    assert signatures_from_pb([organization, person]).person.signed_at == dt.datetime(
        *person.signed_at.ToDatetime().timetuple()[:6], tzinfo=dt.UTC
    )
