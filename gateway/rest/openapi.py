"""The OpenAPI 3.1 document of the REST API, generated from the operation table and the
contracts' messages (checked in as docs/openapi.json; a test keeps both equal)."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from gateway.rest.app import OPERATIONS, Operation
from gateway.rest.schemas import SchemaSet, descriptor_of

_PROBLEM = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "reason": {
            "type": "string",
            "description": "stable reason, as in the gRPC ErrorInfo (ErrorReason in common.proto)",
        },
        "retryable": {"type": "boolean"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "violations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "description": {"type": "string"}},
            },
        },
        "retry_after_s": {"type": "number"},
    },
    "required": ["type", "title", "status", "reason"],
}
_ERRORS = {
    "400": "invalid request (VALIDATION, SIZE_LIMIT_EXCEEDED, ATTACHMENT_MISMATCH, …)",
    "401": "no, or an unusable, client certificate (UNAUTHENTICATED, CERTIFICATE_REVOKED, …)",
    "403": "not allowed (PERMISSION_DENIED, NOT_REGISTERED, SENDER_MISMATCH, CROSS_ORIGIN, …)",
    "404": "not found, or not a party to it (NOT_FOUND)",
    "408": "the request body came too slowly (REQUEST_TIMEOUT)",
    "409": "conflict (DUPLICATE)",
    "413": "the request body is over the operation's limit (SIZE_LIMIT_EXCEEDED)",
    "415": "a write's body is not of the operation's media type (UNSUPPORTED_MEDIA_TYPE)",
    "422": "refused (INVALID_ADDRESSEE, SIGNATURE_INVALID, …)",
    "503": "the services are unavailable; retry (UNAVAILABLE)",
}


def _parameters(op: Operation) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    for name, kind, description in op.query:
        schema: dict[str, Any] = {"type": kind}
        if kind == "integer":
            schema["minimum"] = 0
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": op.raw_request and name in ("sha256", "size"),
                "description": description,
                "schema": schema,
            }
        )
    return parameters


def openapi_document() -> dict[str, Any]:
    schemas = SchemaSet()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        if op.raw_response:
            content: dict[str, Any] = {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        else:
            assert op.response is not None
            content = {"application/json": {"schema": schemas.message(descriptor_of(op.response))}}
        responses[str(op.status)] = {"description": "success", "content": content}
        if op.operation_id == "submitDocument":
            responses["200"] = {"description": "replayed: the first receipt", "content": content}
        for status, description in _ERRORS.items():
            responses[status] = {
                "description": description,
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": list(op.tags),
            "parameters": _parameters(op),
            "responses": responses,
        }
        if op.raw_request:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        elif op.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": schemas.message(descriptor_of(op.request), omit=op.path_fields)
                    }
                },
            }
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    components = dict(sorted(schemas.schemas.items()))
    components["Problem"] = _PROBLEM
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "docaxis gateway",
            "version": "1",
            "description": (
                "REST/JSON access to docaxis for agency DMS software. Mutual TLS: the client "
                "certificate is the agency. Bodies are the proto3 JSON mapping of the gRPC "
                "contracts (proto/docaxis/*/v1). Errors are application/problem+json with the "
                "gRPC ErrorInfo's stable reason."
            ),
        },
        "servers": [{"url": "https://127.0.0.1:8443"}],
        "paths": paths,
        "components": {"schemas": components},
    }


def render() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
