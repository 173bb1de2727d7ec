"""Control characters in request text (issue 17, finding 5): which characters, and how every
string field of a request is found, named as the BadRequest field."""

from __future__ import annotations

import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb

from services.common.errors import FieldViolation
from services.common.grpc_server import control_problems
from services.common.text import control_character


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("Về việc", None),
        ("dòng một\ndòng hai\r\n\tthụt lề", None),
        ("\x00", "U+0000"),
        ("a\x1bb", "U+001B"),
        ("a\x7f", "U+007F"),
        ("a\x85", "U+0085"),
    ],
)
def test_control_characters_but_tabs_and_line_breaks(text: str, found: str | None) -> None:
    assert control_character(text) == found


def test_a_one_line_field_counts_tabs_and_line_breaks_too() -> None:
    assert control_character("a\tb", one_line=True) == "U+0009"
    assert control_character("a\u2028b", one_line=True) == "U+2028"
    assert control_character("Công văn.pdf", one_line=True) is None


def test_every_string_of_a_request_is_checked_with_its_path() -> None:
    request = pb.SubmitRequest(
        consignment_id="c-1",
        header=common_pb2.DocumentHeader(
            subject="Về việc\x00", content="Đoạn một.\n\nĐoạn hai.", to_places=["VT", "x\x01"]
        ),
        attachments=[
            common_pb2.AttachmentRef(name="cv.pdf", media_type="application/pdf"),
            common_pb2.AttachmentRef(name="a\x00.pdf", description="\x0c"),
        ],
    )
    assert control_problems(request) == [
        FieldViolation("header.subject", "contains the control character U+0000"),
        FieldViolation("header.to_places[1]", "contains the control character U+0001"),
        FieldViolation("attachments[1].name", "contains the control character U+0000"),
        FieldViolation("attachments[1].description", "contains the control character U+000C"),
    ]
    assert control_problems(pb.SubmitRequest(consignment_id="c-1")) == []
