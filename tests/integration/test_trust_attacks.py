"""The trust attack suite, against the running axis (mutual TLS, real Postgres and RabbitMQ).

Every attack is refused with its own status and ErrorInfo reason, and leaves nothing behind: no
document, delivery, outbox message or ledger event, and nothing on the recipient's stream. The
happy paths sign with Ed25519, P-256 and RSA keys; recipients verify the signatures themselves
and senders verify their transport receipts offline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import grpc
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docaxis_client.client import AgencyClient
from docaxis_client.documents import (
    manifest_of,
    sign_submission,
    signatures_from_pb,
    signatures_to_pb,
    verify_delivery,
    verify_transport_receipt,
)
from docaxis_client.receive import ReceiveStream
from docaxis_client.trust import DocumentSignatures, SignatureInvalidError, TransportReceipt
from docaxis_client.trust.demo_pki import DemoCA, IssuedCertificate, KeyType
from docaxis_client.trust.keys import SignatureAlgorithm, sign_bytes
from docaxis_client.trust.signatures import SignerRole, signed_payload
from services.common.grpc_errors import ErrorDetails, error_details
from tests.conftest import make_header
from tests.integration.test_exchange_flow import next_delivery, no_delivery
from tests.pki import SIGNER, SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.integration

Register = Callable[..., Awaitable[list[str]]]
Stream = ReceiveStream

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def refused(call: Awaitable[object]) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return error_details(failure.value)


@dataclass
class Scene:
    """A sender and a recipient (whose push stream is open), and the database to look into."""

    sender: str
    recipient: str
    client: AgencyClient
    inbox: Stream
    database: asyncpg.Connection

    async def nothing_stored_or_delivered(self) -> None:
        """The attack left no trace: nothing from the sender in any table the exchange writes,
        and nothing pushed to the recipient within a bounded wait."""
        counts = await self.database.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM exchange.document WHERE sender = $1) AS documents,
              (SELECT count(*) FROM exchange.delivery WHERE recipient = $2) AS deliveries,
              (SELECT count(*) FROM exchange.outbox WHERE routing_key = $2) AS outbox,
              (SELECT count(*) FROM ledger.pending WHERE from_agency = $1) AS staged
            """,
            self.sender,
            self.recipient,
        )
        assert counts is not None
        assert dict(counts) == {"documents": 0, "deliveries": 0, "outbox": 0, "staged": 0}
        await no_delivery(self.inbox, within=0.5)

    def header(self, **changes: str) -> common_pb2.DocumentHeader:
        header = make_header(self.sender, [self.recipient])
        for name, value in changes.items():
            setattr(header, name, value)
        return header


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def scene(
    register_agencies: Register, clients: dict[str, AgencyClient], database: asyncpg.Connection
) -> AsyncIterator[Scene]:
    sender, recipient = await register_agencies(2)
    inbox = clients[recipient].receive()
    yield Scene(sender, recipient, clients[sender], inbox, database)
    inbox.cancel()


def signed(
    header: common_pb2.DocumentHeader,
    attachments: list[common_pb2.AttachmentRef],
    *,
    person: IssuedCertificate,
    organization: IssuedCertificate,
    signed_at: dt.datetime | None = None,
) -> list[common_pb2.DocumentSignature]:
    return sign_submission(
        header,
        attachments,
        person=person.identity(),
        organization=organization.identity(),
        signed_at=signed_at,
    )


def forged(
    header: common_pb2.DocumentHeader,
    genuine: list[common_pb2.DocumentSignature],
    role: SignerRole,
) -> list[common_pb2.DocumentSignature]:
    """The genuine signatures, except that `role`'s is made with the attacker's own key while
    still presenting the genuine signer's certificate chain."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    pair = signatures_from_pb(genuine)
    victim = pair.person if role is SignerRole.PERSON else pair.organization
    payload = signed_payload(
        role=role,
        algorithm=SignatureAlgorithm.ECDSA_P256_SHA256,
        manifest_sha256=manifest_of(header, []).sha256_hex(),
        signed_at=victim.signed_at,
        signer_certificate=victim.certificates()[0],
        person_signature=pair.person.signature if role is SignerRole.ORGANIZATION else None,
    )
    fake = dataclasses.replace(
        victim,
        algorithm=SignatureAlgorithm.ECDSA_P256_SHA256,
        signature=sign_bytes(attacker, SignatureAlgorithm.ECDSA_P256_SHA256, payload),
    )
    if role is SignerRole.PERSON:
        return signatures_to_pb(DocumentSignatures(fake, pair.organization))
    return signatures_to_pb(DocumentSignatures(pair.person, fake))


# --- signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [SignerRole.ORGANIZATION, SignerRole.PERSON])
async def test_a_forged_signature_is_refused_and_nothing_is_stored(
    scene: Scene, pki: SuitePki, role: SignerRole
) -> None:
    """A signature not made with the certified key: FAILED_PRECONDITION / SIGNATURE_INVALID."""
    header = scene.header()
    credentials = pki.agency(scene.sender)
    genuine = signed(header, [], person=credentials.person, organization=credentials.agency)
    details = await refused(
        scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=forged(header, genuine, role))
    )
    assert (details.code, details.reason) == (FAILED_PRECONDITION, "SIGNATURE_INVALID")
    assert details.metadata["role"] == role.value
    await scene.nothing_stored_or_delivered()


async def test_a_manifest_that_does_not_match_an_attachment_is_refused(
    scene: Scene, pki: SuitePki
) -> None:
    """Signed over one attachment, submitted with another differing in one byte."""
    original = b"%PDF-1.7 quyet dinh so 42"
    tampered = original[:-1] + b"3"
    signed_ref = (await scene.client.upload_stream(original)).ref("qd.pdf", "application/pdf")
    sent_ref = (await scene.client.upload_stream(tampered)).ref("qd.pdf", "application/pdf")
    header = scene.header()
    credentials = pki.agency(scene.sender)
    signatures = signed(
        header, [signed_ref], person=credentials.person, organization=credentials.agency
    )
    details = await refused(
        scene.client.submit(f"c-{uuid.uuid4()}", header, [sent_ref], signatures=signatures)
    )
    assert (details.code, details.reason) == (FAILED_PRECONDITION, "SIGNATURE_INVALID")
    await scene.nothing_stored_or_delivered()


async def test_an_unsigned_document_is_refused(scene: Scene) -> None:
    """Signatures are required outside development mode."""
    details = await refused(scene.client.submit(f"c-{uuid.uuid4()}", scene.header(), signatures=[]))
    assert (details.code, details.reason) == (FAILED_PRECONDITION, "SIGNATURE_MISSING")
    await scene.nothing_stored_or_delivered()


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        pytest.param((-400, -30), "CERTIFICATE_EXPIRED", id="expired"),
        pytest.param((1, 365), "CERTIFICATE_NOT_YET_VALID", id="not-yet-valid"),
    ],
)
async def test_a_signature_by_a_certificate_outside_its_validity_is_refused(
    scene: Scene, pki: SuitePki, window: tuple[int, int], reason: str
) -> None:
    """The official's certificate was not valid when the document was signed."""
    now = dt.datetime.now(dt.UTC)
    person = pki.ca.issue_person(
        SIGNER,
        scene.sender,
        not_before=now + dt.timedelta(days=window[0]),
        not_after=now + dt.timedelta(days=window[1]),
    )
    header = scene.header()
    signatures = signed(
        header, [], person=person, organization=pki.agency(scene.sender).agency, signed_at=now
    )
    details = await refused(scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=signatures))
    assert (details.code, details.reason) == (FAILED_PRECONDITION, reason)
    assert details.metadata["serial"] == f"{person.certificate.serial_number:x}"
    await scene.nothing_stored_or_delivered()


async def test_signatures_by_certificates_of_an_untrusted_ca_are_refused(
    scene: Scene,
) -> None:
    """Certificates that look right (same identities) but chain to someone else's root."""
    rogue = DemoCA.create()  # even the same name
    header = scene.header()
    signatures = signed(
        header,
        [],
        person=rogue.issue_person(SIGNER, scene.sender),
        organization=rogue.issue_agency(scene.sender, "Giả mạo"),
    )
    details = await refused(scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=signatures))
    assert (details.code, details.reason) == (FAILED_PRECONDITION, "UNTRUSTED_ISSUER")
    await scene.nothing_stored_or_delivered()


async def test_another_agencys_organisation_signature_is_a_sender_mismatch(
    scene: Scene, pki: SuitePki, register_agencies: Register
) -> None:
    """The organisation signature's agency must be the sender and the mTLS identity."""
    (other,) = await register_agencies(1)
    header = scene.header()
    signatures = signed(
        header,
        [],
        person=pki.agency(scene.sender).person,
        organization=pki.agency(other).agency,
    )
    details = await refused(scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=signatures))
    assert (details.code, details.reason) == (PERMISSION_DENIED, "SENDER_MISMATCH")
    await scene.nothing_stored_or_delivered()


async def test_an_official_of_another_agency_is_a_signer_mismatch(
    scene: Scene, pki: SuitePki, register_agencies: Register
) -> None:
    (other,) = await register_agencies(1)
    header = scene.header()
    signatures = signed(
        header, [], person=pki.agency(other).person, organization=pki.agency(scene.sender).agency
    )
    details = await refused(scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=signatures))
    assert (details.code, details.reason) == (FAILED_PRECONDITION, "SIGNER_MISMATCH")
    await scene.nothing_stored_or_delivered()


# --- identities and authorisation ---------------------------------------------------------------


async def test_agency_a_submitting_as_agency_b_is_refused(
    scene: Scene, register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """A's certificate, B's name as sender (signed by A, the only keys A has)."""
    (attacker,) = await register_agencies(1)
    details = await refused(clients[attacker].submit(f"c-{uuid.uuid4()}", scene.header()))
    assert (details.code, details.reason) == (PERMISSION_DENIED, "SENDER_MISMATCH")
    await scene.nothing_stored_or_delivered()


async def test_agency_a_cannot_receive_acknowledge_track_or_get_receipts_of_bs_mail(
    scene: Scene, register_agencies: Register, clients: dict[str, AgencyClient]
) -> None:
    """B's mail reaches B's stream only; to A, B's delivery and document do not exist."""
    (outsider,) = await register_agencies(1)
    outsider_inbox = clients[outsider].receive()
    receipt = (await scene.client.submit(f"c-{uuid.uuid4()}", scene.header())).receipt
    delivery = await next_delivery(scene.inbox)
    assert delivery.document_uuid == receipt.document_uuid
    await no_delivery(outsider_inbox, within=0.5)
    outsider_inbox.cancel()

    ack = await refused(clients[outsider].acknowledge(delivery.delivery_id))
    assert (ack.code, ack.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    track = await refused(clients[outsider].track(receipt.document_uuid))
    assert (track.code, track.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    await clients[scene.recipient].acknowledge(delivery.delivery_id)
    transport = await refused(clients[outsider].transport_receipt(delivery.delivery_id))
    assert (transport.code, transport.reason) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
    state = await scene.client.track(receipt.document_uuid)
    assert [r.state for r in state.recipients] == [pb.DELIVERY_STATE_ACKNOWLEDGED]


async def test_a_monitoring_credential_may_read_health_but_not_submit(
    scene: Scene, pki: SuitePki, axis: str
) -> None:
    """PERMISSION_DENIED for Submit (and the directory), SERVING for health."""
    request = pb.SubmitRequest(
        consignment_id=f"c-{uuid.uuid4()}",
        header=scene.header(),
        signatures=scene.client.sign(scene.header(), []),
    )
    async with pki.channel(axis, pki.monitor_certificate) as channel:
        details = await refused(pb_grpc.ExchangeServiceStub(channel).Submit(request, timeout=10))
        assert (details.code, details.reason) == (PERMISSION_DENIED, "PERMISSION_DENIED")
        directory = await refused(
            dpb_grpc.DirectoryServiceStub(channel).GetAgency(
                dpb.GetAgencyRequest(code=scene.sender), timeout=10
            )
        )
        assert (directory.code, directory.reason) == (PERMISSION_DENIED, "PERMISSION_DENIED")
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    await scene.nothing_stored_or_delivered()


async def test_a_client_without_a_certificate_is_refused_at_the_handshake(
    scene: Scene, pki: SuitePki, axis: str
) -> None:
    """No client certificate: the TLS handshake fails, so no RPC runs (UNAVAILABLE)."""
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.bundle.read_bytes())
    async with grpc.aio.secure_channel(axis, credentials) as channel:
        details = await refused(
            pb_grpc.ExchangeServiceStub(channel).Submit(
                pb.SubmitRequest(consignment_id="c-anonymous", header=scene.header()), timeout=10
            )
        )
    assert details.code is grpc.StatusCode.UNAVAILABLE
    await scene.nothing_stored_or_delivered()


@pytest.mark.parametrize("problem", ["expired", "not-yet-valid", "untrusted-ca"])
async def test_a_client_certificate_the_anchors_reject_fails_the_handshake(
    scene: Scene, pki: SuitePki, axis: str, problem: str
) -> None:
    """An expired, not yet valid or foreign client certificate never gets to call an RPC."""
    now = dt.datetime.now(dt.UTC)
    if problem == "untrusted-ca":
        certificate = DemoCA.create().issue_agency(scene.sender, "Giả mạo")
    else:
        days = (-400, -30) if problem == "expired" else (1, 365)
        certificate = pki.ca.issue_agency(
            scene.sender,
            "Cơ quan",
            not_before=now + dt.timedelta(days=days[0]),
            not_after=now + dt.timedelta(days=days[1]),
        )
    async with AgencyClient.connect(axis, tls=pki.tls(certificate)) as client:
        details = await refused(client.submit(f"c-{uuid.uuid4()}", scene.header()))
    assert details.code is grpc.StatusCode.UNAVAILABLE
    await scene.nothing_stored_or_delivered()


async def test_a_certificate_revoked_at_runtime_stops_working_at_once(
    register_agencies: Register, pki: SuitePki, axis: str, database: asyncpg.Connection
) -> None:
    """Works before; after IngestCrl, the next call is UNAUTHENTICATED / CERTIFICATE_REVOKED,
    and an open push stream of the revoked agency ends with the same reason."""
    sender, recipient = await register_agencies(2)
    async with pki.client(axis, sender) as client, pki.client(axis, recipient) as dms:
        first = await client.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
        inbox = dms.receive()
        delivered = await next_delivery(inbox)
        assert delivered.document_uuid == first.receipt.document_uuid
        await dms.acknowledge(delivered.delivery_id)

        await _ingest(pki, axis, pki.revoke(pki.agency(sender).agency))
        details = await refused(
            client.submit(f"c-{uuid.uuid4()}", make_header(sender, [recipient]))
        )
        assert (details.code, details.reason) == (UNAUTHENTICATED, "CERTIFICATE_REVOKED")
        assert (
            details.metadata["serial"] == f"{pki.agency(sender).agency.certificate.serial_number:x}"
        )
        stored = await database.fetchval(
            "SELECT count(*) FROM exchange.document WHERE sender = $1", sender
        )
        assert stored == 1

        # The recipient's certificate, revoked while its streams are open and idle: both the
        # push stream and the acknowledging one end at once, without waiting for something to
        # push (issue 17, finding 8).
        async with dms.receive_stream() as acknowledging:
            await dms.track(first.receipt.document_uuid)  # the stream is open by now
            await _ingest(pki, axis, pki.revoke(pki.agency(recipient).agency))
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await next_delivery(inbox)
            assert error_details(ended.value).reason == "CERTIFICATE_REVOKED"
            with pytest.raises(grpc.aio.AioRpcError) as also_ended:
                async with asyncio.timeout(15):
                    await anext(aiter(acknowledging))
            assert error_details(also_ended.value).reason == "CERTIFICATE_REVOKED"


async def test_a_document_signed_by_a_revoked_official_is_refused(
    scene: Scene, pki: SuitePki, axis: str
) -> None:
    person = pki.ca.issue_person(SIGNER, scene.sender)
    await _ingest(pki, axis, pki.revoke(person))
    header = scene.header()
    signatures = signed(header, [], person=person, organization=pki.agency(scene.sender).agency)
    details = await refused(scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=signatures))
    assert (details.code, details.reason) == (FAILED_PRECONDITION, "CERTIFICATE_REVOKED")
    await scene.nothing_stored_or_delivered()


async def test_only_administrators_ingest_crls_and_only_crls_of_the_anchors(
    scene: Scene, pki: SuitePki, axis: str
) -> None:
    rogue = DemoCA.create()
    rogue_crl = rogue.crl("intermediate").public_bytes(serialization.Encoding.DER)
    details = await refused(_ingest(pki, axis, rogue_crl))
    assert (details.code, details.reason) == (FAILED_PRECONDITION, "CRL_INVALID")
    async with pki.channel(axis, pki.agency(scene.sender).agency) as channel:
        agency = await refused(
            dpb_grpc.DirectoryServiceStub(channel).IngestCrl(
                dpb.IngestCrlRequest(crl=rogue_crl), timeout=10
            )
        )
    assert (agency.code, agency.reason) == (PERMISSION_DENIED, "PERMISSION_DENIED")


async def test_a_replayed_submission_under_a_new_consignment_is_a_duplicate(
    scene: Scene,
) -> None:
    """The same signed request again, with only the consignment id changed."""
    header = scene.header()
    signatures = scene.client.sign(header, [])
    first = await scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=signatures)
    pushed = await next_delivery(scene.inbox)
    details = await refused(scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=signatures))
    assert (details.code, details.reason) == (grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE")
    assert details.metadata["document_uuid"] == first.receipt.document_uuid
    assert pushed.document_uuid == first.receipt.document_uuid
    await no_delivery(scene.inbox, within=0.5)
    stored = await scene.database.fetchval(
        "SELECT count(*) FROM exchange.document WHERE sender = $1", scene.sender
    )
    assert stored == 1


async def test_refusals_are_logged_as_security_events_without_content(
    scene: Scene, pki: SuitePki
) -> None:
    """`security_refused` with the caller's identity, the RPC and the reason."""
    header = scene.header(subject="Nội dung mật không được ghi vào nhật ký")
    # The services' own processor chain starts by merging the call's bound context.
    with structlog.testing.capture_logs([structlog.contextvars.merge_contextvars]) as logs:
        await refused(scene.client.submit(f"c-{uuid.uuid4()}", header, signatures=[]))
    events = [e for e in logs if e["event"] == "security_refused"]
    assert len(events) == 1
    event = events[0]
    assert event["reason"] == "SIGNATURE_MISSING"
    assert event["caller_agency"] == scene.sender
    assert (
        event["caller_serial"] == f"{pki.agency(scene.sender).agency.certificate.serial_number:x}"
    )
    assert event["rpc"].endswith("/Submit")
    assert "Nội dung" not in repr(logs)


# --- happy paths --------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.P256, KeyType.RSA2048])
async def test_signed_documents_travel_and_are_verified_by_both_ends(
    register_agencies: Register, pki: SuitePki, axis: str, key_type: KeyType
) -> None:
    """Official and agency sign with `key_type`; the recipient verifies both signatures with its
    own anchors; the sender fetches the hub's receipt and verifies it offline. (gRPC's TLS cannot
    use Ed25519: that agency authenticates with a P-256 certificate and signs with Ed25519.)"""
    sender, recipient = await register_agencies(2)
    tls_key = KeyType.P256 if key_type is KeyType.ED25519 else key_type
    tls_certificate = pki.ca.issue_agency(sender, "Cơ quan gửi", key_type=tls_key)
    organization = (
        tls_certificate
        if key_type is not KeyType.ED25519
        else pki.ca.issue_agency(sender, "Cơ quan gửi", key_type=key_type)
    )
    person = pki.ca.issue_person(SIGNER, sender, key_type=key_type)
    # Agencies' RSA tokens sign PKCS#1 v1.5; the official's RSA key signs PSS.
    org_algorithm = SignatureAlgorithm.RSA_PKCS1V15_SHA256 if key_type is KeyType.RSA2048 else None
    trust = pki.trust()
    async with (
        AgencyClient.connect(
            axis,
            tls=pki.tls(tls_certificate),
            person=person.identity(),
            organization=organization.identity(org_algorithm),
        ) as client,
        pki.client(axis, recipient) as dms,
    ):
        inbox = dms.receive()
        upload = await client.upload_stream(b"%PDF-1.7 van ban ky so " + key_type.value.encode())
        refs = [upload.ref("văn bản.pdf", "application/pdf")]
        header = make_header(sender, [recipient])
        receipt = (await client.submit(f"c-{uuid.uuid4()}", header, refs)).receipt
        route = receipt.routes[0]
        not_yet = await refused(client.transport_receipt(route.delivery_id))
        assert (not_yet.code, not_yet.reason) == (FAILED_PRECONDITION, "NOT_ACKNOWLEDGED")

        delivery = await next_delivery(inbox)
        signers = verify_delivery(delivery, trust)
        assert signers.sender == sender
        assert signers.person.full_name == SIGNER
        assert signers.person.serial == person.certificate.serial_number
        assert signers.organization.serial == organization.certificate.serial_number
        await dms.acknowledge(delivery.delivery_id)
        inbox.cancel()

        transport = await client.transport_receipt(route.delivery_id)
        hub = verify_transport_receipt(
            transport,
            trust,
            manifest_sha256=client.manifest_sha256(header, refs),
            recipient=recipient,
            document_uuid=receipt.document_uuid,
        )
        hub_certificate = x509.load_pem_x509_certificate(pki.hub.certificate.read_bytes())
        assert hub.serial_number == hub_certificate.serial_number
        assert transport.document_id == receipt.document_id
        # The same receipt, byte for byte, for the recipient and on every later request.
        assert (await dms.transport_receipt(route.delivery_id)).to_json() == transport.to_json()
        assert (await client.transport_receipt(route.delivery_id)) == transport

        # Offline checks catch a receipt that was edited, or that attests something else.
        edited = TransportReceipt.from_json(transport.to_json().replace(recipient.encode(), b"0"))
        with pytest.raises(SignatureInvalidError):
            verify_transport_receipt(edited, trust, manifest_sha256=signers.manifest_sha256)
        with pytest.raises(SignatureInvalidError):
            verify_transport_receipt(transport, trust, manifest_sha256="0" * 64)


async def test_the_ledger_records_each_verified_signature_without_names(
    scene: Scene, pki: SuitePki
) -> None:
    """One `verification` entry per signature, naming certificates by serial, never people."""
    receipt = (await scene.client.submit(f"c-{uuid.uuid4()}", scene.header())).receipt
    # The running sequencer moves staged events into the log at any moment: read the log.
    bodies = await eventually(
        lambda: scene.database.fetch(
            "SELECT body FROM ledger.entry "
            "WHERE doc_id = $1 AND entry_type = 'verification' ORDER BY seq",
            uuid.UUID(receipt.document_uuid),
        ),
        lambda rows: len(rows) == 2,
    )
    data = [json.dumps(json.loads(row["body"])["data"]) for row in bodies]
    credentials = pki.agency(scene.sender)
    assert f'"serial": "{credentials.person.certificate.serial_number:x}"' in data[0]
    assert f'"serial": "{credentials.agency.certificate.serial_number:x}"' in data[1]
    assert SIGNER not in "".join(data)


async def _ingest(pki: SuitePki, axis: str, crl: bytes) -> dpb.IngestCrlResponse:
    async with pki.channel(axis, pki.admin_certificate) as channel:
        response: dpb.IngestCrlResponse = await dpb_grpc.DirectoryServiceStub(channel).IngestCrl(
            dpb.IngestCrlRequest(crl=crl), timeout=10
        )
    return response
