"""The forwarder counts a copy as handed over only with the next hub's valid signed receipt: a
receipt signed by another hub, for another document or under untrusted anchors leaves the copy
waiting (handed over again after a back-off), logged and counted; the valid one settles it,
once."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import structlog

from docaxis_client.trust import TransportReceipt
from docaxis_client.trust.demo_pki import DemoCA
from services.common.errors import UnavailableError
from services.exchange.domain.delivery import HandoverFailure
from services.exchange.service_layer.federation_ports import (
    FederationStore,
    HopOutcome,
    OutboundItem,
    PeerTransport,
)
from services.exchange.service_layer.forwarding import Forwarder
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.hop_receipts import HopReceipts
from services.exchange.service_layer.inbox_ports import InboxMessage
from services.exchange.service_layer.ports import PushItem
from tests.unit.exchange.builders import HEALTH, header, submission

SOURCE = str(uuid.uuid4())  # the document here, at the sending hub (its own origin)


@dataclass
class Message:
    """A broker message, as the forwarder settles it."""

    settled: list[str] = field(default_factory=list)

    @property
    def headers(self) -> Mapping[str, object]:
        return {}

    async def ack(self, multiple: bool = False) -> None:
        self.settled.append("ack")

    async def reject(self, requeue: bool = False) -> None:
        self.settled.append("requeue" if requeue else "dead-letter")


class Copies:
    """begin_pushes of the one waiting copy: claimed again at every hand-over."""

    def __init__(self) -> None:
        self.claims = 0

    async def begin_pushes(
        self,
        claims: Sequence[tuple[str, str]],
        published: Mapping[str, dt.datetime] | None = None,
    ) -> list[PushItem]:
        del published  # the relay's times: nothing here records them
        self.claims += 1
        return [
            PushItem(
                delivery_id=delivery_id,
                document_uuid=SOURCE,
                requested_recipient=recipient,
                header=header([HEALTH]),
                attachments=(),
                signatures=(),
                submitted_at=dt.datetime.now(dt.UTC),
                verification=None,
                envelope=None,
                first_handover=False,
            )
            for delivery_id, recipient in claims
        ]


@dataclass
class Store:
    settled: list[tuple[str, str, bytes]] = field(default_factory=list)
    # Each failed hand-over's write: {delivery id: (reason, detail)}.
    failures: list[dict[str, tuple[str, str]]] = field(default_factory=list)

    async def handover_failed(self, failures: Mapping[str, HandoverFailure]) -> None:
        self.failures.append({k: (f.reason, f.detail) for k, f in failures.items()})

    async def hop_info(self, document_uuids: Sequence[str]) -> dict[str, tuple[str, tuple[()]]]:
        return {u: (u, ()) for u in document_uuids}

    async def handed_over(self, delivery_id: str, hub_code: str, receipt: bytes) -> bool:
        self.settled.append((delivery_id, hub_code, receipt))
        return True

    async def refused(self, delivery_id: str, hub_code: str, reason: str) -> None:
        raise AssertionError("a copy the peer stored is never refused")


@dataclass(frozen=True)
class Answer:
    """A receipt the peer answers with: signed by `signer`, about the copy or another document."""

    signer: HopReceipts
    another_document: bool = False


class Peer:
    """The national hub, answering each hand-over with the next of `answers`."""

    hub_code = "national"

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers

    async def forward(self, items: Sequence[OutboundItem]) -> list[HopOutcome]:
        answer = self.answers.pop(0)
        at = dt.datetime.now(dt.UTC)
        return [
            HopOutcome(
                i.item_id,
                receipt=answer.signer.sign(
                    str(uuid.uuid4()) if answer.another_document else i.origin_document_uuid,
                    submission(head=header([HEALTH])),
                    HEALTH,
                    at,
                ),
            )
            for i in items
        ]

    async def probe(self) -> bool:
        return True


def _peer_receipts(ca: DemoCA, hub: str) -> HopReceipts:
    return HopReceipts(ca.issue_peer(hub).identity(), ca.trust_store())


def _forwarder(
    peer: object, copies: Copies, store: Store, receipts: HopReceipts | None = None
) -> Forwarder:
    """Province A's forwarder to `peer`, with a short back-off."""
    unused: Any = None
    return Forwarder(
        "province-a",
        cast(PeerTransport, peer),
        unused,
        cast(ExchangeHandlers, copies),
        unused,
        cast(FederationStore, store),
        max_backoff_s=0.01,
        rng=random.Random(7),  # noqa: S311 - jitter, not secrecy
        receipts=receipts,
    )


async def test_a_copy_waits_until_the_next_hub_answers_with_a_valid_receipt() -> None:
    ca, stranger = DemoCA.create(), DemoCA.create()
    national = _peer_receipts(ca, "national")
    peer = Peer(
        [
            Answer(_peer_receipts(ca, "province-b")),  # signed by another hub
            Answer(_peer_receipts(stranger, "national")),  # under anchors A does not trust
            Answer(national, another_document=True),
            Answer(national),
        ]
    )
    copies, store = Copies(), Store()
    forwarder = _forwarder(peer, copies, store, _peer_receipts(ca, "province-a"))
    delivery_id = str(uuid.uuid4())
    message = Message()
    waiting = InboxMessage(delivery_id, message, addressee=HEALTH)
    with structlog.testing.capture_logs() as logs:
        for attempt in range(1, 4):
            # The run loop hands the held message over again first, as here.
            await forwarder.forward_batch([waiting])
            assert message.settled == []  # held, unacknowledged: not done, not dropped
            assert store.settled == []
            assert forwarder.stats.receipts_invalid == attempt
            assert forwarder.stats.failures == attempt
            assert "PEER_RECEIPT_INVALID" in forwarder.stats.last_error
        assert forwarder.snapshot().receipts_invalid == 3
        await forwarder.forward_batch([waiting])
    assert message.settled == ["ack"]
    ((settled_id, hub, receipt),) = store.settled
    assert (settled_id, hub) == (delivery_id, "national")
    assert TransportReceipt.from_json(receipt).document_uuid == SOURCE  # the valid one, kept
    assert forwarder.stats.forwarded == 1
    assert copies.claims == 4  # each attempt claimed the copy (pushes count toward the bound)
    refused = [e for e in logs if e["event"] == "hop_receipt_refused"]
    assert [e["reason"] for e in refused] == ["PEER_RECEIPT_INVALID"] * 3
    # Each refused receipt was remembered with the copy (its dead letter at the limit says so);
    # the hand-over that settled it wrote nothing.
    assert [list(f) for f in store.failures] == [[delivery_id]] * 3
    assert [f[delivery_id][0] for f in store.failures] == ["PEER_RECEIPT_INVALID"] * 3
    assert "SIGNER_MISMATCH" in store.failures[0][delivery_id][1]
    assert "SIGNER_MISMATCH" in refused[0]["error"]
    assert "UNTRUSTED_ISSUER" in refused[1]["error"]
    assert "document_uuid" in refused[2]["error"]
    # Each refusal paused the forwarder longer than the one before (jittered back-off).
    deferred = [e["batches_in_a_row"] for e in logs if e["event"] == "forwarded_items_deferred"]
    assert deferred == [1, 2, 3]


class Unreachable:
    """A peer that cannot be reached."""

    hub_code = "national"

    async def forward(self, items: Sequence[OutboundItem]) -> list[HopOutcome]:
        raise UnavailableError("peer hub national: UNAVAILABLE connection refused")

    async def probe(self) -> bool:
        return False


async def test_a_copy_the_peer_could_not_be_reached_for_remembers_why() -> None:
    """The whole batch goes again: each document's copy remembers UNAVAILABLE, with the
    transport's message."""
    forwarder = _forwarder(Unreachable(), Copies(), store := Store())
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    await forwarder.forward_batch([InboxMessage(i, Message(), addressee=HEALTH) for i in ids])
    assert len(forwarder.held) == 2
    why = ("UNAVAILABLE", "peer hub national: UNAVAILABLE connection refused")
    assert store.failures == [dict.fromkeys(ids, why)]
