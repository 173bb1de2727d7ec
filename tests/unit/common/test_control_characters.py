"""Control characters in request text (issue 17, finding 5): which characters, and how every
string field of a request is found, named as the BadRequest field."""

from __future__ import annotations

import pytest
from docaxis.common.v1 import common_pb2
from docaxis.exchange.v1 import exchange_service_pb2 as pb
from google.protobuf.descriptor import FieldDescriptor

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


class _Field:
    """A descriptor of a clean string or bytes field whose name must not be read."""

    def __init__(self, kind: int, repeated: bool) -> None:
        self.type = kind
        self.is_repeated = repeated
        self.message_type = None

    @property
    def name(self) -> str:
        raise AssertionError("a clean field's path was built")


class _Fields:
    def __init__(self, *fields: tuple[_Field, object]) -> None:
        self._fields = list(fields)

    def ListFields(self) -> list[tuple[_Field, object]]:  # protobuf's name
        return self._fields


def test_a_clean_fields_path_is_never_built() -> None:
    """Every request passes through the walk (the call interceptor): naming each field before
    looking at it was most of its cost, so a path is built only for a field with a problem."""
    message = _Fields(
        (_Field(FieldDescriptor.TYPE_STRING, repeated=False), "Về việc"),
        (_Field(FieldDescriptor.TYPE_STRING, repeated=True), ["VT", "Lưu"]),
        (_Field(FieldDescriptor.TYPE_BYTES, repeated=True), [b"\x00\x01", b"\x1b"]),
        (_Field(FieldDescriptor.TYPE_INT64, repeated=False), 7),
    )
    assert control_problems(message) == []  # type: ignore[arg-type]  # duck-typed Message
