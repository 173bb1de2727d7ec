"""Delegation, the services' side: the gateway's own certificate plus `x-docaxis-on-behalf-of`
acts as that agency, under the usual per-agency rules; the header from anyone else is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from docaxis.exchange.v1 import exchange_service_pb2_grpc as pb_grpc

from docaxis_client.client import open_channel
from docaxis_client.credentials import TlsCredentials
from docaxis_client.delegation import ADMINISTRATOR, ON_BEHALF_HEADER, on_behalf_metadata
from docaxis_client.documents import sign_submission
from services.common.grpc_errors import error_details
from tests.conftest import make_header
from tests.pki import SuitePki

pytestmark = pytest.mark.integration

Register = Callable[..., Awaitable[list[str]]]


def _on_behalf(code: str, pki: SuitePki | None = None) -> Sequence[tuple[str, str | bytes]]:
    """The gateway's metadata for `code`, with that agency's certificate when `pki` has one."""
    if pki is None:
        return ((ON_BEHALF_HEADER, code),)
    certificate = pki.agency(code).agency.certificate
    return on_behalf_metadata(code, certificate.public_bytes(serialization.Encoding.DER))


async def _list_pending(
    address: str, tls: TlsCredentials, metadata: Sequence[tuple[str, str | bytes]]
) -> pb.ListPendingResponse:
    async with open_channel(address, tls) as channel:
        stub = pb_grpc.ExchangeServiceStub(channel)
        return await stub.ListPending(pb.ListPendingRequest(), metadata=metadata, timeout=10)


async def _refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    details = error_details(failure.value)
    return details.code, details.reason


async def test_the_gateway_acts_for_the_agency_it_names(
    axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    sender, recipient = await register_agencies(2)
    credentials = pki.agency(sender)
    header = make_header(sender, [recipient])
    signatures = sign_submission(
        header,
        [],
        person=credentials.person.identity(),
        organization=credentials.agency.identity(),
    )
    async with open_channel(axis, pki.gateway) as channel:
        stub = pb_grpc.ExchangeServiceStub(channel)
        response = await stub.Submit(
            pb.SubmitRequest(
                consignment_id=str(uuid.uuid4()), header=header, signatures=signatures
            ),
            metadata=_on_behalf(sender, pki),
            timeout=30,
        )
        assert [route.effective_recipient for route in response.receipt.routes] == [recipient]
        tracked = await stub.Track(
            pb.TrackRequest(document_uuid=response.receipt.document_uuid),
            metadata=_on_behalf(sender, pki),
            timeout=10,
        )
        assert tracked.header.sender == sender
        # The per-agency rules hold for the delegated agency: it submits only as itself ...
        code, reason = await _refusal(
            stub.Submit(
                pb.SubmitRequest(
                    consignment_id=str(uuid.uuid4()), header=header, signatures=signatures
                ),
                metadata=_on_behalf(recipient, pki),
                timeout=30,
            )
        )
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SENDER_MISMATCH")
    # ... and the recipient, through the gateway, sees what it was sent.
    pending = await _list_pending(axis, pki.gateway, _on_behalf(recipient, pki))
    assert any(item.document_uuid == response.receipt.document_uuid for item in pending.items)


async def test_the_on_behalf_header_from_anyone_but_the_gateway_is_refused(
    axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    (agency,) = await register_agencies(1)
    other = (await register_agencies(1))[0]
    agency_tls = pki.tls(pki.agency(agency).agency)
    for tls, code in (
        (agency_tls, other),  # an agency trying to act as another
        (agency_tls, agency),  # even naming itself: the header is the gateway's alone
        (pki.admin, agency),
        (pki.monitor, agency),
    ):
        refused = await _refusal(_list_pending(axis, tls, _on_behalf(code, pki)))
        assert refused == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    # Without the header, the agency is itself as before.
    assert (await _list_pending(axis, agency_tls, ())).items is not None


async def test_the_gateway_must_name_a_registered_open_agency(
    axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    (closed,) = await register_agencies(1, valid_to="2020-01-01")
    (agency, other) = await register_agencies(2)
    unregistered = "999.99.99.H99"
    pki.agency(unregistered)
    denied, unauthenticated = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED
    for metadata, expected in (
        ((), (denied, "PERMISSION_DENIED")),  # the gateway acts for nobody by itself
        (_on_behalf("not a code"), (denied, "PERMISSION_DENIED")),
        (_on_behalf(unregistered, pki), (denied, "NOT_REGISTERED")),
        (_on_behalf(closed, pki), (denied, "NOT_REGISTERED")),
        # The agency's own certificate must come along, and be that agency's.
        (_on_behalf(agency), (unauthenticated, "UNAUTHENTICATED")),
        (
            ((ON_BEHALF_HEADER, agency), *_on_behalf(other, pki)[1:]),
            (denied, "PERMISSION_DENIED"),
        ),
    ):
        refused = await _refusal(_list_pending(axis, pki.gateway, metadata))
        assert refused == expected, metadata


async def test_a_revoked_agency_certificate_stops_working_through_the_gateway_at_once(
    axis: str, pki: SuitePki, register_agencies: Register
) -> None:
    """A CRL ingested at runtime reaches the services, not the gateway: the services validate
    the forwarded agency certificate themselves."""
    (agency,) = await register_agencies(1)
    await _list_pending(axis, pki.gateway, _on_behalf(agency, pki))
    crl = pki.revoke(pki.agency(agency).agency)
    async with open_channel(axis, pki.admin) as channel:
        await dpb_grpc.DirectoryServiceStub(channel).IngestCrl(
            dpb.IngestCrlRequest(crl=crl), timeout=10
        )
    refused = await _refusal(_list_pending(axis, pki.gateway, _on_behalf(agency, pki)))
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_REVOKED")


async def test_the_console_reads_as_an_administrator_but_may_not_change_the_directory(
    axis: str, pki: SuitePki
) -> None:
    """The gateway acting for an administrator (the admin console) may list agencies, but
    registering one needs the administrator's own certificate."""
    admin = pki.admin_certificate.certificate.public_bytes(serialization.Encoding.DER)
    metadata = on_behalf_metadata(ADMINISTRATOR, admin)
    async with open_channel(axis, pki.gateway) as channel:
        stub = dpb_grpc.DirectoryServiceStub(channel)
        listed = await stub.ListAgencies(
            dpb.ListAgenciesRequest(page_size=1), metadata=metadata, timeout=10
        )
        assert len(listed.agencies) <= 1
        code, _ = await _refusal(
            stub.RegisterAgency(
                dpb.RegisterAgencyRequest(
                    agency=dpb.Agency(
                        code="000.00.77.H45",
                        name="Không được đăng ký",
                        kind=dpb.AGENCY_KIND_DEPARTMENT,
                        valid_from="2019-01-01",
                    )
                ),
                metadata=metadata,
                timeout=10,
            )
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED
    async with open_channel(axis, pki.admin) as channel:
        unknown = await dpb_grpc.DirectoryServiceStub(channel).BatchGetAgencies(
            dpb.BatchGetAgenciesRequest(codes=["000.00.77.H45"]), timeout=10
        )
        assert list(unknown.unknown_codes) == ["000.00.77.H45"]
