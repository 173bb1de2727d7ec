"""OCSP's network waits are not the attachment checks' (signatures.ATTACHMENT_CHECKS): a PDF
whose signers' responder hangs waits for it, the PDFs queued behind it do not."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import socket
import threading
from collections.abc import Iterator

import pytest

from docaxis_client.trust.demo_pki import DemoCA
from docaxis_client.trust.ocsp import OcspChecker
from docaxis_client.trust.pdf import demo_pdf, sign_pdf
from docaxis_client.vietnam import today_in_vietnam
from services.directory.domain.codes import code_problem
from services.exchange.domain.model import Submission
from services.exchange.domain.verification import SignatureMode
from services.exchange.service_layer import signatures
from services.exchange.service_layer.handlers import ExchangeHandlers
from services.exchange.service_layer.signatures import SignatureVerifier
from tests.fakes import FakeDirectoryLookup, FakeDocumentStore
from tests.unit.exchange.builders import EDUCATION, HEALTH, SENDER, header, upload
from tests.waiting import eventually

OFFICIAL = "Nguyễn Văn Đức"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class HangingResponder:
    """A responder that accepts every connection and never answers, until `release` closes
    them (the asker then gets a connection closed without an answer)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/ocsp"
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed by release
            with self._lock:
                self._held.append(connection)

    @property
    def waiting(self) -> int:
        """Connections accepted and not answered."""
        with self._lock:
            return len(self._held)

    def release(self) -> None:
        self._listener.close()
        with self._lock:
            for connection in self._held:
                connection.close()
            self._held.clear()
        self._thread.join(timeout=5)


@pytest.fixture
def hanging() -> Iterator[HangingResponder]:
    responder = HangingResponder()
    yield responder
    responder.release()


def _signed_pdf(ca: DemoCA, ocsp_url: str | None) -> bytes:
    person = ca.issue_person(OFFICIAL, SENDER, ocsp_url=ocsp_url)
    agency = ca.issue_agency(SENDER, "Văn phòng Chính phủ", ocsp_url=ocsp_url)
    pdf = sign_pdf(demo_pdf(["Cong van"]), person.identity(), field_name="ChuKyNguoiKy")
    return sign_pdf(pdf, agency.identity(), field_name="ChuKyCoQuan")


def _exchange(ca: DemoCA, store: FakeDocumentStore, *, timeout_s: float) -> ExchangeHandlers:
    """An exchange that verifies under `ca` with OCSP asked (and waited for up to `timeout_s`)."""
    return ExchangeHandlers(
        store,
        FakeDirectoryLookup(SENDER, HEALTH, EDUCATION),
        code_problem,
        clock=_now,
        signatures=SignatureVerifier(
            ca.trust_store, required=True, revocation=OcspChecker(timeout_s=timeout_s)
        ),
    )


async def _submit(exchange: ExchangeHandlers, consignment: str, number: str, pdf: bytes) -> None:
    head = dataclasses.replace(header(number=number), promulgation_date=today_in_vietnam(_now()))
    sent = Submission(consignment, head, (await upload(exchange, SENDER, pdf),))
    await exchange.submit(SENDER, sent)


async def test_a_pdf_is_not_checked_behind_another_pdfs_wait_for_a_hanging_responder(
    hanging: HangingResponder,
) -> None:
    """The first PDF's signers name a responder that accepts and never answers (the checker's
    timeout: a minute). While its check waits, a second PDF, whose signers name no responder,
    is verified and stored; once the responder lets go, the first is accepted on the CRLs with
    a warning for each signer."""
    ca = DemoCA.create()
    store = FakeDocumentStore(clock=_now)
    exchange = _exchange(ca, store, timeout_s=60)
    # pyHanko's synchronous signing runs its own event loop: a worker thread, as in a DMS.
    waiting_pdf = await asyncio.to_thread(_signed_pdf, ca, hanging.url)
    other_pdf = await asyncio.to_thread(_signed_pdf, ca, None)

    first = asyncio.ensure_future(_submit(exchange, "c-hangs", "7901", waiting_pdf))
    try:
        await eventually(lambda: asyncio.sleep(0, hanging.waiting), within=30)
        async with asyncio.timeout(30):  # behind the first PDF's wait it would wait here
            await _submit(exchange, "c-other", "7902", other_pdf)
        assert hanging.waiting == 1
        assert not first.done()
    finally:
        hanging.release()
    await first

    stored = {d.consignment_id: d.verification for d in store.documents.values()}
    assert stored.keys() == {"c-hangs", "c-other"}
    other, waited = stored["c-other"], stored["c-hangs"]
    assert other is not None
    assert (other.mode, other.warnings) == (SignatureMode.SIGNED, ())
    assert waited is not None
    assert waited.mode is SignatureMode.SIGNED
    assert len(waited.warnings) == 2
    # The warnings of the answers asked for (the responder let go), not of the run before.
    assert all("unavailable" in w and "CRLs only" in w for w in waited.warnings)
    assert not any("not asked yet" in w for w in waited.warnings)


async def test_a_pdf_checked_again_on_ocsps_answers_is_read_once(pdf_readings: list[int]) -> None:
    """The check that had to ask a responder (here one that refuses the connection) runs again on
    its answers from the same reading of the PDF: one reading, two hops to the attachment
    thread, and the CRL result with a warning for each signer."""
    ca = DemoCA.create()
    closed = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}/ocsp"
    closed.close()
    store = FakeDocumentStore(clock=_now)
    exchange = _exchange(ca, store, timeout_s=5)
    pdf = await asyncio.to_thread(_signed_pdf, ca, url)
    pdf_readings[0] = 0
    hops = signatures.ATTACHMENT_CHECKS.batches

    await _submit(exchange, "c-refused", "7903", pdf)

    (document,) = store.documents.values()
    assert document.verification is not None
    assert document.verification.mode is SignatureMode.SIGNED
    assert len(document.verification.warnings) == 2
    assert pdf_readings == [1]
    assert signatures.ATTACHMENT_CHECKS.batches - hops == 2
