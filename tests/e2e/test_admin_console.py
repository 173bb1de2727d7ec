"""The admin console in headless Chromium (Debian's chromium, driven by Playwright) against a
running `docaxis run` and `python -m gateway`: certificate sign-in, search, a document's
timeline with its ledger proof verified by the gateway, statistics charts, overdue copies, a
dead letter resent (and delivered again), the directory with a reorganisation, Vietnamese and
English. Screenshots go to $DOCAXIS_SCREENSHOTS (`make screenshots` refreshes docs/screenshots)
or to the test's temporary folder.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from docaxis.directory.v1 import directory_service_pb2 as dpb
from docaxis.directory.v1 import directory_service_pb2_grpc as dpb_grpc
from docaxis.exchange.v1 import admin_service_pb2 as apb
from docaxis.exchange.v1 import admin_service_pb2_grpc as apb_grpc
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from playwright._impl._api_structures import ClientCertificate
from playwright.async_api import BrowserContext, async_playwright

from services.common.postgres import recreate_database
from tests.conftest import VIETNAM, make_header
from tests.e2e.conftest import register
from tests.e2e.processes import AxisProcess, GatewayProcess
from tests.infra import SuiteServices
from tests.pki import KeyPair, SuitePki
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass(frozen=True, slots=True)
class Scene:
    """What the test put on the axis before opening the console."""

    sender: str
    r1: str
    r2: str
    stuck: str
    old: str
    merged_into: str
    answered_uuid: str
    answered_number: str
    dead_uuid: str
    dead_delivery: str


async def _stage(axis: AxisProcess) -> Scene:
    """Two answered copies (one completed, one left overdue), a copy fetched past the push limit
    (dead-lettered), and a merger in the directory."""
    sender, r1, r2, stuck, old, new = await register(axis, 6)
    channel, _ = axis.admin_channel()
    async with channel:
        today = dt.datetime.now(VIETNAM).date()
        await dpb_grpc.DirectoryServiceStub(channel).RecordReorganisation(
            dpb.RecordReorganisationRequest(
                reorganisation=dpb.Reorganisation(
                    kind=dpb.REORGANISATION_KIND_MERGE,
                    effective_date=(today - dt.timedelta(days=1)).isoformat(),
                    old_codes=[old],
                    new_codes=[new],
                    note="Sáp nhập theo Nghị quyết 2025",
                )
            ),
            timeout=10,
        )
        number = str(uuid.uuid4().int % 10**6)
        header = make_header(sender, [r1, r2], number=number, subject="Về việc kiểm thử giao diện")
        header.promulgation_date = (today - dt.timedelta(days=20)).isoformat()
        header.due_date = (today - dt.timedelta(days=10)).isoformat()
        async with axis.client(sender) as s, axis.client(r1) as one, axis.client(r2) as two:
            answered = (await s.submit(f"c-{uuid.uuid4()}", header)).receipt
            for dms in (one, two):
                pending = await dms.list_pending()
                (item,) = pending.items
                await dms.fetch(item)
                await dms.acknowledge_item(item)
            delivery = next(
                r.delivery_id
                for r in (await s.track(answered.document_uuid)).recipients
                if r.effective_recipient == r1
            )
            for code in (pb.STATUS_CODE_ACCEPTED, pb.STATUS_CODE_COMPLETED):
                await one.report_status(delivery, code, status_id=f"s-{code}")
            stuck_header = make_header(sender, [stuck], subject="Văn bản không được xác nhận")
            dead = (await s.submit(f"c-{uuid.uuid4()}", stuck_header)).receipt
        admin = apb_grpc.AdminServiceStub(channel)
        async with axis.client(stuck) as never_acknowledges:
            # Fetched past DOCAXIS_MAX_PUSHES (2) and never acknowledged: delivery gives up.
            for _ in range(3):
                pending = await never_acknowledges.list_pending()
                for item in pending.items:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await never_acknowledges.fetch(item)

            async def dead_lettered() -> bool:
                listed = await admin.ListDeadLetters(
                    apb.ListDeadLettersRequest(agency=stuck), timeout=10
                )
                return any(
                    x.document.document_uuid == dead.document_uuid for x in listed.dead_letters
                )

            await eventually(dead_lettered, within=30)
        listed = await admin.ListDeadLetters(apb.ListDeadLettersRequest(agency=stuck), timeout=10)
    return Scene(
        sender,
        r1,
        r2,
        stuck,
        old,
        new,
        answered.document_uuid,
        number,
        dead.document_uuid,
        listed.dead_letters[0].delivery_id,
    )


@pytest.fixture
async def console(
    services: SuiteServices, pki: SuitePki, tmp_path: Path, ledger_key_file: Path
) -> AsyncIterator[tuple[AxisProcess, GatewayProcess, Scene]]:
    database = await recreate_database(services.database_url, "docaxis_console")
    axis = AxisProcess(
        database,
        services.amqp_url,
        tmp_path,
        ledger_key_file,
        pki=pki,
        extra_env={"DOCAXIS_MAX_PUSHES": "2"},
    )
    await axis.start()
    gateway = GatewayProcess(axis, tmp_path)
    try:
        await gateway.start()
        yield axis, gateway, await _stage(axis)
    finally:
        assert await gateway.terminate() == 0, gateway.logs()
        assert await axis.terminate() == 0, axis.logs()


def _spki_pin(certificate_file: Path) -> str:
    """Chromium trusts the gateway's own key (and nothing else extra) by its SPKI hash."""
    leaf = x509.load_pem_x509_certificates(certificate_file.read_bytes())[0]
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return base64.b64encode(digest.finalize()).decode()


def _screenshots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DOCAXIS_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_the_admin_console_in_headless_chromium(
    console: tuple[AxisProcess, GatewayProcess, Scene], pki: SuitePki, tmp_path: Path
) -> None:
    axis, gateway, scene = console
    base = f"https://127.0.0.1:{gateway.port}"
    shots = _screenshots(tmp_path)
    admin_pair: KeyPair = pki.write_pair("console-admin", pki.admin_certificate)
    agency_pair = pki.write_pair(f"console-{scene.sender}", pki.agency(scene.sender).agency)
    # Playwright presents client certificates through its own TLS client, which must trust the
    # demo CA; Chromium itself trusts the gateway's key by pin.
    os.environ["NODE_EXTRA_CA_CERTS"] = str(pki.bundle)
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--ignore-certificate-errors-spki-list={_spki_pin(pki.server.certificate)}",
            ],
        )

        async def context(pair: KeyPair | None) -> BrowserContext:
            certificates: list[ClientCertificate] = (
                [{"origin": base, "certPath": str(pair.certificate), "keyPath": str(pair.key)}]
                if pair is not None
                else []
            )
            return await browser.new_context(
                client_certificates=certificates,
                viewport={"width": 1360, "height": 900},
                locale="vi-VN",
            )

        # Without a certificate, and with an agency's: no way in.
        anonymous = await context(None)
        page = await anonymous.new_page()
        answer = await page.goto(f"{base}/admin/documents")
        assert answer is not None
        assert answer.status == 401
        assert "chứng thư số" in await page.locator("#login-refused").inner_text()
        await anonymous.close()
        agency = await context(agency_pair)
        page = await agency.new_page()
        answer = await page.goto(f"{base}/admin/login")
        assert answer is not None
        assert answer.status == 403
        assert "quyền quản trị" in await page.locator("#login-refused").inner_text()
        await agency.close()

        admin = await context(admin_pair)
        page = await admin.new_page()
        # Any console page sends a signed-out administrator to the sign-in page first.
        await page.goto(f"{base}/admin/statistics")
        assert page.url.startswith(f"{base}/admin/login")
        assert "quản trị viên" in await page.locator("#certificate-subject").inner_text()
        await page.screenshot(path=shots / "01-login.png", full_page=True)
        await page.click("#sign-in")
        await page.wait_for_load_state()
        await page.wait_for_url(f"{base}/admin/statistics")

        # Search: by sender, then by number/notation.
        await page.goto(f"{base}/admin/documents?sender={scene.sender}")
        rows = page.locator("#results tr.result")
        assert await rows.count() == 2
        await page.fill("#f-code", f"{scene.answered_number}/TEST-VP")
        async with page.expect_navigation():
            await page.click("#search")
        assert await rows.count() == 1
        assert "Về việc kiểm thử giao diện" in await rows.first.inner_text()
        await page.screenshot(path=shots / "02-search.png", full_page=True)

        # The timeline: both copies with their statuses, and the ledger proof verified by the
        # gateway (once a checkpoint covers the latest event).
        await rows.first.locator("a.open").click()
        await page.wait_for_url(f"{base}/admin/documents/{scene.answered_uuid}")

        async def verified() -> bool:
            await page.reload()
            state = await page.locator("#ledger-proof").get_attribute("data-state")
            return state == "verified"

        await eventually(verified, within=30)
        one = page.locator(f'section.recipient[data-recipient="{scene.r1}"]')
        assert "06 · Hoàn thành" in await one.inner_text()
        two = page.locator(f'section.recipient[data-recipient="{scene.r2}"]')
        assert "01 · Đã đến" in await two.inner_text()
        await page.screenshot(path=shots / "03-timeline.png", full_page=True)

        # Statistics: charts for the month, and the sender's 12-month trend.
        await page.goto(f"{base}/admin/statistics?agency={scene.sender}")
        assert await page.locator("#volume-chart svg").count() == 1
        assert await page.locator("#rates-chart svg").count() == 1
        assert await page.locator("#trend-charts svg").count() == 2
        assert scene.sender in await page.locator("#statistics-table").inner_text()
        await page.screenshot(path=shots / "04-statistics.png", full_page=True)

        # Overdue: r2 never completed the copy whose due date passed; r1 did.
        await page.goto(f"{base}/admin/overdue?agency={scene.sender}")
        overdue = await page.locator("#overdue-table").inner_text()
        assert scene.r2 in overdue
        assert scene.r1 not in overdue
        # Stalled steps (no 01 within an hour, no 03 by the end of the working day) have their
        # own section; nothing here is late yet (tests/integration/test_reports.py has answers).
        assert await page.locator("#no-stalled, #stalled-table").count() == 1
        await page.screenshot(path=shots / "05-overdue.png", full_page=True)

        # Dead letters: resend with a reason; the copy is delivered again and the timeline
        # names the administrator.
        await page.goto(f"{base}/admin/dead-letters?agency={scene.stuck}")
        row = page.locator(f'tr.dead-letter[data-delivery="{scene.dead_delivery}"]')
        assert "MAX_PUSHES_EXCEEDED" in await row.inner_text()
        await page.screenshot(path=shots / "06-dead-letters.png", full_page=True)
        # A resend without the session's CSRF token is refused.
        forged = await admin.request.post(
            f"{base}/admin/dead-letters/{scene.dead_delivery}/resend",
            form={"reason": "forged"},
            headers={"Origin": base},
        )
        assert forged.status == 403
        await row.locator('input[name="reason"]').fill("Đơn vị nhận đã khắc phục phần mềm")
        await row.locator("button").click()
        await page.wait_for_selector("#resent-notice")
        assert (
            await page.locator(f'tr.dead-letter[data-delivery="{scene.dead_delivery}"]').count()
            == 0
        )
        async with axis.client(scene.stuck) as dms:

            async def delivered_again() -> bool:
                return any(
                    i.delivery_id == scene.dead_delivery for i in (await dms.list_pending()).items
                )

            await eventually(delivered_again, within=30)
        await page.goto(f"{base}/admin/documents/{scene.dead_uuid}")
        resends = await page.locator("#resends").inner_text()
        assert "Đơn vị nhận đã khắc phục phần mềm" in resends
        assert "quản trị viên" in resends

        # Federation peers: this hub has none (tests/unit/gateway has the figures' page, and
        # tests/integration/test_federation_operations.py the figures of three hubs).
        answer = await page.goto(f"{base}/admin/peers")
        assert answer is not None
        assert answer.status == 200
        assert await page.locator("#no-peers").count() == 1
        assert await page.locator('nav a[aria-current="page"]').inner_text() == "Trục kết nối"

        # The directory shows the merger.
        await page.goto(f"{base}/admin/agencies")
        assert "Sở, ban, ngành" in await page.locator("#agencies-table").inner_text()
        reorganisations = page.locator("#reorganisations-table")
        assert (
            scene.merged_into
            in await reorganisations.locator(f'tr:has-text("{scene.old}")').inner_text()
        )
        await page.screenshot(path=shots / "07-agencies.png", full_page=True)
        # Unticking "include closed codes" leaves the closed code out.
        await page.uncheck('input[type="checkbox"][name="closed"]')
        async with page.expect_navigation():
            await page.click('form.filters button[type="submit"]')
        assert scene.old not in await page.locator("#agencies-table").inner_text()
        assert scene.merged_into in await page.locator("#agencies-table").inner_text()

        # English on request, remembered across pages; Vietnamese is the default.
        assert await page.locator("nav").inner_text() != ""
        assert "Văn bản" in await page.locator("nav").inner_text()
        async with page.expect_navigation():
            await page.click("#lang-switch")
        assert "Documents" in await page.locator("nav").inner_text()
        await page.goto(f"{base}/admin/documents/{scene.answered_uuid}")
        assert "Document timeline" in await page.locator("h1").inner_text()
        assert "06 · Completed" in await page.locator("main").inner_text()
        await page.screenshot(path=shots / "08-timeline-english.png", full_page=True)

        # Signing out ends the session: the next page asks to sign in again.
        await page.click("#logout")
        await page.wait_for_url(f"{base}/admin/login")
        await page.goto(f"{base}/admin/documents")
        assert page.url.startswith(f"{base}/admin/login")
        await admin.close()
        await browser.close()
