"""Control characters in a request's text, found field by field (services/common/text.py says
which characters and why)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.common.errors import FieldViolation
from services.common.text import control_character


def control_problems(message: Message, prefix: str = "") -> list[FieldViolation]:
    """Every string of `message` (nested messages, repeated fields and maps included) that holds
    a control character, named by its path as the BadRequest field is: `header.subject`,
    `attachments[1].name`."""
    problems: list[FieldViolation] = []
    for field, value in message.ListFields():
        kind = field.type
        if kind == _STRING:
            # Named only when found: every request passes here (the call interceptor), and
            # building each field's path first was most of the walk's cost.
            if field.is_repeated:
                for index, item in enumerate(value):
                    if (found := control_character(item)) is not None:
                        problems.append(_found(f"{prefix}{field.name}[{index}]", found))
            elif (found := control_character(value)) is not None:
                problems.append(_found(prefix + field.name, found))
        elif kind in _MESSAGES:
            problems += _message_field_problems(field, value, prefix + field.name)
        # Numbers, enums and bytes hold no text.
    return problems


_STRING = FieldDescriptor.TYPE_STRING
_MESSAGES = (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)


def _message_field_problems(field: FieldDescriptor, value: Any, path: str) -> list[FieldViolation]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        items = [(f"{path}[{key!r}]", key) for key in value] + [
            (f"{path}[{key!r}]", item) for key, item in value.items()
        ]
    elif field.is_repeated:
        items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        items = [(path, value)]
    problems: list[FieldViolation] = []
    for where, item in items:
        if isinstance(item, Message):
            problems += control_problems(item, f"{where}.")
        elif isinstance(item, str) and (found := control_character(item)) is not None:
            problems.append(_found(where, found))
    return problems


def _found(where: str, character: str) -> FieldViolation:
    return FieldViolation(where, f"contains the control character {character}")
