"""Schemathesis against the running gateway (mutual TLS, real services): bounded examples per
operation, generated from the OpenAPI document the gateway serves; no answer may be a 5xx."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from requests.adapters import HTTPAdapter
from schemathesis.core.result import Ok

from gateway.rest.openapi import openapi_document
from tests.integration.gateway.conftest import RunningGateway
from tests.pki import KeyPair

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 50


class _TlsAdapter(HTTPAdapter):
    """requests with the test's SSL context (the agency's certificate, the demo anchors)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


def _fuzz(gateway: RunningGateway, pair: KeyPair) -> list[str]:
    schema = schemathesis.openapi.from_dict(openapi_document())
    session = requests.Session()
    session.mount("https://", _TlsAdapter(gateway.ssl_context(pair)))
    checked = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,  # the same examples every run: a failure here is reproducible
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:  # a schemathesis Case
            response = case.call(base_url=gateway.url, session=session, timeout=30)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
            )
            if response.status_code >= 400:
                assert response.headers["content-type"] == ["application/problem+json"]

        check()
        checked.append(operation.label)
    session.close()
    return checked


async def test_schemathesis_finds_no_server_error(
    gateway: RunningGateway, register_agencies: Callable[..., Awaitable[list[str]]]
) -> None:
    (code,) = await register_agencies(1)
    pair = gateway.agency_pair(code)
    checked = await asyncio.to_thread(_fuzz, gateway, pair)
    operations = sum(len(methods) for methods in openapi_document()["paths"].values())
    assert len(checked) == operations
