"""Issue 17, findings 1 and 2, through the gateway: a recipient whose copy was withdrawn before it
acknowledged it reads nothing of it on the REST and national-axis paths, and cannot acknowledge
it (so the hub signs no receipt for it)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from docaxis_client.client import AgencyClient
from services.common.grpc_errors import error_details
from tests.conftest import make_header
from tests.integration.gateway.conftest import RunningGateway

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("crash_free_log")]

Register = Callable[..., Awaitable[list[str]]]


async def test_a_withdrawn_copy_is_invisible_and_unacknowledgeable_over_http(
    gateway: RunningGateway, register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    sender, legacy, modern = await register_agencies(3)
    upload = await clients[sender].upload_stream(b"%PDF-1.7 recalled " * 50)
    receipt = (
        await clients[sender].submit(
            f"c-{uuid.uuid4()}",
            make_header(sender, [legacy, modern]),
            [upload.ref("cong-van.pdf", "application/pdf")],
        )
    ).receipt
    document_uuid = receipt.document_uuid
    copies = {r.effective_recipient: r.delivery_id for r in receipt.routes}
    attachment_url = f"/v1/documents/{document_uuid}/attachments/{upload.sha256}"
    async with (
        gateway.client(gateway.agency_pair(legacy)) as axis_dms,
        gateway.client(gateway.agency_pair(modern)) as rest_dms,
    ):
        # Both DMSs take their copy (so they know its ids) and store it...
        listed = (await axis_dms.get("/axis/getReceivedEdocList")).json()["data"]
        (mine,) = [i for i in listed if i["documentUuid"] == document_uuid]
        fetched = (await axis_dms.get("/axis/getEdoc", params={"docId": mine["docId"]})).json()
        assert fetched["status"] == "OK", fetched
        fetched = await rest_dms.get(f"/v1/inbox/deliveries/{copies[modern]}")
        assert fetched.status_code == 200, fetched.text
        assert (await rest_dms.get(attachment_url)).status_code == 200
        # ... but the sender recalls the document before either acknowledges it.
        await clients[sender].recall(document_uuid, "Gửi nhầm")

        # The attack of finding 2: acknowledging it anyway, on both APIs.
        done = (
            await axis_dms.post(
                "/axis/updateStatus", data={"docId": mine["docId"], "status": "done"}
            )
        ).json()
        assert (done["status"], done["reason"]) == ("FAIL", "COPY_WITHDRAWN"), done
        acknowledged = await rest_dms.post(
            f"/v1/inbox/deliveries/{copies[modern]}/acknowledge", json={}
        )
        assert acknowledged.status_code == 422, acknowledged.text
        assert acknowledged.json()["reason"] == "COPY_WITHDRAWN"

        # The attack of finding 1: reading it anyway, on every path.
        for http in (axis_dms, rest_dms):
            for path in (f"/v1/documents/{document_uuid}", attachment_url):
                response = await http.get(path)
                assert response.status_code == 404, (path, response.text)
                assert response.json()["reason"] == "NOT_FOUND"
            sent: dict[str, Any] = (
                await http.get("/axis/getSentEdocList", params={"docId": document_uuid})
            ).json()
            assert (sent["status"], sent["reason"]) == ("FAIL", "NOT_FOUND"), sent
        again = (await axis_dms.get("/axis/getEdoc", params={"docId": mine["docId"]})).json()
        assert (again["status"], again["reason"]) == ("FAIL", "NOT_FOUND"), again
        receipt_response = await rest_dms.get(f"/v1/deliveries/{copies[modern]}/receipt")
        assert receipt_response.status_code == 404, receipt_response.text

    # No receipt was signed: the sender cannot get one either.
    for delivery_id in copies.values():
        with pytest.raises(grpc.aio.AioRpcError) as no_receipt:
            await clients[sender].transport_receipt(delivery_id)
        assert error_details(no_receipt.value).reason == "NOT_FOUND"
