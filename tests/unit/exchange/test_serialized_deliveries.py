"""Pushed items serialized once per document (DeliveryProtos.received) read back as the
messages built whole, and pass the server as they are (add_to_server)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.exchange.domain.model import AttachmentRef, Signature
from services.exchange.domain.peering import Hop
from services.exchange.entrypoints.convert import DeliveryProtos, delivery_to_pb
from services.exchange.entrypoints.streams import stream_item
from services.exchange.service_layer.ports import PushItem
from tests.unit.exchange.builders import EDUCATION, HEALTH, NOW, SENDER, header

# More recipients than a varint's one byte of length holds, in the header and in the whole.
RECIPIENTS = [f"{100 + n // 100:03d}.{n % 100:02d}.00.H98" for n in range(300)]


def item(document_uuid: str, requested_recipient: str) -> PushItem:
    return PushItem(
        delivery_id=str(uuid.uuid4()),
        document_uuid=document_uuid,
        requested_recipient=requested_recipient,
        header=dataclasses.replace(header(RECIPIENTS), sender=SENDER),
        attachments=(AttachmentRef("cong-van.pdf", "application/pdf", 10, "ab" * 32),),
        signatures=(
            Signature("organization", "Ed25519", b"s" * 64, (b"c" * 900, b"a" * 700), NOW),
        ),
        submitted_at=NOW,
        verification=None,
        envelope=None,
        first_handover=True,
        trace=(Hop("hub-b", NOW - dt.timedelta(seconds=1)),),
    )


def test_each_copy_reads_back_as_its_delivery_built_whole() -> None:
    protos = DeliveryProtos()
    document = str(uuid.uuid4())
    # The second and third copies take the document's part serialized for the first.
    copies = [item(document, HEALTH), item(document, EDUCATION), item(document, "")]
    for copy in copies:
        received = pb.ReceiveResponse.FromString(b"".join(protos.received(copy)))
        assert received == pb.ReceiveResponse(delivery=delivery_to_pb(copy))
        assert received.delivery.delivery_id == copy.delivery_id
        assert received.delivery.requested_recipient == copy.requested_recipient


def test_a_pushed_item_is_the_stream_response_that_carries_it() -> None:
    protos = DeliveryProtos()
    copy = item(str(uuid.uuid4()), HEALTH)
    pushed = pb.ReceiveStreamResponse.FromString(stream_item(protos.received(copy)))
    assert pushed == pb.ReceiveStreamResponse(
        item=pb.ReceiveResponse(delivery=delivery_to_pb(copy))
    )
    assert not pushed.acknowledged


def test_a_copy_leaves_its_document_part_unjoined_for_the_wire_to_join_once() -> None:
    """Each copy's parts end with its document's part, serialized once and not copied (the one
    join of the 49 KB is the one for the wire: Receive's, or stream_item's around it); a
    notice's item is its one serialized message."""
    protos = DeliveryProtos()
    document = str(uuid.uuid4())
    first, second = protos.received(item(document, HEALTH)), protos.received(item(document, ""))
    assert first[-1] is second[-1]
    assert len(first[-1]) > sum(len(part) for part in first[:-1])
    assert pb.ReceiveStreamResponse.FromString(stream_item(first)).item == (
        pb.ReceiveResponse.FromString(b"".join(first))
    )


def test_documents_do_not_mix() -> None:
    protos = DeliveryProtos()
    first, second = item(str(uuid.uuid4()), HEALTH), item(str(uuid.uuid4()), HEALTH)
    second = dataclasses.replace(second, header=header([HEALTH]))
    protos.received(first)
    received = pb.ReceiveResponse.FromString(b"".join(protos.received(second)))
    assert received.delivery == delivery_to_pb(second)
    # A copy filled (Fetch) after its document was serialized is still built whole.
    fetched = pb.Delivery()
    protos.fill(fetched, first)
    assert fetched == delivery_to_pb(first)
