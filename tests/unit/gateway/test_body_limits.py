"""Each route's body limit (gateway/body_limits.py); the refusals themselves are exercised on
the wire in tests/integration/gateway/test_edge_limits.py."""

from __future__ import annotations

import pytest

from gateway.axis import MAX_EDXML_BYTES
from gateway.body_limits import MAX_EDXML_FORM, MAX_FORM_BODY, MAX_JSON_BODY, body_limit


@pytest.mark.parametrize(
    ("path", "query", "limit"),
    [
        ("/v1/documents", b"", MAX_JSON_BODY),
        ("/v1/documents/x/recall", b"", MAX_JSON_BODY),
        ("/v1/attachments", b"sha256=ab&size=12345", 12345),
        ("/v1/attachments", b"size=-1", MAX_FORM_BODY),
        ("/v1/attachments", b"size=" + b"9" * 30, MAX_FORM_BODY),
        ("/v1/attachments", b"", MAX_FORM_BODY),
        ("/axis/sendEdoc", b"", MAX_EDXML_FORM),
        ("/axis/updateStatus", b"", MAX_FORM_BODY),
        ("/admin/login", b"", MAX_FORM_BODY),
        ("/openapi.json", b"", MAX_FORM_BODY),
    ],
)
def test_each_route_has_its_body_limit(path: str, query: bytes, limit: int) -> None:
    assert body_limit({"path": path, "query_string": query}) == limit
    assert MAX_EDXML_FORM > MAX_EDXML_BYTES  # the file fits, with its form around it
