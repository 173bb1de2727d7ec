"""plan(): every configuration error of the chosen components, before anything opens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from docaxis_client.ledger.note import NoteSigner
from services.bootstrap.plan import Component, plan
from services.common.config import ConfigError
from services.settings import DEFAULT_LEDGER_ORIGIN, Settings

# Nothing listens there: a plan that tried to connect would fail differently.
NOWHERE = Settings(
    grpc_address="127.0.0.1:0",
    database_url="postgresql://postgres@127.0.0.1:1/none",
    amqp_url="amqp://guest:guest@127.0.0.1:1/",
    dev_insecure=True,
)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.key"
    path.write_text(NoteSigner.generate(DEFAULT_LEDGER_ORIGIN).skey + "\n", encoding="utf-8")
    return path


def test_every_component_with_its_settings_is_planned(key_file: Path) -> None:
    checked = plan(dataclasses.replace(NOWHERE, ledger_key_file=str(key_file)))
    assert checked.components == frozenset(Component)
    assert len(checked.signers) == 1
    assert checked.amqp_url == NOWHERE.amqp_url


def test_the_exchange_needs_the_broker() -> None:
    with pytest.raises(ConfigError, match="DOCAXIS_AMQP_URL"):
        plan(dataclasses.replace(NOWHERE, amqp_url=None), {Component.EXCHANGE, Component.DIRECTORY})


def test_the_exchange_alone_needs_the_directory_address() -> None:
    with pytest.raises(ConfigError, match="DOCAXIS_DIRECTORY_ADDRESS"):
        plan(NOWHERE, {Component.EXCHANGE})
    alone = dataclasses.replace(NOWHERE, directory_address="127.0.0.1:1")
    assert plan(alone, {Component.EXCHANGE}).components == {Component.EXCHANGE}


@pytest.mark.parametrize("content", [None, "", "not a key\n"], ids=["unset", "empty", "garbage"])
def test_the_ledger_needs_its_signing_keys(tmp_path: Path, content: str | None) -> None:
    key_file = tmp_path / "ledger.key"
    if content is not None:
        key_file.write_text(content, encoding="utf-8")
    settings = dataclasses.replace(
        NOWHERE, ledger_key_file=None if content is None else str(key_file)
    )
    with pytest.raises(ConfigError, match="DOCAXIS_LEDGER_KEY_FILE"):
        plan(settings, {Component.LEDGER})


def test_the_ledger_alone_needs_no_broker(key_file: Path) -> None:
    """python -m services.ledger: no DOCAXIS_AMQP_URL, no broker connection."""
    settings = dataclasses.replace(NOWHERE, amqp_url=None, ledger_key_file=str(key_file))
    assert plan(settings, {Component.LEDGER}).amqp_url is None
    assert (
        plan(dataclasses.replace(settings, amqp_url="amqp://x/"), {Component.LEDGER}).amqp_url
        is None
    )


def test_nothing_to_serve_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="no component"):
        plan(NOWHERE, set())
