"""The order a forwarder keeps per copy when the peer asks for items again
(services/exchange/service_layer/forwarding.py), with hand-written fakes of its ports."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from typing import Any, cast

from services.common.errors import UnavailableError
from services.exchange.domain.statuses import StaffInfo, StatusCode, StatusEntry, StatusReport
from services.exchange.service_layer.federation_ports import (
    FederationStore,
    HopOutcome,
    OutboundItem,
    PeerTransport,
)
from services.exchange.service_layer.forwarding import Forwarder
from services.exchange.service_layer.inbox_ports import InboxMessage
from services.exchange.service_layer.lifecycle import LifecycleHandlers
from services.exchange.service_layer.lifecycle_ports import StatusNoticeItem

T0 = dt.datetime(2026, 12, 5, 8, 0, tzinfo=dt.UTC)


class Message:
    """A broker message that records how it was settled."""

    def __init__(self) -> None:
        self.settled = ""

    @property
    def headers(self) -> Mapping[str, object]:
        return {}

    async def ack(self, multiple: bool = False) -> None:
        self.settled = "ack"

    async def reject(self, requeue: bool = False) -> None:
        self.settled = "requeue" if requeue else "dead-letter"


class Notices:
    """LifecycleHandlers as far as forwarding status notices uses it: notice n-<i> is the status
    of copy <copy> with code <code>."""

    def __init__(self, notices: Mapping[str, tuple[str, StatusCode]]) -> None:
        self._notices = notices
        self.acknowledged: list[str] = []

    async def begin_notices(self, claims: Sequence[tuple[str, str]]) -> list[StatusNoticeItem]:
        items = []
        for notice_id, _agency in claims:
            copy, code = self._notices[notice_id]
            report = StatusReport(notice_id, code, T0, "", StaffInfo())
            items.append(
                StatusNoticeItem(
                    notice_id, copy, "id", f"d-{copy}", "RECIPIENT", StatusEntry(report, "R", T0)
                )
            )
        return items

    async def acknowledge_notice(self, agency: str, notice_id: str) -> None:
        self.acknowledged.append(notice_id)


class Hops:
    async def hop_info(self, uuids: Sequence[str]) -> dict[str, tuple[str, tuple[()]]]:
        return {u: (u, ()) for u in uuids}


class Peer:
    """Asks for the items `again` once, again (retryable), and stores everything else."""

    hub_code = "national"

    def __init__(self, again: set[str]) -> None:
        self._again = again
        self.handed: list[list[str]] = []

    async def forward(self, items: Sequence[OutboundItem]) -> list[HopOutcome]:
        self.handed.append([i.item_id for i in items])
        outcomes = []
        for item in items:
            if item.item_id in self._again:
                self._again.discard(item.item_id)
                error = UnavailableError("not now")
                outcomes.append(HopOutcome(item.item_id, error=error, retryable=True))
            else:
                outcomes.append(HopOutcome(item.item_id))
        return outcomes

    async def probe(self) -> bool:
        return True


async def test_an_item_asked_for_again_goes_first_with_the_later_ones_of_its_copy() -> None:
    """The peer asks for copy X's 03 again: X's 04, though stored, is handed over again with it
    (never settled before it), copy Y's status is settled at once, and nothing goes back to the
    broker queue (where it would come back behind what was prefetched since)."""
    notices = Notices(
        {
            "n-1": ("X", StatusCode.ACCEPTED),
            "n-2": ("Y", StatusCode.ACCEPTED),
            "n-3": ("X", StatusCode.ASSIGNED),
        }
    )
    peer = Peer({"n-1"})
    unused: Any = None
    forwarder = Forwarder(
        "province-a",
        cast(PeerTransport, peer),
        unused,
        unused,
        cast(LifecycleHandlers, notices),
        cast(FederationStore, Hops()),
        rng=random.Random(1),  # noqa: S311 - jitter, not secrecy
        max_backoff_s=0.1,
    )
    messages = {n: Message() for n in ("n-1", "n-2", "n-3")}
    batch = [InboxMessage("", m, notice_id=n, addressee="SENDER") for n, m in messages.items()]
    await forwarder.forward_batch(batch)
    assert notices.acknowledged == ["n-2"]
    assert {n: m.settled for n, m in messages.items()} == {"n-1": "", "n-2": "ack", "n-3": ""}
    assert [m.notice_id for m in forwarder.held] == ["n-1", "n-3"]
    await forwarder.forward_batch(forwarder.held)
    assert peer.handed == [["n-1", "n-2", "n-3"], ["n-1", "n-3"]]
    assert notices.acknowledged == ["n-2", "n-1", "n-3"]
    assert all(m.settled == "ack" for m in messages.values())
