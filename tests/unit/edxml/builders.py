"""Test data for the edXML tests: sample locations, a fixed clock and complete packages."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from typing import Final

from gateway.edxml import (
    Attachment,
    Business,
    BusinessDocType,
    DocumentCode,
    DocumentPackage,
    DocumentType,
    MessageHeader,
    Organisation,
    OtherInfo,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPackage,
    TraceHeader,
    TraceHeaderList,
    reference_for,
)
from gateway.edxml.dates import VIETNAM

STRICT: Final = "new-document-strict.edxml"
LENIENT: Final = "new-document-lenient-dates.edxml"
RECALL: Final = "recall-document.edxml"
STATUS: Final = "status-05-processing.edxml"
# After every sample's dates, so "not in the future" holds whatever the real date is.
NOW: Final = dt.datetime(2025, 6, 1, 9, 0, tzinfo=VIETNAM)
ORIGINAL_ID: Final = "000.00.11.H40,2025/03/14,2491/STC-NS"
PDF: Final = b"%PDF-1.7\n% synthetic test document\n" + bytes(range(256)) * 4


def without_payloads(xml: bytes) -> bytes:
    """The XML with attachment payloads blanked (a re-zip differs from the sender's zip)."""
    return re.sub(rb"(<ContentTransferEncoded>)[^<]*", rb"\1", xml)


def organisation(code: str, name: str) -> Organisation:
    return Organisation(
        organ_id=code,
        organization_in_charge="UBND tỉnh Nam Định",
        organ_name=name,
        organ_add="Số 1 đường Trần Hưng Đạo",
        email="vanthu@example.gov.vn",
        telephone="0228 000 000",
        fax="0228 000 001",
        website="https://example.gov.vn",
    )


def an_attachment(content_id: str = "1", name: str = "2491-STC-NS.pdf") -> Attachment:
    return Attachment(content_id=content_id, name=name, data=PDF, description="Công văn đã ký số")


def a_document(
    *,
    attachments: tuple[Attachment, ...] | None = None,
    business: Business | None = None,
    header: MessageHeader | None = None,
) -> DocumentPackage:
    """A complete new document that breaks no rule."""
    files = (an_attachment(),) if attachments is None else attachments
    return DocumentPackage(
        header=header
        or MessageHeader(
            sender=organisation("000.00.11.H40", "Sở Tài chính"),
            recipients=(
                organisation("000.00.00.H40", "Ủy ban nhân dân tỉnh Nam Định"),
                organisation("000.00.12.H40", "Sở Nội vụ tỉnh Nam Định"),
            ),
            code=DocumentCode("2491", "STC-NS"),
            promulgation=PromulgationInfo("Nam Định", dt.date(2025, 3, 14)),
            document_type=DocumentType(1, 0, "Công văn"),
            subject="Về việc hướng dẫn quyết toán ngân sách cấp xã",
            content="Hướng dẫn quyết toán\r\nngân sách cấp xã & <phường>",
            signer=SignerInfo("KT. GIÁM ĐỐC", "Phó Giám đốc", "Trần Văn An"),
            due_date=dt.date(2025, 3, 31),
            to_places=("UBND tỉnh (để báo cáo)", "Sở Nội vụ"),
            other_info=OtherInfo(
                priority=2,
                sphere_of_promulgation="Liên thông văn bản",
                typer_notation="TVA",
                promulgation_amount=2,
                page_amount=3,
                direction=False,
                appendixes=("Phụ lục I", "Phụ lục II"),
            ),
            response_for=(
                ResponseFor(
                    "000.00.00.H40",
                    "15/UBND-TH",
                    dt.date(2025, 3, 1),
                    "000.00.00.H40,2025/03/01,15/UBND-TH",
                ),
            ),
            steering_type=0,
            document_id=ORIGINAL_ID,
        ),
        trace=TraceHeaderList(
            trace_headers=(
                TraceHeader("000.00.11.H40", dt.datetime(2025, 3, 14, 9, 15, 2, tzinfo=VIETNAM)),
            ),
            business=business
            or Business(
                doc_type=BusinessDocType.NEW,
                reason="Văn bản điện tử mới",
                paper=0,
                staff=StaffInfo(
                    "Văn thư", "Nguyễn Thị Bình", "vanthu@example.gov.vn", "0900000000"
                ),
            ),
        ),
        references=tuple(reference_for(attachment) for attachment in files),
        attachments=files,
    )


def a_status(code: str = "03", description: str = "Đã tiếp nhận") -> StatusPackage:
    return StatusPackage(
        sender=Organisation(organ_id="000.00.00.H40", organ_name="Ủy ban nhân dân tỉnh Nam Định"),
        response_for=ResponseFor("000.00.11.H40", "2491/STC-NS", dt.date(2025, 3, 14), ORIGINAL_ID),
        staff=StaffInfo("Văn phòng", "Lê Văn Cường", "vanthu@example.gov.vn", "0900000001"),
        status_code=code,
        description=description,
        timestamp=dt.datetime(2025, 3, 15, 8, 1, 44, tzinfo=VIETNAM),
    )


def zip_bytes(entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_of_zeros(size: int) -> bytes:
    """A small zip that expands to `size` zero bytes, written without holding them."""
    buffer = io.BytesIO()
    chunk = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb.pdf", "w", force_zip64=True) as entry,
    ):
        for _ in range(size // len(chunk)):
            entry.write(chunk)
    return buffer.getvalue()


def with_payload(xml: bytes, payload_base64: bytes) -> bytes:
    """The package with its (single) attachment payload replaced."""
    return re.sub(
        rb"(<ContentTransferEncoded>)[^<]*", lambda m: m.group(1) + payload_base64, xml, count=1
    )
