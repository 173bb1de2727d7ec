"""Issue 17, findings 5 and 6, over gRPC with mutual TLS: control characters in any text field
and hostile attachment names or media types are refused at the edge with VALIDATION and the
field named (never UNKNOWN with a database message), and nothing is stored."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client.client import AgencyClient
from services.common.grpc_errors import ErrorDetails, error_details
from tests.conftest import Register, make_header

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crash_free_log")]


async def _refused(client: AgencyClient, request: pb.SubmitRequest) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await client.exchange.Submit(request, metadata=client.metadata, timeout=30)
    return error_details(failure.value)


async def test_control_characters_in_text_are_refused_with_the_field_named(
    register_agencies: Register, clients: dict[str, AgencyClient], database_url: str
) -> None:
    sender, recipient = await register_agencies(2)
    client = clients[sender]
    upload = await client.upload_stream(b"%PDF-1.7 noi dung")
    header = make_header(sender, [recipient], subject="Về việc\x00 thử")
    header.to_places.append("Lưu: VT\x1b[31m")
    header.content = "Đoạn một.\n\tĐoạn hai.\r\n"  # line breaks and tabs are text
    request = pb.SubmitRequest(
        consignment_id=f"c-{uuid.uuid4()}",
        header=header,
        attachments=[upload.ref("van\x00ban.pdf", "application/pdf")],
    )
    details = await _refused(client, request)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    assert {v.field: v.description for v in details.violations} == {
        "header.subject": "contains the control character U+0000",
        "header.to_places[0]": "contains the control character U+001B",
        "attachments[0].name": "contains the control character U+0000",
    }
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM exchange.document WHERE sender = $1", sender
        )
    finally:
        await conn.close()
    assert stored == 0

    # The same on the other RPCs that take text: a recall's reason, a status's description.
    sent = await client.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
    with pytest.raises(grpc.aio.AioRpcError) as recall:
        await client.recall(sent.receipt.document_uuid, "Thu hồi\x00")
    assert [v.field for v in error_details(recall.value).violations] == ["reason"]
    with pytest.raises(grpc.aio.AioRpcError) as status:
        await clients[recipient].report_status(
            sent.receipt.routes[0].delivery_id,
            pb.STATUS_CODE_ACCEPTED,
            status_id="s-1",
            description="Đã nhận\x07",
        )
    details = error_details(status.value)
    assert (details.reason, [v.field for v in details.violations]) == (
        "VALIDATION",
        ["description"],
    )


@pytest.mark.parametrize(
    ("name", "media_type", "field", "why"),
    [
        ("../../etc/passwd", "application/pdf", "name", "path separators"),
        ("..\\windows\\win.ini", "application/pdf", "name", "path separators"),
        ("cong-van\r\nX-Injected: 1.pdf", "application/pdf", "name", "U+000D"),
        ("x" * 1_000_000 + ".pdf", "application/pdf", "name", "at most 255 characters"),
        ("..", "application/pdf", "name", "not only dots"),
        ("cong-van.pdf", "application/" + "x" * 1_000_000, "media_type", "RFC 6838"),
        ("cong-van.pdf", "text/html\r\nX: 1", "media_type", "RFC 6838"),
        ("cong-van.pdf", "pdf", "media_type", "RFC 6838"),
    ],
)
async def test_hostile_attachment_names_and_media_types_are_refused(
    register_agencies: Register,
    clients: dict[str, AgencyClient],
    name: str,
    media_type: str,
    field: str,
    why: str,
) -> None:
    sender, recipient = await register_agencies(2)
    client = clients[sender]
    upload = await client.upload_stream(b"%PDF-1.7 noi dung")
    attachment = common_pb2.AttachmentRef(
        name=name, media_type=media_type, size=upload.size, sha256=upload.sha256
    )
    request = pb.SubmitRequest(
        consignment_id=f"c-{uuid.uuid4()}",
        header=make_header(sender, [recipient]),
        attachments=[attachment],
    )
    details = await _refused(client, request)
    assert (details.code, details.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION")
    (violation,) = details.violations
    assert violation.field == f"attachments[0].{field}"
    assert why in violation.description
    assert len(violation.description) < 200  # the hostile value is not echoed whole
