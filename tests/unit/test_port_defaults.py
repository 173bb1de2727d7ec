"""The default ports of the suite's, the bench's, the soak's and the chaos run's servers: none
shared, none in the Linux ephemeral range (where a client's random port can take one first:
`dist_port_already_used`), nor the ports RabbitMQ's CLI tools take (distribution port + 10000
to + 10010)."""

from __future__ import annotations

import pytest

from benchmarks.chaos import CHAOS_DEFAULTS
from benchmarks.stack import DEFAULT_PORTS
from tests.infra import cluster_env, postgres_pair_env, suite_env

EPHEMERAL = range(32768, 61000)
CLI_SPAN = range(10000, 10011)


def _defaults(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Every default port by what it is for; the distribution ports' CLI ranges besides."""
    for prefix in ("TEST_PG", "TEST_AMQP", "TEST_RABBIT", "TEST_EPMD", "TEST_CLUSTER", "TEST_PAIR"):
        for name in (
            "_PORT",
            "_PORTS",
            "_DIST_PORT",
            "_DIST_PORTS",
            "_AMQP_PORTS",
            "_EPMD_PORT",
            "_PG_PORT",
            "_PG_STANDBY_PORT",
        ):
            monkeypatch.delenv(prefix + name, raising=False)
    ports: dict[str, int] = {}
    for family, env in (
        ("test", suite_env()),
        ("cluster", cluster_env()),
        ("pair", postgres_pair_env()),
    ):
        for name, value in env.items():
            if name.endswith("_PORT") or "_PORT_" in name:
                ports[f"{family} {name}"] = int(value)
    for prefix, values in DEFAULT_PORTS.items():
        for index, port in enumerate(values):
            ports[f"{prefix} {index}"] = port
    for name, value in CHAOS_DEFAULTS.items():
        for index, text in enumerate(value.split(",")):
            ports[f"{name} {index}"] = int(text)
    return ports


def _cli_ports(ports: dict[str, int]) -> dict[int, str]:
    """The ports the CLI tools of each RabbitMQ node may listen on (they take a free one of
    the span, so the spans may overlap one another, but no server may sit in one)."""
    return {
        port + step: f"{name} CLI +{step}"
        for name, port in ports.items()
        if "DIST" in name or (name.split()[0] in DEFAULT_PORTS and name.endswith(" 2"))
        for step in CLI_SPAN
    }


def test_no_default_port_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = _defaults(monkeypatch)
    by_port: dict[int, list[str]] = {}
    for name, port in ports.items():
        by_port.setdefault(port, []).append(name)
    assert {port: names for port, names in by_port.items() if len(names) > 1} == {}
    cli = _cli_ports(ports)
    assert {name: cli[port] for name, port in ports.items() if port in cli} == {}


def test_no_default_port_is_in_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = _defaults(monkeypatch)
    assert {name: port for name, port in ports.items() if port in EPHEMERAL} == {}
    assert {name: port for port, name in _cli_ports(ports).items() if port in EPHEMERAL} == {}
    assert len(ports) >= 30  # every family was read
