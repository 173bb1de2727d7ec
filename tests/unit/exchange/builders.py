"""Builders for the exchange unit tests: agencies, a fixed clock, headers and uploads."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Iterable

from services.exchange.domain.model import AttachmentRef, Header, Submission
from services.exchange.service_layer.handlers import ExchangeHandlers

NOW = dt.datetime(2025, 8, 1, 3, 0, tzinfo=dt.UTC)  # 10:00 in Hà Nội
TODAY = dt.date(2025, 8, 1)
LIMIT = 64 * 1024

SENDER = "000.00.00.G22"
HEALTH = "000.00.13.H45"
EDUCATION = "000.00.14.H45"
OUTSIDER = "000.00.15.H45"
CLOSED = "000.01.00.H45"
SUCCESSOR = "000.00.40.H45"


def fixed_clock() -> dt.datetime:
    return NOW


async def chunked(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def header(
    recipients: Iterable[str] = (HEALTH, EDUCATION),
    *,
    sender: str = SENDER,
    number: str = "7816",
    subject: str = "Về việc sáp nhập đơn vị hành chính",
) -> Header:
    return Header(
        sender=sender,
        recipients=tuple(recipients),
        code_number=number,
        code_notation="KH-SỞYT",
        promulgation_date=TODAY,
        subject=subject,
        type_name="Công văn",
        document_type=1,
    )


def submission(
    consignment_id: str = "c-1",
    head: Header | None = None,
    attachments: tuple[AttachmentRef, ...] = (),
) -> Submission:
    return Submission(consignment_id, head or header(), attachments)


async def upload(exchange: ExchangeHandlers, owner: str, content: bytes) -> AttachmentRef:
    """Uploads `content` for `owner` and returns a reference to it."""
    await exchange.upload_attachment(owner, sha256_of(content), len(content), chunked(content))
    return AttachmentRef("văn bản.pdf", "application/pdf", len(content), sha256_of(content))
