"""Domain errors on the wire: status codes and rich details through a real grpc.aio server."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import pytest
from docaxis.common.v1 import common_pb2
from docaxis.directory.v1 import directory_service_pb2 as pb
from docaxis.directory.v1 import directory_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health

from docaxis_client import errors
from services.common.errors import (
    ConflictError,
    DomainError,
    FieldViolation,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    RejectedError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)
from services.common.grpc_errors import ERROR_DOMAIN, ErrorDetails, domain_errors, error_details
from services.common.grpc_server import build_server
from services.common.identity import HeaderCallerResolver, Role, agency_metadata, role_metadata
from services.directory.domain.model import Agency, AgencyKind
from services.directory.entrypoints.grpc_api import SERVICE_NAME, DirectoryServicer
from services.directory.service_layer.handlers import DirectoryHandlers
from services.exchange.domain.quota import UploadQuotaExceededError
from services.exchange.service_layer.handlers import SizeLimitError
from tests.fakes import FakeAgencies

PROVINCE = Agency(
    code="000.00.00.H45",
    name="UBND tỉnh Quảng Ninh",
    kind=AgencyKind.PROVINCE,
    valid_from=dt.date(2019, 3, 12),
)
ADMIN = role_metadata(Role.ADMIN)
AN_AGENCY = agency_metadata(PROVINCE.code)

# A tiny service whose one method raises whatever the request names.
RAISER = "docaxis.test.v1.Raiser"
RAISE = f"/{RAISER}/Raise"
ERRORS: dict[str, Exception] = {
    "validation": ValidationError(
        "invalid thing", [FieldViolation("a", "too long"), FieldViolation("b.c[0]", "required")]
    ),
    "size": SizeLimitError("too big", [FieldViolation("size", "at most 1 byte")]),
    "not-found": NotFoundError("no such thing", meta={"code": "X1"}),
    "conflict": ConflictError("taken", meta={"document_uuid": "u-1"}),
    "rejected": RejectedError("sender closed", reason="NOT_REGISTERED"),
    "unauthenticated": UnauthenticatedError("who are you"),
    "denied": PermissionDeniedError("not yours"),
    "unavailable": UnavailableError("database down", retry_after_s=2.5),
    "rate-limited": LimitExceededError(
        "too fast", reason="RATE_LIMITED", limit="submit", retry_after_s=0.25
    ),
    "streams": LimitExceededError(
        "too many streams", reason="CONCURRENCY_LIMITED", limit="receive_streams", retry_after_s=5
    ),
    "upload-quota": UploadQuotaExceededError("uploads full", meta={"quota_bytes": "10"}),
    "bare": DomainError("something expected"),
    "bug": RuntimeError("a bug"),
}


async def raise_named(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    async with domain_errors(context):
        raise ERRORS[request.decode()]


def add_raiser(server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                RAISER, {"Raise": grpc.unary_unary_rpc_method_handler(raise_named)}
            ),
        )
    )


def raise_over(channel: grpc.aio.Channel, name: str) -> Awaitable[bytes]:
    """Calls the raiser, asking for the error called `name`."""
    method = channel.unary_unary(RAISE, request_serializer=bytes, response_deserializer=bytes)
    return method(name.encode())


@pytest.fixture
def agencies() -> FakeAgencies:
    return FakeAgencies([PROVINCE])


@pytest.fixture
async def channel(agencies: FakeAgencies) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a real server on a free loopback port: the directory and the raiser."""
    servicer = DirectoryServicer(DirectoryHandlers(agencies), HeaderCallerResolver())
    server, port = build_server(
        "127.0.0.1:0",
        [lambda s: pb_grpc.add_DirectoryServiceServicer_to_server(servicer, s), add_raiser],
        [SERVICE_NAME],
        health.aio.HealthServicer(),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    await server.stop(None)


@pytest.fixture
def directory(channel: grpc.aio.Channel) -> pb_grpc.DirectoryServiceAsyncStub:
    return pb_grpc.DirectoryServiceStub(channel)


async def failure_of(call: Awaitable[object]) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    return error_details(failure.value)


def an_agency(**changes: Any) -> pb.Agency:
    fields: dict[str, Any] = {
        "code": "000.00.13.H45",
        "name": "Sở Y tế tỉnh Quảng Ninh",
        "kind": pb.AGENCY_KIND_DEPARTMENT,
        "parent_code": PROVINCE.code,
        "valid_from": "2019-03-12",
    }
    return pb.Agency(**(fields | changes))


# --- the category table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "reason"),
    [
        ("validation", grpc.StatusCode.INVALID_ARGUMENT, "VALIDATION"),
        ("size", grpc.StatusCode.INVALID_ARGUMENT, "SIZE_LIMIT_EXCEEDED"),
        ("not-found", grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
        ("conflict", grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE"),
        ("rejected", grpc.StatusCode.FAILED_PRECONDITION, "NOT_REGISTERED"),
        ("unauthenticated", grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        ("denied", grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE"),
        ("rate-limited", grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
        ("streams", grpc.StatusCode.RESOURCE_EXHAUSTED, "CONCURRENCY_LIMITED"),
        ("upload-quota", grpc.StatusCode.RESOURCE_EXHAUSTED, "UPLOAD_QUOTA_EXCEEDED"),
        ("bare", grpc.StatusCode.FAILED_PRECONDITION, "UNSPECIFIED"),
    ],
)
async def test_each_error_category_has_its_status_code_and_stable_reason(
    channel: grpc.aio.Channel, name: str, code: grpc.StatusCode, reason: str
) -> None:
    """The status code follows the category; ErrorInfo carries the reason and the message."""
    details = await failure_of(raise_over(channel, name))
    assert details.code is code
    assert details.reason == reason
    assert details.message == str(ERRORS[name])


async def test_error_metadata_travels_with_a_retryable_flag(channel: grpc.aio.Channel) -> None:
    """ErrorInfo metadata is the error's meta plus retryable=false for a final answer."""
    details = await failure_of(raise_over(channel, "conflict"))
    assert details.metadata == {"document_uuid": "u-1", "retryable": "false"}
    assert details.retry_after_s is None


async def test_an_unavailable_error_says_when_to_retry(channel: grpc.aio.Channel) -> None:
    """RetryInfo carries the delay and the metadata says retryable=true."""
    details = await failure_of(raise_over(channel, "unavailable"))
    assert details.retry_after_s == 2.5
    assert details.metadata == {"retryable": "true"}


async def test_a_validation_error_lists_every_violation_in_a_bad_request(
    channel: grpc.aio.Channel,
) -> None:
    """BadRequest field violations keep their order, fields and descriptions."""
    details = await failure_of(raise_over(channel, "validation"))
    assert details.violations == (
        FieldViolation("a", "too long"),
        FieldViolation("b.c[0]", "required"),
    )


async def test_an_error_that_is_not_a_domain_error_is_unknown_with_no_details(
    channel: grpc.aio.Channel,
) -> None:
    """A bug is not dressed up as a domain answer: UNKNOWN, no reason, no violations."""
    details = await failure_of(raise_over(channel, "bug"))
    assert details.code is grpc.StatusCode.UNKNOWN
    assert (details.reason, details.violations) == ("", ())


# --- what the client library raises -------------------------------------------------------------


async def client_error_of(call: Awaitable[object]) -> errors.DocaxisError:
    with pytest.raises(grpc.aio.AioRpcError) as failure, errors.decoded_errors():
        await call
    assert isinstance(failure.value, errors.DocaxisError)
    return failure.value


@pytest.mark.parametrize(
    ("name", "kind", "reason_code"),
    [
        ("validation", errors.InvalidArgumentError, common_pb2.ERROR_REASON_VALIDATION),
        ("size", errors.InvalidArgumentError, common_pb2.ERROR_REASON_SIZE_LIMIT_EXCEEDED),
        ("not-found", errors.NotFoundError, common_pb2.ERROR_REASON_NOT_FOUND),
        ("conflict", errors.AlreadyExistsError, common_pb2.ERROR_REASON_DUPLICATE),
        ("rejected", errors.FailedPreconditionError, common_pb2.ERROR_REASON_NOT_REGISTERED),
        ("unauthenticated", errors.UnauthenticatedError, common_pb2.ERROR_REASON_UNAUTHENTICATED),
        ("denied", errors.PermissionDeniedError, common_pb2.ERROR_REASON_PERMISSION_DENIED),
        ("unavailable", errors.UnavailableError, common_pb2.ERROR_REASON_UNAVAILABLE),
        ("rate-limited", errors.ResourceExhaustedError, common_pb2.ERROR_REASON_RATE_LIMITED),
        ("streams", errors.ResourceExhaustedError, common_pb2.ERROR_REASON_CONCURRENCY_LIMITED),
        (
            "upload-quota",
            errors.ResourceExhaustedError,
            common_pb2.ERROR_REASON_UPLOAD_QUOTA_EXCEEDED,
        ),
        ("bare", errors.FailedPreconditionError, common_pb2.ERROR_REASON_UNSPECIFIED),
        ("bug", errors.DocaxisError, common_pb2.ERROR_REASON_UNSPECIFIED),
    ],
)
async def test_the_client_raises_a_typed_error_with_the_reason_enum(
    channel: grpc.aio.Channel,
    name: str,
    kind: type[errors.DocaxisError],
    reason_code: common_pb2.ErrorReason.ValueType,
) -> None:
    """One exception class per status code, the ErrorInfo reason as common.proto's enum."""
    refused = await client_error_of(raise_over(channel, name))
    assert type(refused) is kind
    assert refused.reason_code == reason_code
    assert str(ERRORS[name]) in (refused.details() or "")


async def test_the_client_error_carries_violations_and_is_final(
    channel: grpc.aio.Channel,
) -> None:
    """A validation refusal names every bad field and is not worth retrying."""
    refused = await client_error_of(raise_over(channel, "validation"))
    assert [(v.field, v.description) for v in refused.violations] == [
        ("a", "too long"),
        ("b.c[0]", "required"),
    ]
    assert (refused.retryable, refused.retry_delay_s) == (False, None)
    assert str(refused) == "INVALID_ARGUMENT VALIDATION: invalid thing"


async def test_the_client_error_says_when_to_retry(channel: grpc.aio.Channel) -> None:
    """UNAVAILABLE from docaxis: retryable, after RetryInfo's delay."""
    refused = await client_error_of(raise_over(channel, "unavailable"))
    assert (refused.retryable, refused.retry_delay_s) == (True, 2.5)


@pytest.mark.parametrize(
    ("name", "limit", "delay_s"),
    [("rate-limited", "submit", 0.25), ("streams", "receive_streams", 5)],
)
async def test_a_limit_refusal_is_retryable_after_its_delay_and_names_the_limit(
    channel: grpc.aio.Channel, name: str, limit: str, delay_s: float
) -> None:
    """RATE_LIMITED and CONCURRENCY_LIMITED: RESOURCE_EXHAUSTED, retryable after RetryInfo's
    delay, the limit named in the metadata."""
    refused = await client_error_of(raise_over(channel, name))
    assert isinstance(refused, errors.ResourceExhaustedError)
    assert (refused.retryable, refused.retry_delay_s) == (True, delay_s)
    assert refused.metadata == {"limit": limit, "retryable": "true"}


async def test_the_upload_quota_is_resource_exhausted_but_final(channel: grpc.aio.Channel) -> None:
    """The same status code, but waiting frees nothing: not retryable, no RetryInfo."""
    refused = await client_error_of(raise_over(channel, "upload-quota"))
    assert isinstance(refused, errors.ResourceExhaustedError)
    assert (refused.retryable, refused.retry_delay_s) == (False, None)


async def test_a_call_that_never_got_an_answer_is_retryable() -> None:
    """Nothing listening: UNAVAILABLE without details, still typed and retryable."""
    async with grpc.aio.insecure_channel("127.0.0.1:1") as nowhere:
        refused = await client_error_of(raise_over(nowhere, "validation"))
    assert type(refused) is errors.UnavailableError
    assert (refused.reason, refused.retryable, refused.retry_delay_s) == ("", True, None)


def test_the_error_domain_is_docaxis() -> None:
    """Clients match ErrorInfo.domain against this constant."""
    assert ERROR_DOMAIN == "docaxis"


# --- the directory over the wire ----------------------------------------------------------------


async def test_a_call_without_an_agency_header_is_unauthenticated(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """Development identity comes from the header; without it there is no caller."""
    details = await failure_of(directory.GetAgency(pb.GetAgencyRequest(code=PROVINCE.code)))
    assert details.code is grpc.StatusCode.UNAUTHENTICATED
    assert details.reason == "UNAUTHENTICATED"
    assert "x-docaxis-agency" in details.message


async def test_an_unknown_role_is_unauthenticated(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """A role header outside the known roles is not trusted."""
    details = await failure_of(
        directory.GetAgency(
            pb.GetAgencyRequest(code=PROVINCE.code), metadata=(("x-docaxis-role", "root"),)
        )
    )
    assert details.code is grpc.StatusCode.UNAUTHENTICATED


async def test_an_agency_may_not_register_agencies(
    directory: pb_grpc.DirectoryServiceAsyncStub, agencies: FakeAgencies
) -> None:
    """RegisterAgency is for administrators: PERMISSION_DENIED naming the role, nothing stored."""
    details = await failure_of(
        directory.RegisterAgency(pb.RegisterAgencyRequest(agency=an_agency()), metadata=AN_AGENCY)
    )
    assert details.code is grpc.StatusCode.PERMISSION_DENIED
    assert details.reason == "PERMISSION_DENIED"
    assert details.metadata == {"role": "agency", "retryable": "false"}
    assert list(agencies.rows) == [PROVINCE.code]


async def test_an_administrator_registers_once_and_then_gets_a_no_op(
    directory: pb_grpc.DirectoryServiceAsyncStub, agencies: FakeAgencies
) -> None:
    """created is true the first time and false for the identical record."""
    first = await directory.RegisterAgency(
        pb.RegisterAgencyRequest(agency=an_agency()), metadata=ADMIN
    )
    again = await directory.RegisterAgency(
        pb.RegisterAgencyRequest(agency=an_agency()), metadata=ADMIN
    )
    assert (first.created, again.created) == (True, False)
    assert first.agency.status == pb.AGENCY_STATUS_ACTIVE
    assert again.agency.version == first.agency.version
    assert "000.00.13.H45" in agencies.rows


async def test_other_details_under_a_registered_code_are_already_exists(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """ALREADY_EXISTS with reason DUPLICATE and the code in the metadata."""
    await directory.RegisterAgency(pb.RegisterAgencyRequest(agency=an_agency()), metadata=ADMIN)
    details = await failure_of(
        directory.RegisterAgency(
            pb.RegisterAgencyRequest(agency=an_agency(name="Tên khác")), metadata=ADMIN
        )
    )
    assert details.code is grpc.StatusCode.ALREADY_EXISTS
    assert details.reason == "DUPLICATE"
    assert details.metadata["code"] == "000.00.13.H45"


async def test_an_invalid_agency_is_refused_with_every_bad_field(
    directory: pb_grpc.DirectoryServiceAsyncStub, agencies: FakeAgencies
) -> None:
    """INVALID_ARGUMENT with a BadRequest naming code, name and parent at once."""
    details = await failure_of(
        directory.RegisterAgency(
            pb.RegisterAgencyRequest(
                agency=an_agency(code="000.00.13.h45", name="", parent_code="nope")
            ),
            metadata=ADMIN,
        )
    )
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "VALIDATION"
    assert [v.field for v in details.violations] == [
        "agency.code",
        "agency.name",
        "agency.parent_code",
    ]
    assert list(agencies.rows) == [PROVINCE.code]


async def test_malformed_dates_and_a_missing_kind_are_reported_together(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """The wire-level fields are parsed with every problem collected."""
    details = await failure_of(
        directory.RegisterAgency(
            pb.RegisterAgencyRequest(
                agency=an_agency(
                    valid_from="12/03/2019", valid_to="soon", kind=pb.AGENCY_KIND_UNSPECIFIED
                )
            ),
            metadata=ADMIN,
        )
    )
    assert [v.field for v in details.violations] == [
        "agency.valid_from",
        "agency.valid_to",
        "agency.kind",
    ]


async def test_wire_and_content_problems_are_reported_in_one_bad_request(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """A missing valid_from does not hide a malformed code."""
    details = await failure_of(
        directory.RegisterAgency(
            pb.RegisterAgencyRequest(agency=an_agency(code="bad", valid_from="")),
            metadata=ADMIN,
        )
    )
    assert {v.field for v in details.violations} == {"agency.code", "agency.valid_from"}


async def test_an_unknown_agency_is_not_found(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """NOT_FOUND with the normalised code in the metadata."""
    details = await failure_of(
        directory.GetAgency(pb.GetAgencyRequest(code=" 000.00.99.H45 "), metadata=AN_AGENCY)
    )
    assert details.code is grpc.StatusCode.NOT_FOUND
    assert details.reason == "NOT_FOUND"
    assert details.metadata == {"code": "000.00.99.H45", "retryable": "false"}


async def test_getting_a_malformed_code_is_invalid_argument(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """The BadRequest names the request's `code` field."""
    details = await failure_of(
        directory.GetAgency(pb.GetAgencyRequest(code="hello"), metadata=AN_AGENCY)
    )
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["code"]


async def test_any_agency_may_read_the_directory(
    directory: pb_grpc.DirectoryServiceAsyncStub, agencies: FakeAgencies
) -> None:
    """Get, batch get and list work with an agency identity; unknown codes are listed."""
    agencies.seed(
        Agency(
            "000.01.00.H45",
            "UBND huyện Vân Đồn",
            AgencyKind.DISTRICT,
            dt.date(2019, 3, 12),
            parent_code=PROVINCE.code,
            valid_to=dt.date(2025, 6, 30),
            successor_codes=("000.00.40.H45",),
        )
    )
    got = await directory.GetAgency(pb.GetAgencyRequest(code=PROVINCE.code), metadata=AN_AGENCY)
    assert got.agency.name == PROVINCE.name
    batch = await directory.BatchGetAgencies(
        pb.BatchGetAgenciesRequest(codes=[PROVINCE.code, "000.00.99.H45"]), metadata=AN_AGENCY
    )
    assert [a.code for a in batch.agencies] == [PROVINCE.code]
    assert list(batch.unknown_codes) == ["000.00.99.H45"]
    listed = await directory.ListAgencies(
        pb.ListAgenciesRequest(include_closed=True), metadata=AN_AGENCY
    )
    assert [(a.code, a.status) for a in listed.agencies] == [
        (PROVINCE.code, pb.AGENCY_STATUS_ACTIVE),
        ("000.01.00.H45", pb.AGENCY_STATUS_CLOSED),
    ]
    open_only = await directory.ListAgencies(pb.ListAgenciesRequest(), metadata=AN_AGENCY)
    assert [a.code for a in open_only.agencies] == [PROVINCE.code]


async def test_a_forged_page_token_is_invalid_argument(
    directory: pb_grpc.DirectoryServiceAsyncStub,
) -> None:
    """The token field is named in the BadRequest."""
    details = await failure_of(
        directory.ListAgencies(pb.ListAgenciesRequest(page_token="abc"), metadata=AN_AGENCY)
    )
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details.violations] == ["page_token"]
