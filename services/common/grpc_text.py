"""Control characters in a request's text, found field by field (services/common/text.py says
which characters and why)."""

from __future__ import annotations

from google.protobuf.message import Message

from services.common.errors import FieldViolation
from services.common.text import control_character


def control_problems(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every string of `message` (nested messages, repeated fields and maps included) that holds
    a control character, named by its path as the BadRequest field is: `header.subject`,
    `attachments[1].name`."""
    problems: list[FieldViolation] = []
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            items = [(f"{path}[{key!r}]", key) for key in value] + [
                (f"{path}[{key!r}]", item) for key, item in value.items()
            ]
        elif field.is_repeated:
            items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
        else:
            items = [(path, value)]
        for where, item in items:
            if isinstance(item, Message):
                problems += control_problems(item, f"{where}.")
            elif isinstance(item, str) and (found := control_character(item)) is not None:
                problems.append(FieldViolation(where, f"contains the control character {found}"))
    return problems
