"""JSON Schemas (OpenAPI 3.1) of protobuf messages in their proto3 JSON mapping: camelCase
names, 64-bit integers as strings, bytes as base64, enums by name, Timestamps as RFC 3339."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string"},
}
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_INT32 = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_SFIXED32,
}


def descriptor_of(message_type: type[Message]) -> Descriptor:
    descriptor = message_type.DESCRIPTOR
    assert isinstance(descriptor, Descriptor)
    return descriptor


def component_name(full_name: str) -> str:
    # docaxis.exchange.v1.SubmitRequest -> exchange.v1.SubmitRequest
    return full_name.removeprefix("docaxis.")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{component_name(name)}"}


class SchemaSet:
    """Collects the schemas of messages (and the enums and messages they use)."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def message(
        self, descriptor: Descriptor, *, omit: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """A $ref to the message's schema (inline when fields are omitted)."""
        if descriptor.full_name in _WELL_KNOWN:
            return _WELL_KNOWN[descriptor.full_name]
        if omit:
            return self._object(descriptor, omit)
        name = component_name(descriptor.full_name)
        if name not in self.schemas:
            self.schemas[name] = {}  # recursion guard
            self.schemas[name] = self._object(descriptor, omit)
        return _ref(descriptor.full_name)

    def _object(self, descriptor: Descriptor, omit: frozenset[str]) -> dict[str, Any]:
        properties = {
            field.json_name: self._field(field)
            for field in descriptor.fields
            if field.name not in omit
        }
        return {"type": "object", "properties": properties, "additionalProperties": False}

    def _enum(self, descriptor: EnumDescriptor) -> dict[str, Any]:
        name = component_name(descriptor.full_name)
        if name not in self.schemas:
            self.schemas[name] = {"type": "string", "enum": [v.name for v in descriptor.values]}
        return _ref(descriptor.full_name)

    def _scalar(self, field: FieldDescriptor) -> dict[str, Any]:
        kind = field.type
        if kind == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            return self.message(field.message_type)
        if kind == FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
            return self._enum(field.enum_type)
        if kind == FieldDescriptor.TYPE_STRING:
            return {"type": "string"}
        if kind == FieldDescriptor.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if kind == FieldDescriptor.TYPE_BOOL:
            return {"type": "boolean"}
        if kind in _INT64:
            return {"type": "string", "pattern": "^-?[0-9]{1,19}$"}
        if kind in _INT32:
            return {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
        return {"type": "number"}

    def _field(self, field: FieldDescriptor) -> dict[str, Any]:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            value = self._scalar(entry.fields_by_name["value"])
            return {"type": "object", "additionalProperties": value}
        schema = self._scalar(field)
        if field.is_repeated:
            return {"type": "array", "items": schema}
        return schema
