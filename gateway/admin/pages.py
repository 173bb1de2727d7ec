"""The console's pages: each asks the services (as the signed-in administrator) and renders a
template. Inputs are checked here before any call, so a bad one is a clear message, not a
failed RPC."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

import structlog
from docaxis.common.v1 import common_pb2 as cpb
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import exchange_service_pb2 as xpb
from docaxis.exchange.v1 import report_service_pb2 as rpb
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.responses import RedirectResponse, Response

from docaxis_client.trust.manifest import AGENCY_CODE_PATTERN
from gateway.admin.app import Console, Handler, Page, vietnam_month
from gateway.admin.charts import Series, bar_chart
from gateway.admin.i18n import Translator
from gateway.problems import Problem

log = structlog.get_logger(__name__)

_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _agency(page: Page, name: str) -> str:
    value = page.query(name)
    if value and not AGENCY_CODE_PATTERN.fullmatch(value):
        raise Problem(400, "VALIDATION", f"{name}: {value!r} is not an agency code")
    return value


def _month(page: Page) -> str:
    value = page.query("month") or vietnam_month(dt.datetime.now(dt.UTC))
    if not _MONTH.fullmatch(value):
        raise Problem(400, "VALIDATION", f"month: {value!r} is not YYYY-MM")
    return value


def _months_back(month: str, count: int) -> list[str]:
    """`count` months ending with `month`, oldest first."""
    year, number = int(month[:4]), int(month[5:])
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{number:02d}")
        year, number = (year - 1, 12) if number == 1 else (year, number - 1)
    return months[::-1]


def _percent(
    figure: rpb.AgencyStatistics, name: Literal["on_time_percent", "same_day_percent"]
) -> float | None:
    return float(getattr(figure, name)) if figure.HasField(name) else None


def _charts(
    t: Translator, prefix: str, categories: list[str], figures: list[rpb.AgencyStatistics]
) -> list[str]:
    """The volume chart and the rates chart of `figures` (one per category), titled after
    `prefix`."""
    return [
        bar_chart(
            prefix + t("statistics.volume"),
            categories,
            [
                Series(t("statistics.sent"), [f.sent for f in figures]),
                Series(t("statistics.received"), [f.received for f in figures]),
            ],
        ),
        bar_chart(
            prefix + t("statistics.rates"),
            categories,
            [
                Series(t("statistics.on_time"), [_percent(f, "on_time_percent") for f in figures]),
                Series(
                    t("statistics.same_day"), [_percent(f, "same_day_percent") for f in figures]
                ),
            ],
            maximum=100.0,
        ),
    ]


async def statistics(console: Console, page: Page) -> Response:
    t, month, agency = page.t, _month(page), _agency(page, "agency")
    reports = console.ctx.services.reports
    response = await console.ctx.call(
        reports.GetAgencyStatistics, rpb.GetAgencyStatisticsRequest(month=month), page.admin
    )
    figures = list(response.agencies)
    volume, rates = _charts(t, "", [f.agency for f in figures], figures)
    trend: list[str] = []
    if agency:
        months = _months_back(month, 12)
        answers = await asyncio.gather(
            *(
                console.ctx.call(
                    reports.GetAgencyStatistics,
                    rpb.GetAgencyStatisticsRequest(month=m, agencies=[agency]),
                    page.admin,
                )
                for m in months
            )
        )
        series = [a.agencies[0] if a.agencies else rpb.AgencyStatistics() for a in answers]
        trend = _charts(t, f"{t('statistics.trend')} · {agency} · ", months, series)
    return console.show(
        page,
        "statistics.html",
        month=month,
        agency=agency,
        figures=figures,
        volume_chart=volume,
        rates_chart=rates,
        trend_charts=trend,
    )


STALLED_STEPS = {
    rpb.STALLED_STEP_NOT_ARRIVED: "not_arrived",
    rpb.STALLED_STEP_NOT_REGISTERED: "not_registered",
}


async def overdue(console: Console, page: Page) -> Response:
    agency = _agency(page, "agency")
    reports = console.ctx.services.reports
    due, stalled = await asyncio.gather(
        console.ctx.call(
            reports.ListOverdue, rpb.ListOverdueRequest(agency=agency, limit=500), page.admin
        ),
        console.ctx.call(
            reports.ListStalledSteps,
            rpb.ListStalledStepsRequest(agency=agency, limit=500),
            page.admin,
        ),
    )
    return console.show(
        page,
        "overdue.html",
        agency=agency,
        copies=due.copies,
        truncated=due.truncated,
        stalled=stalled.copies,
        stalled_truncated=stalled.truncated,
        step_name=STALLED_STEPS,
    )


def _names(enum: EnumDescriptor, prefix: str, *, unspecified: bool = False) -> dict[int, str]:
    """An enum's values by their names without `prefix`, lower case (the label suffixes:
    "kind.ministry", "state.queued", ...); the unspecified value only when asked for."""
    return {
        v.number: v.name.removeprefix(prefix).lower()
        for v in enum.values
        if v.number or unspecified
    }


KIND_NAMES = _names(dpb.AgencyKind.DESCRIPTOR, "AGENCY_KIND_")

_STATUS_KEYS = {
    dpb.AGENCY_STATUS_ACTIVE: "agencies.active",
    dpb.AGENCY_STATUS_CLOSED: "agencies.closed",
    dpb.AGENCY_STATUS_NOT_YET_VALID: "agencies.not_yet_valid",
}


async def agencies(console: Console, page: Page) -> Response:
    parent = _agency(page, "parent")
    include_closed = page.query("closed") != "0"
    token = page.query("page")
    response = await console.ctx.call(
        console.ctx.services.directory.ListAgencies,
        dpb.ListAgenciesRequest(
            parent_code=parent, include_closed=include_closed, page_size=200, page_token=token
        ),
        page.admin,
    )
    listed = list(response.agencies)
    # The reorganisations, as the directory records them: closed codes and their successors.
    reorganised = [a for a in listed if a.valid_to]
    return console.show(
        page,
        "agencies.html",
        parent=parent,
        include_closed=include_closed,
        agencies=listed,
        reorganised=reorganised,
        status_keys=_STATUS_KEYS,
        kind_names=KIND_NAMES,
        next_page=response.next_page_token,
    )


PAGES: list[tuple[str, Handler, list[str]]] = [
    ("/statistics", statistics, ["GET"]),
    ("/overdue", overdue, ["GET"]),
    ("/agencies", agencies, ["GET"]),
]


# ---- documents, timeline, dead letters (AdminService) -----------------------------------------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DELIVERY_STATES = _names(xpb.DeliveryState.DESCRIPTOR, "DELIVERY_STATE_")
_STATE_NUMBERS = {name: number for number, name in DELIVERY_STATES.items()}
RECALL_NAMES = _names(xpb.RecallState.DESCRIPTOR, "RECALL_STATE_", unspecified=True)
BUSINESS_TYPES = {
    number: name.title()
    for number, name in _names(
        cpb.BusinessType.DESCRIPTOR, "BUSINESS_TYPE_", unspecified=True
    ).items()
}

SIGNATURE_MODES = _names(cpb.SignatureMode.DESCRIPTOR, "SIGNATURE_MODE_")
SIGNATURE_FORMS = {
    number: {"manifest": "docaxis", "pades": "PAdES (PDF)", "xmldsig": "XML-DSig (edXML)"}[name]
    for number, name in _names(cpb.SignatureForm.DESCRIPTOR, "SIGNATURE_FORM_").items()
}
SIGNATURE_ROLES = _names(cpb.SignatureRole.DESCRIPTOR, "SIGNATURE_ROLE_")


def status_code(value: int) -> str:
    """The two-digit business status code of a StatusCode enum value ('' when unspecified)."""
    return f"{value:02d}" if value else ""


STATUS_CODES = tuple(status_code(v.number) for v in xpb.StatusCode.DESCRIPTOR.values if v.number)


def _date(page: Page, name: str) -> str:
    value = page.query(name)
    if value and not _DATE.fullmatch(value):
        raise Problem(400, "VALIDATION", f"{name}: {value!r} is not YYYY-MM-DD")
    return value


async def documents(console: Console, page: Page) -> Response:
    status = page.query("status")
    if status and status not in STATUS_CODES:
        raise Problem(400, "VALIDATION", f"status: {status!r} is not a business status code")
    state = page.query("state")
    if state and state not in _STATE_NUMBERS:
        raise Problem(400, "VALIDATION", f"state: {state!r} is not a delivery state")
    code = page.query("code")
    filters = {
        "code": code,
        "sender": _agency(page, "sender"),
        "recipient": _agency(page, "recipient"),
        "from": _date(page, "from"),
        "to": _date(page, "to"),
        "status": status,
        "state": state,
    }
    request = apb.SearchDocumentsRequest(
        # A DocumentId has commas ("<sender>,<date>,<number>/<notation>"); a code does not.
        document_id=code if "," in code else "",
        code="" if "," in code else code,
        sender=filters["sender"],
        recipient=filters["recipient"],
        submitted_from=filters["from"],
        submitted_to=filters["to"],
        latest_status=int(status) if status else 0,  # type: ignore[arg-type]
        state=_STATE_NUMBERS.get(state, 0),  # type: ignore[arg-type]
        page_size=50,
        page_token=page.query("page"),
    )
    response = await console.ctx.call(
        console.ctx.services.admin.SearchDocuments, request, page.admin
    )
    next_url = ""
    if response.next_page_token:
        next_url = "?" + urlencode({**filters, "page": response.next_page_token})
    return console.show(
        page,
        "documents.html",
        filters=filters,
        results=response.documents,
        next_url=next_url,
        status_codes=STATUS_CODES,
        states=list(_STATE_NUMBERS),
        state_name=DELIVERY_STATES,
        status_code=status_code,
    )


_UUID = re.compile(r"[0-9a-fA-F-]{36}")


async def document(console: Console, page: Page) -> Response:
    document_uuid = page.request.path_params["document_uuid"]
    if not _UUID.fullmatch(document_uuid):
        raise Problem(400, "VALIDATION", "not a document uuid")
    timeline, proof = await asyncio.gather(
        console.ctx.call(
            console.ctx.services.admin.GetDocumentTimeline,
            apb.GetDocumentTimelineRequest(document_uuid=document_uuid),
            page.admin,
        ),
        console.ledger.document_proof(document_uuid, page.admin),
    )
    return console.show(
        page,
        "document.html",
        timeline=timeline,
        proof=proof,
        hop_rows=hop_rows(timeline.hops),
        state_name=DELIVERY_STATES,
        status_code=status_code,
        recall_name=RECALL_NAMES,
        business_type=BUSINESS_TYPES,
        signature_mode=SIGNATURE_MODES,
        signature_form=SIGNATURE_FORMS,
        signature_role=SIGNATURE_ROLES,
    )


@dataclass(frozen=True, slots=True)
class HopRow:
    """One line of the document's per-hop timeline: a hub and what happened there."""

    hub: str
    kind: str  # "trace" (a hub it passed), "arrival" (came here from), "hand_over" (went to)
    at: Timestamp | None
    recipient: str = ""
    receipt_sha256: str = ""
    receipt_signed_at: Timestamp | None = None
    state: int = 0
    statuses_back: tuple[apb.StatusBack, ...] = ()
    # A hand-over not done yet: why its last attempt failed.
    failure: apb.HandoverFailure | None = None


def hop_rows(hops: apb.DocumentHops) -> list[HopRow]:
    """The hubs the document passed before this one (oldest first), then what this hub accepted
    from the previous hub, then what it handed over to next hubs."""
    rows = [HopRow(h.hub, "trace", h.at) for h in hops.trace]
    rows += [
        HopRow(
            a.from_hub,
            "arrival",
            a.accepted_at,
            recipient=a.recipient,
            receipt_sha256=a.receipt_sha256,
            statuses_back=tuple(a.statuses_back),
        )
        for a in hops.arrivals
    ]
    rows += [
        HopRow(
            h.next_hub,
            "hand_over",
            h.handed_over_at if h.HasField("handed_over_at") else None,
            recipient=h.recipient,
            receipt_sha256=h.receipt_sha256,
            receipt_signed_at=h.receipt_signed_at if h.HasField("receipt_signed_at") else None,
            state=h.state,
            statuses_back=tuple(h.statuses_back),
            failure=h.last_failure if h.HasField("last_failure") else None,
        )
        for h in hops.hand_overs
    ]
    return rows


async def dead_letters(console: Console, page: Page) -> Response:
    agency = _agency(page, "agency")
    peer = _hub(page.query("peer"))
    response = await console.ctx.call(
        console.ctx.services.admin.ListDeadLetters,
        apb.ListDeadLettersRequest(
            agency=agency, peer=peer, page_size=100, page_token=page.query("page")
        ),
        page.admin,
    )
    return console.show(
        page,
        "dead_letters.html",
        agency=agency,
        peer=peer,
        dead_letters=response.dead_letters,
        next_page=response.next_page_token,
        resent=page.query("resent"),
    )


async def resend(console: Console, page: Page) -> Response:
    delivery_id = page.request.path_params["delivery_id"]
    form = await page.request.form()
    reason = str(form.get("reason", "")).strip()
    await console.ctx.call(
        console.ctx.services.admin.ResendDeadLetter,
        apb.ResendDeadLetterRequest(delivery_id=delivery_id, reason=reason),
        page.admin,
    )
    log.info(
        "admin_resent_dead_letter",
        delivery_id=delivery_id,
        subject=page.admin.subject,
        serial=page.admin.serial,
    )
    return RedirectResponse(f"/admin/dead-letters?{urlencode({'resent': delivery_id})}", 303)


# ---- federation peers (AdminService.ListPeers) --------------------------------------------------

# Hub codes are lower-case letters, digits and dashes (services/directory/domain/hubs.py; the
# console sees the services only through their gRPC contracts).
_HUB = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
PEER_STATES = _names(apb.PeerState.DESCRIPTOR, "PEER_STATE_")
CIRCUITS = _names(apb.CircuitState.DESCRIPTOR, "CIRCUIT_STATE_")


def _hub(value: str) -> str:
    if value and not _HUB.fullmatch(value):
        raise Problem(400, "VALIDATION", f"peer: {value!r} is not a hub code")
    return value


async def peers(console: Console, page: Page) -> Response:
    response = await console.ctx.call(
        console.ctx.services.admin.ListPeers, apb.ListPeersRequest(), page.admin
    )
    return console.show(
        page,
        "peers.html",
        peers=response.peers,
        peer_state=PEER_STATES,
        circuit=CIRCUITS,
        resent=page.query("resent"),
        resent_count=page.query("count"),
    )


async def resend_peer(console: Console, page: Page) -> Response:
    hub = _hub(page.request.path_params["hub"])
    form = await page.request.form()
    reason = str(form.get("reason", "")).strip()
    response = await console.ctx.call(
        console.ctx.services.admin.ResendPeerDeadLetters,
        apb.ResendPeerDeadLettersRequest(hub=hub, reason=reason),
        page.admin,
    )
    log.info(
        "admin_resent_peer_dead_letters",
        hub=hub,
        resent=len(response.resends),
        subject=page.admin.subject,
        serial=page.admin.serial,
    )
    query = urlencode({"resent": hub, "count": str(len(response.resends))})
    return RedirectResponse(f"/admin/peers?{query}", 303)


PAGES += [
    ("/peers", peers, ["GET"]),
    ("/peers/{hub}/resend", resend_peer, ["POST"]),
]

PAGES += [
    ("/documents", documents, ["GET"]),
    ("/documents/{document_uuid}", document, ["GET"]),
    ("/dead-letters", dead_letters, ["GET"]),
    ("/dead-letters/{delivery_id}/resend", resend, ["POST"]),
]
