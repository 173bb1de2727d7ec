"""The national-axis emulator as a real process, through the connector's own client: the
documented operations, error codes, paging, date formats, injected faults and a restart."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from services.common.errors import DomainError, UnavailableError
from tests.national_axis import (
    EmulatorProcess,
    SystemSeed,
    agency,
    document_edxml,
    started,
    status_edxml,
)

pytestmark = pytest.mark.e2e

MINISTRY = "000.00.00.G98"
PROVINCE_DEPT = "000.00.13.H45"
LOCKED = "000.00.14.H45"
MINISTRY_SYSTEM = SystemSeed("bo-thu", (MINISTRY,))
PROVINCE_SYSTEM = SystemSeed("tinh-h45", (PROVINCE_DEPT, LOCKED))


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[EmulatorProcess]:
    process = await started(
        EmulatorProcess(
            tmp_path,
            [MINISTRY_SYSTEM, PROVINCE_SYSTEM],
            [
                agency(MINISTRY, "Bộ Thử"),
                agency(PROVINCE_DEPT, "Sở Thử", "000.00.00.H45"),
                agency(LOCKED, "Sở Khóa", "000.00.00.H45", locked=True),
            ],
            page_limit=3,
            date_format="dmy",
        )
    )
    yield process
    process.stop()


async def _refusal(call: Awaitable[object]) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    return caught.value


async def test_a_document_goes_through_the_mailbox_and_is_picked_up_once(
    emulator: EmulatorProcess,
) -> None:
    """sendEdoc → getReceivedEdocList → getEdoc (byte for byte) → updateStatus done: the item
    leaves the list and the sender sees it received; the same file again is the same DocId."""
    ministry, province = emulator.client(MINISTRY_SYSTEM), emulator.client(PROVINCE_SYSTEM)
    try:
        data = document_edxml(MINISTRY, [PROVINCE_DEPT], "501", empty_signature=True)
        doc_id = await ministry.send_edoc(
            data, sender=MINISTRY, messagetype="edoc", to=[PROVINCE_DEPT]
        )
        again = await ministry.send_edoc(
            data, sender=MINISTRY, messagetype="edoc", to=[PROVINCE_DEPT]
        )
        assert again == doc_id
        items, count = await province.received("edoc")
        assert (count, [(i.doc_id, i.sender, i.recipient) for i in items]) == (
            1,
            [(doc_id, MINISTRY, PROVINCE_DEPT)],
        )
        # dd/MM/yyyy HH:mm:ss, as this emulator was told to write its times.
        assert re.fullmatch(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", items[0].created_time)
        assert await province.get_edoc(doc_id) == data
        assert (await ministry.received("edoc"))[1] == 0
        await province.update_status(doc_id, "done")
        assert (await province.received("edoc"))[1] == 0
        (sent,) = await ministry.sent(doc_id)
        assert (sent["to"], sent["receiveStatus"]) == (PROVINCE_DEPT, "done")
    finally:
        await ministry.close()
        await province.close()


async def test_statuses_travel_in_their_own_list(emulator: EmulatorProcess) -> None:
    """A status package goes to the original sender (ResponseFor/OrganId), listed only under
    messagetype=status."""
    ministry, province = emulator.client(MINISTRY_SYSTEM), emulator.client(PROVINCE_SYSTEM)
    try:
        document_id = f"{MINISTRY},2026/01/02,77/BTC-VP"
        status = status_edxml(PROVINCE_DEPT, document_id, "03")
        doc_id = await province.send_edoc(status, sender=PROVINCE_DEPT, messagetype="status", to=[])
        assert (await ministry.received("edoc"))[1] == 0
        (item,), _ = await ministry.received("status")
        assert (item.doc_id, item.sender, item.recipient) == (doc_id, PROVINCE_DEPT, MINISTRY)
    finally:
        await ministry.close()
        await province.close()


async def test_error_codes_map_to_typed_errors(emulator: EmulatorProcess) -> None:
    """Each documented code comes back as docaxis's reason, final or retryable."""
    ministry = emulator.client(MINISTRY_SYSTEM)
    wrong = emulator.client(MINISTRY_SYSTEM, secret="not-the-secret")
    good = document_edxml(MINISTRY, [PROVINCE_DEPT], "502")
    try:
        cases = {
            "15": wrong.received("edoc"),
            "18": ministry.send_edoc(
                good, sender=MINISTRY, messagetype="edoc", to=["000.00.99.H45"]
            ),
            "23": ministry.send_edoc(good, sender=MINISTRY, messagetype="edoc", to=[LOCKED]),
            "19": ministry.send_edoc(
                good, sender=PROVINCE_DEPT, messagetype="edoc", to=[PROVINCE_DEPT]
            ),
            "10": ministry.send_edoc(
                b"not xml at all", sender=MINISTRY, messagetype="edoc", to=[PROVINCE_DEPT]
            ),
            "22": ministry.send_edoc(
                good, sender=MINISTRY, messagetype="status", to=[PROVINCE_DEPT]
            ),
        }
        found = {code: await _refusal(call) for code, call in cases.items()}
    finally:
        await ministry.close()
        await wrong.close()
    summary = {
        code: (e.meta.get("axisErrorCode"), e.reason, e.retryable) for code, e in found.items()
    }
    assert summary == {
        "15": ("15", "UNAUTHENTICATED", True),
        "18": ("18", "INVALID_ADDRESSEE", False),
        "23": ("23", "INVALID_ADDRESSEE", False),
        "19": ("19", "NOT_REGISTERED", False),
        "10": ("10", "VALIDATION", False),
        "22": ("22", "VALIDATION", False),
    }


async def test_paging_is_limited_and_walks_every_item(emulator: EmulatorProcess) -> None:
    """Asking for more than the limit (3 here) gets the limit; the pages cover every item."""
    ministry, province = emulator.client(MINISTRY_SYSTEM), emulator.client(PROVINCE_SYSTEM)
    try:
        sent = {
            await ministry.send_edoc(
                document_edxml(MINISTRY, [PROVINCE_DEPT], f"6{n:02d}"),
                sender=MINISTRY,
                messagetype="edoc",
                to=[PROVINCE_DEPT],
            )
            for n in range(7)
        }
        first, count = await province.received("edoc", page=1, page_size=100)
        assert (len(first), count) == (3, 7)
        seen = [i.doc_id for p in (1, 2, 3) for i in (await province.received("edoc", page=p))[0]]
        assert sorted(seen) == sorted(sent)
    finally:
        await ministry.close()
        await province.close()


async def test_injected_5xx_and_down_are_unavailable_then_pass(emulator: EmulatorProcess) -> None:
    """A 5xx with a non-JSON body is UNAVAILABLE (retryable); the next call passes."""
    province = emulator.client(PROVINCE_SYSTEM)
    try:
        await emulator.admin(fail_next=2, status=502)
        for _ in range(2):
            error = await _refusal(province.received("edoc"))
            assert isinstance(error, UnavailableError)
        assert (await province.received("edoc"))[1] == 0
        await emulator.admin(down=True)
        assert isinstance(await _refusal(province.agencies()), UnavailableError)
        await emulator.admin(down=False)
        assert len(await province.agencies()) == 3
    finally:
        await province.close()


async def test_injected_error_codes_are_fail_answers_with_that_code(
    emulator: EmulatorProcess,
) -> None:
    """The fault switch's `error_code`: FAIL answers with the code (20 platform error: retried
    as UNAVAILABLE; 15: UNAUTHENTICATED, retried too) for the next calls of one operation, the
    others untouched; then the operation passes again."""
    province = emulator.client(PROVINCE_SYSTEM)
    try:
        await emulator.admin(fail_next=1, error_code="20", operation="getReceivedEdocList")
        assert len(await province.agencies()) == 3  # another operation: untouched
        platform = await _refusal(province.received("edoc"))
        await emulator.admin(fail_next=1, error_code="15", operation="getReceivedEdocList")
        credentials = await _refusal(province.received("edoc"))
        assert (await province.received("edoc"))[1] == 0
    finally:
        await province.close()
    assert [
        (e.meta.get("axisErrorCode"), e.reason, e.retryable) for e in (platform, credentials)
    ] == [
        ("20", "UNAVAILABLE", True),
        ("15", "UNAUTHENTICATED", True),
    ]


async def test_a_restarted_emulator_keeps_its_mailboxes_and_registry(
    emulator: EmulatorProcess,
) -> None:
    """kill -9 then start again on the same state: the waiting item and a tombstone are there,
    and the delta feed reports the deletion with a newer version."""
    ministry = emulator.client(MINISTRY_SYSTEM)
    try:
        doc_id = await ministry.send_edoc(
            document_edxml(MINISTRY, [PROVINCE_DEPT], "701"),
            sender=MINISTRY,
            messagetype="edoc",
            to=[PROVINCE_DEPT],
        )
        before = await ministry.synchronize(0)
    finally:
        await ministry.close()
    assert [a["code"] for a in before["agencies"]] == [MINISTRY, PROVINCE_DEPT, LOCKED]
    emulator.kill()
    await emulator.start()
    province = emulator.client(PROVINCE_SYSTEM)
    try:
        assert [i.doc_id for i in (await province.received("edoc"))[0]] == [doc_id]
        since = int(before["nextVersion"])
        assert (await province.synchronize(since))["agencies"] == []
    finally:
        await province.close()
