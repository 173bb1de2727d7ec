"""The admin console's parts that need no server: sessions, the two languages, the charts."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import urlencode

import grpc
import pytest
from docaxis.common.v1 import common_pb2 as cpb
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import exchange_service_pb2 as xpb
from starlette.requests import Request
from starlette.responses import Response

from gateway.admin import i18n
from gateway.admin.app import Console, Page, _environment, _safe_next, vietnam_time
from gateway.admin.charts import Series, bar_chart
from gateway.admin.ledger_proof import LedgerProofs
from gateway.admin.pages import (
    CIRCUITS,
    DELIVERY_STATES,
    KIND_NAMES,
    PEER_STATES,
    SIGNATURE_ROLES,
    STALLED_STEPS,
    STATUS_CODES,
    dead_letters,
    document,
    documents,
    hop_rows,
    resend_peer,
)
from gateway.admin.session import Session, SessionSigner
from gateway.auth import Administrator
from gateway.clients import Services
from gateway.metrics import GatewayMetrics
from gateway.problems import Problem
from gateway.rest.app import Context

NOW = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
CERT = b"\x01" * 32
OTHER_CERT = b"\x02" * 32


def test_a_session_opens_for_its_own_certificate_until_it_idles_out() -> None:
    signer = SessionSigner(dt.timedelta(minutes=30), key=b"k" * 32)
    cookie = signer.issue(CERT, NOW)
    session = signer.open(cookie, CERT, NOW + dt.timedelta(minutes=29))
    assert session is not None
    assert len(session.csrf) >= 32
    # Bound to the certificate that signed in: another certificate cannot use the cookie.
    assert signer.open(cookie, OTHER_CERT, NOW) is None
    assert signer.open(cookie, CERT, NOW + dt.timedelta(minutes=30)) is None
    # A refresh keeps the CSRF token and moves the expiry.
    refreshed = signer.issue(CERT, NOW + dt.timedelta(minutes=29), session.csrf)
    later = signer.open(refreshed, CERT, NOW + dt.timedelta(minutes=50))
    assert later is not None
    assert later.csrf == session.csrf


def test_a_signed_out_session_opens_no_more_though_its_cookie_has_not_expired() -> None:
    signer = SessionSigner(dt.timedelta(minutes=30), key=b"k" * 32)
    cookie = signer.issue(CERT, NOW)
    session = signer.open(cookie, CERT, NOW)
    assert session is not None
    refreshed = signer.issue(CERT, NOW + dt.timedelta(minutes=5), session.csrf)
    other = signer.issue(CERT, NOW)  # another sign-in (another browser) stays open
    signer.end(session, NOW + dt.timedelta(minutes=6))
    for old in (cookie, refreshed):
        assert signer.open(old, CERT, NOW + dt.timedelta(minutes=7)) is None
    assert signer.open(other, CERT, NOW + dt.timedelta(minutes=7)) is not None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # the MAC
        lambda c: "x" + c,  # the payload
        lambda c: c.replace(".", ""),
        lambda c: "",
    ],
)
def test_a_forged_or_damaged_cookie_opens_nothing(tamper: object) -> None:
    signer = SessionSigner(dt.timedelta(minutes=30), key=b"k" * 32)
    cookie = signer.issue(CERT, NOW)
    assert callable(tamper)
    assert signer.open(tamper(cookie), CERT, NOW) is None
    # Another gateway process (another key) does not accept it either.
    assert SessionSigner(dt.timedelta(minutes=30)).open(cookie, CERT, NOW) is None


def test_both_languages_have_every_label_every_template_uses() -> None:
    vi, en = i18n.MESSAGES[i18n.Language.VI], i18n.MESSAGES[i18n.Language.EN]
    assert vi.keys() == en.keys()
    assert (
        i18n.STATUS_LABELS[i18n.Language.VI].keys() == i18n.STATUS_LABELS[i18n.Language.EN].keys()
    )
    templates = Path(i18n.__file__).parent / "templates"
    used = {
        key
        for template in templates.glob("*.html")
        for key in re.findall(r"""t\(\s*["']([a-z_.]+)["']\s*\)""", template.read_text())
    }
    pages = (templates.parent / "pages.py").read_text()
    used |= set(re.findall(r"""t\(\s*"([a-z_.]+)"\s*\)""", pages))
    # The status-key table ("agencies.active", ...), not template names.
    used |= {k for k in re.findall(r'"([a-z_]+\.[a-z_]+)",?\n', pages) if not k.endswith("html")}
    assert used, "no labels found: the pattern is wrong"
    # Labels the templates build from enum values.
    used |= {f"state.{name}" for name in [*DELIVERY_STATES.values(), "unknown"]}
    used |= {f"kind.{name}" for name in KIND_NAMES.values()}
    used |= {f"step.{name}" for name in STALLED_STEPS.values()}
    used |= {f"signatures.{name}" for name in SIGNATURE_ROLES.values()}
    used |= {f"peers.state.{name}" for name in [*PEER_STATES.values(), "unspecified"]}
    used |= {f"peers.circuit.{name}" for name in CIRCUITS.values()}
    used |= {f"hops.{kind}" for kind in ("trace", "arrival", "hand_over")}
    used |= {
        f"recall.{v.name.removeprefix('RECALL_STATE_').lower()}"
        for v in xpb.RecallState.DESCRIPTOR.values
    }
    assert used - vi.keys() == set()
    translate = i18n.Translator(i18n.Language.EN)
    assert translate("nav.documents") == "Documents"
    assert translate.status("06") == "06 · Completed"
    assert i18n.Translator(i18n.Language.VI).other is i18n.Language.EN
    assert i18n.language_of("fr") is None


def test_a_chart_scales_bars_escapes_labels_and_is_valid_svg() -> None:
    svg = bar_chart(
        "Tỷ lệ <đúng hạn>",
        ["000.00.00.H45", "<script>"],
        [Series("Đúng hạn", [50.0, None]), Series("Trong ngày", [100.0, 25.0])],
        maximum=100.0,
    )
    root = ET.fromstring(svg)  # noqa: S314 - our own output; well-formed: no text breaks out
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    bars = [
        float(rect.attrib["width"])
        for rect in root.iter("{http://www.w3.org/2000/svg}rect")
        if rect.attrib.get("y") != "4"  # the legend's swatches
    ]
    assert bars == [210.0, 420.0, 105.0]  # 50 %, 100 %, 25 % of 420 px; None draws no bar
    with pytest.raises(ValueError, match="values"):
        bar_chart("x", ["a"], [Series("s", [1.0, 2.0])])


def test_dates_show_in_vietnam_time_and_sign_in_returns_only_to_the_console() -> None:
    assert vietnam_time(NOW) == "22/11/2026 10:00:00"
    assert vietnam_time(None) == "–"
    assert _safe_next("/admin/overdue") == "/admin/overdue"
    for hostile in ("https://evil.example/", "//evil.example/admin/", "/admin/\\evil", "/v1/x"):
        assert _safe_next(hostile) == "/admin/documents"


class _SearchOnly:
    """The console as documents() uses it: one SearchDocuments call, then a page to show."""

    def __init__(self) -> None:
        self.sent: list[apb.SearchDocumentsRequest] = []
        self.shown: dict[str, Any] = {}
        self.ctx = self
        self.services = SimpleNamespace(admin=SimpleNamespace(SearchDocuments=None))

    async def call(self, rpc: object, message: Any, principal: object) -> Any:
        self.sent.append(message)
        return apb.SearchDocumentsResponse(next_page_token="p2")

    def show(self, page: Page, template: str, **values: Any) -> Response:
        self.shown = values
        return Response()


def _page(query: dict[str, str]) -> Page:
    scope = {
        "type": "http",
        "path": "/admin/documents",
        "headers": [],
        "query_string": urlencode(query).encode(),
    }
    return Page(
        Request(scope),
        Administrator("CN=admin", "1"),
        Session(CERT, "csrf", NOW),
        i18n.Translator(i18n.Language.EN),
    )


async def test_the_search_form_becomes_one_search_request() -> None:
    console = _SearchOnly()
    filters = {
        "code": "000.00.00.H45,2026/11/20,12/TEST-VP",
        "sender": "000.00.00.H45",
        "recipient": "000.00.01.H45",
        "from": "2026-11-01",
        "to": "2026-11-30",
        "status": "06",
        "state": "dead_lettered",
    }
    await documents(cast(Console, console), _page(filters))
    (sent,) = console.sent
    assert sent == apb.SearchDocumentsRequest(
        document_id=filters["code"],  # a DocumentId (commas), not a number/notation
        sender="000.00.00.H45",
        recipient="000.00.01.H45",
        submitted_from="2026-11-01",
        submitted_to="2026-11-30",
        latest_status=xpb.STATUS_CODE_COMPLETED,
        state=xpb.DELIVERY_STATE_DEAD_LETTERED,
        page_size=50,
    )
    assert console.shown["status_codes"] == STATUS_CODES
    assert STATUS_CODES == ("01", "02", "03", "04", "05", "06", "13", "15", "16")
    assert "dead_lettered" in console.shown["states"]
    assert console.shown["next_url"] == "?" + urlencode({**filters, "page": "p2"})

    await documents(cast(Console, console), _page({"code": "12/TEST-VP"}))
    assert console.sent[-1].code == "12/TEST-VP"
    assert console.sent[-1].document_id == ""


@pytest.mark.parametrize(
    "query",
    [{"status": "07"}, {"state": "lost"}, {"sender": "not a code"}, {"from": "20/11/2026"}],
)
async def test_a_bad_search_filter_is_refused_before_any_call(query: dict[str, str]) -> None:
    console = _SearchOnly()
    with pytest.raises(Problem) as refused:
        await documents(cast(Console, console), _page(query))
    assert refused.value.status == 400
    assert console.sent == []


def _rendered(template: str, path: str, **values: Any) -> str:
    """A page's HTML as the console renders it (English, nobody signed in)."""
    return (
        _environment()
        .get_template(template)
        .render(
            t=i18n.Translator(i18n.Language.EN),
            lang="en",
            switch_url="",
            path=path,
            admin=None,
            **values,
        )
    )


def _row(page: str, marker: str) -> str:
    """The table row of `page` from `marker` (an attribute of its <tr>) to its end."""
    row = page[page.index(marker) :]
    return row[: row.index("</tr>")]


class _NotFound(grpc.aio.AioRpcError):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata())


@dataclass
class _FakeAdmin:
    """AdminService as the document page asks it: `timeline`, for the document asked about."""

    timeline: apb.GetDocumentTimelineResponse
    asked: list[str] = field(default_factory=list)

    async def GetDocumentTimeline(
        self, request: apb.GetDocumentTimelineRequest, **_: Any
    ) -> apb.GetDocumentTimelineResponse:
        self.asked.append(request.document_uuid)
        return self.timeline


class _EmptyLedger:
    """LedgerService for a document it has logged nothing about."""

    async def GetDocumentEvents(self, request: Any, **_: Any) -> Any:
        raise _NotFound()


@dataclass
class _FakeServices:
    admin: _FakeAdmin
    ledger: _EmptyLedger = field(default_factory=_EmptyLedger)
    timeout_s: float = 5.0


DOCUMENT_UUID = "0b6f6c1e-0000-4000-8000-00000000000d"


async def _document_page(timeline: apb.GetDocumentTimelineResponse) -> str:
    """The document page's HTML as the console's page handler renders it (English)."""
    admin = _FakeAdmin(timeline)
    context = Context(cast("Services", _FakeServices(admin)), cast("Any", None), GatewayMetrics())
    console = Console(context, SessionSigner(dt.timedelta(minutes=30)), LedgerProofs(context))
    scope = {
        "type": "http",
        "path": f"/admin/documents/{DOCUMENT_UUID}",
        "headers": [],
        "query_string": b"",
        "path_params": {"document_uuid": DOCUMENT_UUID},
    }
    page = Page(
        Request(scope),
        Administrator("CN=admin", "1"),
        Session(CERT, "csrf", NOW),
        i18n.Translator(i18n.Language.EN),
    )
    response = await document(console, page)
    assert admin.asked == [DOCUMENT_UUID]
    assert response.status_code == 200
    return bytes(response.body).decode()


async def test_the_document_page_shows_the_trace_id_when_there_is_one() -> None:
    """The trace id to look the document's path up in the tracing tool; no row without one."""
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    shown = await _document_page(apb.GetDocumentTimelineResponse(trace_id=trace_id))
    assert re.search(rf'<dt>Trace id</dt><dd><code id="trace-id">{trace_id}</code></dd>', shown)
    assert "trace-id" not in await _document_page(apb.GetDocumentTimelineResponse())


async def test_the_document_page_shows_who_signed_what_and_an_unsigned_document_plainly() -> None:
    """Each verified signature with its form, role, signer and check; transport-attested
    documents are marked UNSIGNED."""
    signed = apb.GetDocumentTimelineResponse(
        verification=cpb.Verification(
            mode=cpb.SIGNATURE_MODE_SIGNED,
            checks=[
                cpb.SignatureCheck(
                    form=cpb.SIGNATURE_FORM_PADES,
                    role=cpb.SIGNATURE_ROLE_PERSON,
                    attachment="cong-van.pdf",
                    field="ChuKyNguoiKy",
                    full_name="Trần Văn An",
                    agency_code="000.00.11.H40",
                    algorithm="ecdsa-sha256",
                    serial="1a2b",
                    checked="chain to the axis's trust anchors at the signing time",
                )
            ],
        )
    )
    shown = await _document_page(signed)
    assert 'data-mode="signed"' in shown
    assert "PAdES (PDF) · cong-van.pdf (ChuKyNguoiKy)" in shown
    assert "Official" in shown
    assert "Trần Văn An" in shown
    attested = await _document_page(
        apb.GetDocumentTimelineResponse(
            verification=cpb.Verification(mode=cpb.SIGNATURE_MODE_TRANSPORT_ATTESTED)
        )
    )
    assert "UNSIGNED: accepted on the sender&#39;s mutual-TLS identity" in attested


def _stamp(value: dt.datetime) -> Any:
    stamp = cast(Any, apb.HubHop().at)
    stamp.FromDatetime(value)
    return stamp


async def test_the_document_page_shows_each_hop_with_its_receipt_and_the_statuses_back() -> None:
    """At the national hub: the trace (province A), the copy accepted from A with the receipt
    this hub signed and the status handed back to A, the copy handed over to B with B's receipt
    and B's statuses; a status not yet handed back says so."""
    hops = apb.DocumentHops(
        origin_document_uuid="0b6f6c1e-0000-4000-8000-000000000001",
        trace=[apb.HubHop(hub="province-a", at=_stamp(NOW))],
        arrivals=[
            apb.Arrival(
                delivery_id="d-in",
                recipient="000.00.13.H46",
                from_hub="province-a",
                accepted_at=_stamp(NOW + dt.timedelta(seconds=2)),
                receipt_sha256="ab" * 32,
                statuses_back=[
                    apb.StatusBack(
                        code=xpb.STATUS_CODE_ARRIVED,
                        occurred_at=_stamp(NOW),
                        at=_stamp(NOW + dt.timedelta(seconds=9)),
                    ),
                    apb.StatusBack(code=xpb.STATUS_CODE_ACCEPTED, occurred_at=_stamp(NOW)),
                ],
            )
        ],
        hand_overs=[
            apb.HandOver(
                delivery_id="d-out",
                recipient="000.00.13.H46",
                next_hub="province-b",
                state=xpb.DELIVERY_STATE_ACKNOWLEDGED,
                handed_over_at=_stamp(NOW + dt.timedelta(seconds=3)),
                receipt_sha256="cd" * 32,
                receipt_signed_at=_stamp(NOW + dt.timedelta(seconds=3)),
                statuses_back=[
                    apb.StatusBack(
                        code=xpb.STATUS_CODE_ARRIVED,
                        occurred_at=_stamp(NOW),
                        at=_stamp(NOW + dt.timedelta(seconds=8)),
                    )
                ],
            ),
            apb.HandOver(
                delivery_id="d-wait",
                recipient="<script>x</script>",
                next_hub="province-c",
                state=xpb.DELIVERY_STATE_QUEUED,
                last_failure=apb.HandoverFailure(
                    reason="PEER_RECEIPT_INVALID", detail="SIGNER_MISMATCH: <province-b>"
                ),
            ),
        ],
    )
    rows = hop_rows(hops)
    assert [(r.hub, r.kind) for r in rows] == [
        ("province-a", "trace"),
        ("province-a", "arrival"),
        ("province-b", "hand_over"),
        ("province-c", "hand_over"),
    ]
    shown = await _document_page(apb.GetDocumentTimelineResponse(hops=hops))
    table = shown[shown.index('<table id="hops">') :]
    table = table[: table.index("</table>")]
    hop_lines = re.findall(r'<tr class="hop hop-(\w+)" data-hub="([\w-]+)">', table)
    assert hop_lines == [
        ("trace", "province-a"),
        ("arrival", "province-a"),
        ("hand_over", "province-b"),
        ("hand_over", "province-c"),
    ]
    assert "Accepted from the previous hub" in table
    assert "abababababababab…" in table
    assert "cdcdcdcdcdcdcdcd…" in table
    assert "signed 22/11/2026 10:00:03" in table  # B's receipt, in Vietnam time
    assert "01 · Arrived · 22/11/2026 10:00:09" in table  # handed back to A
    assert '03 · Registered · <span class="badge wait">waiting</span>' in table
    assert "01 · Arrived · 22/11/2026 10:00:08" in table  # came back from B
    # Not handed over yet: its state instead of a time, and why its last hand-over failed (the
    # one handed over shows none); hostile text is escaped.
    assert "Queued" in table
    waiting = _row(table, 'data-hub="province-c"')
    assert "Last hand-over failed with</span> <code>PEER_RECEIPT_INVALID</code>" in waiting
    assert "SIGNER_MISMATCH: &lt;province-b&gt;" in waiting
    assert 'class="cause"' not in _row(table, 'data-hub="province-b"')
    assert "&lt;script&gt;x&lt;/script&gt;" in table
    assert "<script>" not in table
    # A document that never crossed a hub has no hops section.
    assert 'id="hops"' not in await _document_page(apb.GetDocumentTimelineResponse())


def _peers_page(response: apb.ListPeersResponse, **extra: Any) -> str:
    values: dict[str, Any] = {"resent": "", "resent_count": ""} | extra
    return _rendered(
        "peers.html",
        "/admin/peers",
        csrf="token-1",
        peers=response.peers,
        peer_state=PEER_STATES,
        circuit=CIRCUITS,
        **values,
    )


def test_the_dead_letters_page_shows_a_failed_hand_overs_cause_beside_the_reason() -> None:
    """MAX_PUSHES_EXCEEDED with the cause an operator must fix (escaped: a peer's words); a copy
    whose DMS never acknowledged shows the reason alone."""
    failed = apb.DeadLetter(
        delivery_id="d-peer",
        reason="MAX_PUSHES_EXCEEDED",
        push_count=20,
        dead_lettered_at=_stamp(NOW),
        cause=apb.HandoverFailure(
            reason="PEER_RECEIPT_INVALID", detail="hub national's receipt: <SIGNER_MISMATCH>"
        ),
    )
    dropped = apb.DeadLetter(
        delivery_id="d-dms", reason="MAX_PUSHES_EXCEEDED", dead_lettered_at=_stamp(NOW)
    )
    shown = _rendered(
        "dead_letters.html",
        "/admin/dead-letters",
        csrf="token-1",
        agency="",
        peer="",
        dead_letters=[failed, dropped],
        next_page="",
        resent="",
    )
    peer_row = _row(shown, 'data-delivery="d-peer"')
    assert "<code>MAX_PUSHES_EXCEEDED</code>" in peer_row
    assert "Last hand-over failed with" in peer_row
    assert "<code>PEER_RECEIPT_INVALID</code>" in peer_row
    assert "hub national&#39;s receipt: &lt;SIGNER_MISMATCH&gt;" in peer_row
    dms_row = _row(shown, 'data-delivery="d-dms"')
    assert "<code>MAX_PUSHES_EXCEEDED</code>" in dms_row
    assert 'class="cause"' not in dms_row


def test_the_peers_page_shows_each_peers_figures_errors_and_a_resend_for_its_dead_letters() -> None:
    listed = apb.ListPeersResponse(
        peers=[
            apb.Peer(
                hub="national",
                kind="docaxis",
                address="10.0.0.1:50051",
                state=apb.PEER_STATE_UP,
                circuit=apb.CIRCUIT_STATE_CLOSED,
                last_contact=_stamp(NOW),
                forwarded=40,
                forwarded_per_minute=6.5,
                received_per_minute=1.25,
            ),
            apb.Peer(
                hub="province-b",
                kind="national-axis",
                state=apb.PEER_STATE_DOWN,
                circuit=apb.CIRCUIT_STATE_OPEN,
                queue_depth=7,
                oldest_queued_at=_stamp(NOW),
                oldest_age_s=3725.4,
                dead_letters=2,
                last_failure_at=_stamp(NOW),
                last_error="<b>UNAVAILABLE</b>",
            ),
        ]
    )
    shown = _peers_page(listed)
    national = _row(shown, 'data-hub="national"')
    assert 'data-state="up"' in national
    assert "Closed" in national
    assert "6.5" in national
    assert "1.2" in national
    assert "22/11/2026 10:00:00" in national  # last contact, Vietnam time
    b = shown[shown.index('data-hub="province-b" data-state') :]
    assert 'data-state="down"' in b
    assert '<td class="n queue-depth">7</td>' in b
    assert "3725 s" in b
    assert '<a href="/admin/dead-letters?peer=province-b">2</a>' in b
    assert "&lt;b&gt;UNAVAILABLE&lt;/b&gt;" in shown
    assert "<b>UNAVAILABLE" not in shown
    # A resend of the peer's dead letters is a form with the session's CSRF token and a reason;
    # the peer without dead letters has none.
    assert 'action="/admin/peers/province-b/resend"' in shown
    assert 'name="csrf" value="token-1"' in shown
    assert 'action="/admin/peers/national/resend"' not in shown
    assert 'id="no-peers"' in _peers_page(apb.ListPeersResponse())
    notice = _peers_page(apb.ListPeersResponse(), resent="province-b", resent_count="2")
    assert 'id="peer-resent-notice"' in notice


class _NoCalls:
    """A console that must not be asked anything."""

    def __init__(self) -> None:
        self.ctx = self
        self.services = SimpleNamespace(admin=SimpleNamespace())

    async def call(self, rpc: object, message: Any, principal: object) -> Any:
        raise AssertionError("no call expected")


async def test_a_bad_hub_code_is_refused_before_any_call() -> None:
    listing = _page({"peer": "National Hub"})
    with pytest.raises(Problem) as refused:
        await dead_letters(cast(Console, _NoCalls()), listing)
    assert refused.value.status == 400
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/admin/peers/x/resend",
        "headers": [],
        "query_string": b"",
        "path_params": {"hub": "../documents"},
    }
    page = Page(
        Request(scope),
        Administrator("CN=admin", "1"),
        Session(CERT, "csrf", NOW),
        i18n.Translator(i18n.Language.EN),
    )
    with pytest.raises(Problem) as refused:
        await resend_peer(cast(Console, _NoCalls()), page)
    assert refused.value.status == 400
