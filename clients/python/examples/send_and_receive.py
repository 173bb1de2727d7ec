"""Send a signed document from one agency to another and receive it, with docaxis-client only.

    python send_and_receive.py --address HOST:PORT --ca bundle.pem \
        --sender-cert a.pem --sender-key a.key --official-cert o.pem --official-key o.key \
        --recipient-cert b.pem --recipient-key b.key

The walkthrough of the README in one run: connect both DMSs, check health, subscribe the
recipient's stream, upload and submit (signed; the official's name taken from the
certificate), receive, verify, download and acknowledge, see status 01 arrive at the sender,
check the transport receipt offline, and meet a typed refusal. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import uuid
from pathlib import Path

from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from docaxis_client import AgencyClient, TlsCredentials, verify_delivery, verify_transport_receipt
from docaxis_client.errors import NotFoundError
from docaxis_client.receive import ReceiveStream
from docaxis_client.trust import SigningIdentity

STEP_TIMEOUT_S = 30


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", type=Path, required=True, help="trust-anchor bundle (PEM)")
    for who in ("sender", "official", "recipient"):
        parser.add_argument(f"--{who}-cert", type=Path, required=True)
        parser.add_argument(f"--{who}-key", type=Path, required=True)
    return parser.parse_args()


def identity(cert: Path, key: Path) -> SigningIdentity:
    return SigningIdentity.from_pem(cert.read_bytes(), key.read_bytes())


async def next_item(stream: ReceiveStream, kind: str) -> pb.ReceiveResponse:
    """The next pushed item of `kind` ("delivery", "status" or "recall")."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        while True:
            item = await stream.read()
            if item.WhichOneof("item") == kind:
                return item


def document_header(sender: str, recipient: str) -> common_pb2.DocumentHeader:
    return common_pb2.DocumentHeader(
        sender=sender,
        recipients=[recipient],
        code=common_pb2.DocumentCode(number=str(uuid.uuid4().int % 10**9), notation="UBND-VP"),
        promulgation_place="Quảng Ninh",
        promulgation_date=dt.datetime.now(dt.timezone(dt.timedelta(hours=7))).date().isoformat(),
        document_type=1,
        type_name="Công văn",
        subject="Thử nghiệm docaxis-client",
        # No full_name: submit takes it from the official's certificate.
        signer=common_pb2.Signer(competence="TL. CHỦ TỊCH", position="Chánh Văn phòng"),
        priority=common_pb2.PRIORITY_NORMAL,
        business_type=common_pb2.BUSINESS_TYPE_NEW,
    )


async def run(args: argparse.Namespace) -> dict[str, object]:
    sender_tls = TlsCredentials.from_files(ca=args.ca, cert=args.sender_cert, key=args.sender_key)
    recipient_tls = TlsCredentials.from_files(
        ca=args.ca, cert=args.recipient_cert, key=args.recipient_key
    )
    trust = recipient_tls.trust_store()
    sender = AgencyClient.connect(
        args.address,
        tls=sender_tls,
        person=identity(args.official_cert, args.official_key),
        organization=identity(args.sender_cert, args.sender_key),
    )
    recipient = AgencyClient.connect(args.address, tls=recipient_tls)
    async with sender, recipient:
        health = await sender.health()
        inbox, outbox = recipient.receive(), sender.receive()
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await inbox.subscribed()
            await outbox.subscribed()

        body = b"%PDF-1.7\n" + b"docaxis-client e2e\n" * 64
        upload = await sender.upload_stream(body)
        assert recipient.agency_code is not None
        header = document_header(sender.agency_code, recipient.agency_code)
        attachments = [upload.ref("thu-nghiem.pdf", "application/pdf")]
        response = await sender.submit(str(uuid.uuid4()), header, attachments)

        delivery = (await next_item(inbox, "delivery")).delivery
        signers = verify_delivery(delivery, trust)
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / delivery.attachments[0].name
            digest = await recipient.download(
                delivery.document_uuid, delivery.attachments[0].sha256, target
            )
        await recipient.acknowledge(delivery.delivery_id)

        status = (await next_item(outbox, "status")).status
        await sender.acknowledge_notice(status.notice_id)
        receipt = await sender.transport_receipt(delivery.delivery_id)
        verify_transport_receipt(
            receipt,
            sender_tls.trust_store(),
            manifest_sha256=sender.manifest_sha256(header, attachments),
            recipient=recipient.agency_code,
        )
        try:
            await sender.track(str(uuid.uuid4()))
            refusal = ""
        except NotFoundError as refused:
            refusal = f"{type(refused).__name__}:{refused.reason}"
        inbox.cancel()
        outbox.cancel()
    return {
        "health": health,
        "document_uuid": response.receipt.document_uuid,
        "delivered_document_uuid": delivery.document_uuid,
        "signer": signers.person.full_name,
        "attachment_verified": digest == upload.sha256,
        "status_code": pb.StatusCode.Name(status.status.code),
        "receipt_recipient": receipt.recipient,
        "refusal": refusal,
    }


def main() -> int:
    summary = asyncio.run(run(arguments()))
    print(json.dumps(summary, ensure_ascii=False))  # noqa: T201 - the example reports
    return 0


if __name__ == "__main__":
    sys.exit(main())
