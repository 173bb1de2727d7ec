"""The exchange's DirectoryLookup.resolve: the in-process adapter, the gRPC adapter (through a
real DirectoryService) and the fake answer alike for every kind of address."""

from __future__ import annotations

import datetime as dt

import pytest
from docaxis.directory.v1 import directory_service_pb2 as dpb

from services.bootstrap.directory_view import LocalDirectoryLookup
from services.directory.entrypoints.grpc_api import agency_from_pb
from services.directory.service_layer.handlers import MAX_BATCH, DirectoryHandlers
from services.exchange.adapters.directory import GrpcDirectoryLookup
from services.exchange.domain.addresses import AddressState
from services.exchange.service_layer.ports import DirectoryLookup
from tests.conftest import unique_code
from tests.fakes import FakeDirectoryLookup
from tests.pki import SuitePki

pytestmark = pytest.mark.integration

DAY = dt.date(2025, 8, 1)
CLOSED_ON = dt.date(2025, 6, 30)


async def test_every_lookup_resolves_the_same_way(
    directory: DirectoryHandlers, axis: str, pki: SuitePki
) -> None:
    """Open, chained (A→B→C), closed without successor, split, not yet valid, unknown."""
    c, b, a, none, split, ahead = (unique_code() for _ in range(6))
    unknown = unique_code()
    rows = [
        (c, "", ()),
        (b, CLOSED_ON.isoformat(), (c,)),
        (a, CLOSED_ON.isoformat(), (b,)),
        (none, CLOSED_ON.isoformat(), ()),
        (split, CLOSED_ON.isoformat(), (b, c)),
    ]
    for code, valid_to, successors in rows:
        await directory.register(
            agency_from_pb(
                dpb.Agency(
                    code=code,
                    name=f"Cơ quan {code}",
                    kind=dpb.AGENCY_KIND_WARD,
                    valid_from="2019-03-12",
                    valid_to=valid_to,
                    successor_codes=list(successors),
                )
            )
        )
    await directory.register(
        agency_from_pb(
            dpb.Agency(
                code=ahead, name="Xã mới", kind=dpb.AGENCY_KIND_COMMUNE, valid_from="2030-01-01"
            )
        )
    )
    fake = FakeDirectoryLookup(c)
    for code, _valid_to, successors in rows[1:]:
        fake.close(code, *successors, on=CLOSED_ON)
    fake.register_ahead(ahead)
    codes = [a, c, none, split, ahead, unknown]
    async with pki.channel(axis, pki.admin_certificate) as channel:
        lookups: dict[str, DirectoryLookup] = {
            "local": LocalDirectoryLookup(directory),
            "grpc": GrpcDirectoryLookup(channel),
            "fake": fake,
        }
        answers = {name: await lookup.resolve(codes, DAY) for name, lookup in lookups.items()}
    for name, answer in answers.items():
        assert list(answer) == codes, name
        assert answer[a].effective == c, name
        assert answer[a].chain == (a, b, c), name
        assert answer[c].state is AddressState.OPEN, name
        assert answer[ahead].state is AddressState.NOT_YET_VALID, name
        assert answer[unknown].state is AddressState.UNKNOWN, name
        for code in (none, split, ahead, unknown):
            assert answer[code].effective is None, (name, code)
        for code in (a, none, split):
            assert answer[code].valid_to == CLOSED_ON, (name, code)
            assert answer[code].problem == answers["local"][code].problem, (name, code)
        assert answer[split].successor_codes == (b, c), name


async def test_a_circular_to_more_codes_than_one_directory_call_takes_is_looked_up_whole(
    directory: DirectoryHandlers, axis: str, pki: SuitePki
) -> None:
    """A document may name more recipients (MAX_RECIPIENTS) than DirectoryService answers per
    call (MAX_BATCH): both adapters ask in pieces and answer for every code, in order."""
    known = unique_code()
    await directory.register(
        agency_from_pb(
            dpb.Agency(
                code=known, name="Xã đã có", kind=dpb.AGENCY_KIND_COMMUNE, valid_from="2019-03-12"
            )
        )
    )
    # Group H96, which unique_code() (H99) never hands out: another test's agency could
    # otherwise take one of these "unknown" codes.
    unknown = [f"{n // 100:03d}.{n % 100:02d}.77.H96" for n in range(MAX_BATCH + 1)]
    codes = [*unknown[:MAX_BATCH], known, unknown[MAX_BATCH]]
    async with pki.channel(axis, pki.admin_certificate) as channel:
        lookups: dict[str, DirectoryLookup] = {
            "local": LocalDirectoryLookup(directory),
            "grpc": GrpcDirectoryLookup(channel),
        }
        for name, lookup in lookups.items():
            answer = await lookup.resolve(codes, DAY)
            assert list(answer) == codes, name
            assert answer[known].state is AddressState.OPEN, name
            assert answer[unknown[MAX_BATCH]].state is AddressState.UNKNOWN, name
            assert set(await lookup.lookup(codes)) == {known}, name
