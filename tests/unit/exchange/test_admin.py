"""Administrators' use cases over fakes: who may ask, how filters and page tokens are read, the
push limit that dead-letters a copy, and the resend's checks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from services.common.errors import (
    FieldViolation,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from services.common.identity import Caller, Role
from services.directory.domain.codes import code_problem
from services.exchange.domain.model import (
    MAX_PUSHES_EXCEEDED,
    BusinessType,
    DeliveryState,
)
from services.exchange.domain.statuses import StatusCode
from services.exchange.service_layer.admin import (
    AdminHandlers,
    SearchFilters,
    document_query,
    parse_code,
)
from services.exchange.service_layer.admin_ports import (
    Administrator,
    DeadLetterCopy,
    DocumentHops,
    DocumentQuery,
    DocumentSummary,
    FoundDocument,
    Resend,
)
from services.exchange.service_layer.handlers import ExchangeHandlers, Limits
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.lifecycle_ports import PageCursor
from services.exchange.service_layer.ports import DeadLetter, PushItem
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.lifecycle_fakes import FakeLifecycleStore
from tests.unit.exchange.builders import HEALTH, NOW, SENDER, fixed_clock, submission

ADMIN = Caller(Role.ADMIN, subject="CN=quản trị viên", serial="1a2b")
AGENCY = Caller(Role.AGENCY, HEALTH)


def summary(n: int) -> DocumentSummary:
    return DocumentSummary(
        document_uuid=str(uuid.UUID(int=n)),
        document_id=f"{SENDER},2025/08/01,{n}/UBND-VP",
        code_number=str(n),
        code_notation="UBND-VP",
        subject="Thử nghiệm",
        sender=SENDER,
        submitted_at=NOW - dt.timedelta(minutes=n),
        business_type=BusinessType.NEW,
    )


@dataclass(slots=True)
class FakeAdminStore:
    """Answers from prepared rows (newest first) and records what it was asked."""

    found: list[FoundDocument] = field(default_factory=list)
    dead: list[DeadLetterCopy] = field(default_factory=list)
    queries: list[tuple[DocumentQuery, PageCursor | None, int]] = field(default_factory=list)
    resent: list[tuple[str, Administrator, str]] = field(default_factory=list)

    async def search(
        self, query: DocumentQuery, after: PageCursor | None, limit: int
    ) -> list[FoundDocument]:
        self.queries.append((query, after, limit))
        rows = self.found
        if after is not None:
            key = (after.created_at, after.item_id)
            rows = [f for f in rows if (f.document.submitted_at, f.document.document_uuid) < key]
        return rows[:limit]

    async def dead_letters(
        self, agency: str | None, after: PageCursor | None, limit: int, *, peer: str | None = None
    ) -> list[DeadLetterCopy]:
        rows = self.dead
        if after is not None:
            key = (after.created_at, after.item_id)
            rows = [d for d in rows if (d.dead_lettered_at, d.delivery_id) < key]
        return rows[:limit]

    async def resend(
        self, delivery_id: str, administrator: Administrator, reason: str, now: dt.datetime
    ) -> Resend | None:
        dead = next((d for d in self.dead if d.delivery_id == delivery_id), None)
        if dead is None:
            return None
        self.resent.append((delivery_id, administrator, reason))
        return Resend(delivery_id, now, administrator, reason, dead.dead_lettered_at, "X", 3)

    async def hops(self, document_uuid: str) -> DocumentHops | None:
        return None  # the fakes have no peer hubs

    async def resends(self, delivery_ids: Sequence[str]) -> list[Resend]:
        return []

    async def trace_id(self, document_uuid: str) -> str:
        return ""


@pytest.fixture
def admin_store() -> FakeAdminStore:
    return FakeAdminStore(found=[FoundDocument(summary(n), ()) for n in range(1, 6)])


@pytest.fixture
def admin(admin_store: FakeAdminStore, store: FakeDocumentStore) -> AdminHandlers:
    return AdminHandlers(admin_store, store, FakeLifecycleStore(store), clock=fixed_clock)


def fields(exc: ValidationError) -> list[str]:
    return [v.field for v in exc.violations]


async def test_agencies_are_refused_every_administrator_use_case(admin: AdminHandlers) -> None:
    """PERMISSION_DENIED before the request is even read (a bad one included)."""
    calls = [
        admin.search(AGENCY, SearchFilters(submitted_from="bad"), 500, "bad"),
        admin.timeline(AGENCY, "not-a-uuid"),
        admin.dead_letters(AGENCY, "", -1, ""),
        admin.resend(AGENCY, "not-a-uuid", ""),
    ]
    for call in calls:
        with pytest.raises(PermissionDeniedError):
            await call


def test_a_code_is_a_number_and_a_notation_split_at_the_first_slash() -> None:
    problems: list[FieldViolation] = []
    assert parse_code(" 123/UBND-VP ", problems) == ("123", "UBND-VP")
    assert parse_code("7/KH-SỞYT/VP", problems) == ("7", "KH-SỞYT/VP")
    assert parse_code("123", problems) == ("123", None)
    assert parse_code("", problems) == (None, None)
    assert not problems
    for bad in ("/UBND", "123/", "1" * 12 + "/VP", "1/" + "V" * 31):
        parse_code(bad, problems)
    assert [p.field for p in problems] == ["code"] * 4


def test_submission_days_are_vietnam_days_both_inclusive() -> None:
    problems: list[FieldViolation] = []
    query = document_query(
        SearchFilters(
            document_id=f"{SENDER},2025/08/01,1/UBND-VP",
            code="1/UBND-VP",
            submitted_from="2025-08-01",
            submitted_to="2025-08-02",
            latest_status=StatusCode.ACCEPTED,
            state=DeliveryState.DEAD_LETTERED,
        ),
        problems,
    )
    assert not problems
    assert query.submitted_from == dt.datetime(2025, 7, 31, 17, tzinfo=dt.UTC)
    assert query.submitted_before == dt.datetime(2025, 8, 2, 17, tzinfo=dt.UTC)
    assert (query.code_number, query.code_notation) == ("1", "UBND-VP")
    assert (query.sender, query.recipient) == (None, None)
    assert (query.latest_status, query.state) == (StatusCode.ACCEPTED, DeliveryState.DEAD_LETTERED)


async def test_every_bad_search_input_is_reported_at_once(admin: AdminHandlers) -> None:
    with pytest.raises(ValidationError) as bad:
        await admin.search(
            ADMIN,
            SearchFilters(code="/x", submitted_from="2025-08-03", submitted_to="2025-08-02"),
            201,
            "not a token",
            wire_problems=[FieldViolation("state", "unknown delivery state")],
        )
    assert fields(bad.value) == ["state", "code", "submitted_to", "page_size", "page_token"]
    assert "SearchDocuments" in bad.value.violations[-1].description


async def test_search_pages_newest_first_with_an_opaque_token(
    admin: AdminHandlers, admin_store: FakeAdminStore
) -> None:
    """One more row than the page is asked for; the token resumes after the page's last row,
    and the last page has no token."""
    first, token = await admin.search(ADMIN, SearchFilters(sender=SENDER), 2, "")
    assert [f.document.code_number for f in first] == ["1", "2"]
    assert token
    second, token = await admin.search(ADMIN, SearchFilters(sender=SENDER), 2, token)
    assert [f.document.code_number for f in second] == ["3", "4"]
    last, token = await admin.search(ADMIN, SearchFilters(sender=SENDER), 2, token)
    assert ([f.document.code_number for f in last], token) == (["5"], "")
    assert [limit for _, _, limit in admin_store.queries] == [3, 3, 3]
    assert admin_store.queries[0][0].sender == SENDER
    default, _ = await admin.search(ADMIN, SearchFilters(), 0, "")
    assert len(default) == 5
    assert admin_store.queries[-1][2] == 51


async def test_dead_letters_page_and_resend_checks_its_input(
    admin: AdminHandlers, admin_store: FakeAdminStore
) -> None:
    admin_store.dead = [
        DeadLetterCopy(
            str(uuid.UUID(int=100 - n)),
            summary(n),
            HEALTH,
            HEALTH,
            MAX_PUSHES_EXCEEDED,
            NOW - dt.timedelta(minutes=n),
            20,
        )
        for n in range(3)
    ]
    page, token = await admin.dead_letters(ADMIN, "", 2, "")
    rest, end = await admin.dead_letters(ADMIN, HEALTH, 2, token)
    assert [d.delivery_id for d in [*page, *rest]] == [d.delivery_id for d in admin_store.dead]
    assert end == ""
    with pytest.raises(ValidationError) as bad:
        await admin.resend(ADMIN, "nope", "  ")
    assert fields(bad.value) == ["delivery_id", "reason"]
    with pytest.raises(NotFoundError):
        await admin.resend(ADMIN, str(uuid.uuid4()), "DMS sửa xong")
    resend = await admin.resend(ADMIN, admin_store.dead[0].delivery_id, " DMS sửa xong ")
    assert resend.administrator == Administrator("CN=quản trị viên", "1a2b")
    assert admin_store.resent == [
        (admin_store.dead[0].delivery_id, resend.administrator, "DMS sửa xong")
    ]


async def test_a_timeline_needs_a_known_document(admin: AdminHandlers) -> None:
    with pytest.raises(ValidationError):
        await admin.timeline(ADMIN, "nope")
    with pytest.raises(NotFoundError) as missing:
        await admin.timeline(ADMIN, str(uuid.uuid4()))
    assert "document_uuid" in missing.value.meta


async def test_a_copy_pushed_up_to_the_limit_is_dead_lettered_not_pushed_again(
    store: FakeDocumentStore, directory: FakeDirectoryLookup
) -> None:
    """With max_pushes 2, the third push (or pull-mode fetch) gives up on the copy."""
    exchange = ExchangeHandlers(
        store, directory, code_problem, Limits(max_pushes=2), clock=fixed_clock
    )
    lifecycle = LifecycleHandlers(exchange, FakeLifecycleStore(store), clock=fixed_clock)
    receipt = (await exchange.submit(SENDER, submission("c-1"))).receipt
    delivery_id = next(r.delivery_id for r in receipt.routes if r.effective_recipient == HEALTH)
    assert isinstance(await exchange.begin_push(delivery_id, HEALTH), PushItem)
    assert isinstance(await lifecycle.fetch_delivery(HEALTH, delivery_id), PushItem)
    with pytest.raises(NotFoundError) as gone:
        await lifecycle.fetch_delivery(HEALTH, delivery_id)
    assert gone.value.meta["dead_letter_reason"] == MAX_PUSHES_EXCEEDED
    assert await exchange.begin_push(delivery_id, HEALTH) is None
    copy = store.deliveries[delivery_id]
    assert (copy.state, copy.push_count, copy.dead_lettered_at) == (
        DeliveryState.DEAD_LETTERED,
        2,
        NOW,
    )
    track = await exchange.track(SENDER, document_uuid=receipt.document_uuid, document_id=None)
    mine = next(r for r in track.recipients if r.delivery_id == delivery_id)
    assert (mine.state, mine.dead_letter_reason) == (
        DeliveryState.DEAD_LETTERED,
        MAX_PUSHES_EXCEEDED,
    )
    (dead,) = [e for e in store.ledger if e.data.get("event") == "dead_lettered"]
    assert (dead.entry_type, dead.to_agency, dict(dead.data)) == (
        "delivery",
        HEALTH,
        {
            "delivery": delivery_id,
            "event": "dead_lettered",
            "reason": MAX_PUSHES_EXCEEDED,
            "push_count": 2,
        },
    )


async def test_by_default_a_copy_is_pushed_twenty_times(exchange: ExchangeHandlers) -> None:
    """DOCAXIS_MAX_PUSHES defaults to 20: the 21st attempt dead-letters the copy."""
    receipt = (await exchange.submit(SENDER, submission("c-2"))).receipt
    route = receipt.routes[0]
    for _ in range(20):
        pushed = await exchange.begin_push(route.delivery_id, route.effective_recipient)
        assert isinstance(pushed, PushItem)
    dead = await exchange.begin_push(route.delivery_id, route.effective_recipient)
    assert isinstance(dead, DeadLetter)
    assert dead.push_count == 20
