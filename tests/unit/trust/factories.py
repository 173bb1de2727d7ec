"""Builders shared by the trust tests: a realistic manifest and the agencies it names."""

from __future__ import annotations

import dataclasses
from typing import Any

from docaxis_client.trust import AttachmentDigest, Manifest

SENDER = "000.00.00.H45"
SENDER_NAME = "Ủy ban nhân dân tỉnh Khánh Hòa"
OTHER_AGENCY = "000.00.00.H41"
RECIPIENTS = ("000.00.00.G22", "000.00.00.H41")
OFFICIAL = "Nguyễn Văn Đức"


def make_manifest(**changes: Any) -> Manifest:
    """A manifest from SENDER signed by OFFICIAL, with ``changes`` applied."""
    manifest = Manifest(
        document_id=f"{SENDER},2025/07/01,1234/UBND-VP",
        sender=SENDER,
        recipients=RECIPIENTS,
        code_number="1234",
        code_notation="UBND-VP",
        promulgation_place="Khánh Hòa",
        promulgation_date="2025-07-01",
        document_type=1,
        type_name="Công văn",
        subject="Về việc triển khai chính quyền địa phương hai cấp",
        signer_competence="KT. CHỦ TỊCH",
        signer_position="Phó Chủ tịch",
        signer_full_name=OFFICIAL,
        due_date="2025-07-15",
        priority=1,
        business_type=0,
        response_for=(),
        attachments=(
            AttachmentDigest.of("1234-UBND-VP.pdf", "application/pdf", b"%PDF-1.7 signed"),
            AttachmentDigest.of("phu-luc.zip", "application/zip", b"PK\x03\x04appendix"),
        ),
    )
    return dataclasses.replace(manifest, **changes)


def flip_last_byte(data: bytes) -> bytes:
    """`data` changed by one bit: a signature or a certificate that no longer verifies."""
    return data[:-1] + bytes([data[-1] ^ 0x01])
