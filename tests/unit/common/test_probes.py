"""/livez and /readyz of a docaxis process: what an orchestrator reads."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from services.common.probes import Readiness, probe_server, probe_socket, probes_app


@pytest.mark.parametrize(
    ("readiness", "status", "missing"),
    [
        (Readiness(database=True, broker=True), 200, None),
        (Readiness(database=False, broker=True), 503, ["database"]),
        (Readiness(database=True, broker=False), 503, ["broker"]),
        (Readiness(database=True, broker=True, draining=True), 503, ["draining"]),
        (Readiness(), 503, ["database", "broker"]),
    ],
)
async def test_readyz_is_ready_only_with_every_dependency_and_not_draining(
    readiness: Readiness, status: int, missing: list[str] | None
) -> None:
    transport = httpx.ASGITransport(app=probes_app(readiness))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        live = await client.get("/livez")
        ready = await client.get("/readyz")
    assert live.status_code == 200  # alive whatever the dependencies say: no restart loops
    assert ready.status_code == status
    assert ready.json().get("missing") == missing


async def test_readyz_follows_the_state_it_is_given_as_it_changes() -> None:
    readiness = Readiness(database=True, broker=True)
    transport = httpx.ASGITransport(app=probes_app(readiness))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        assert (await client.get("/readyz")).status_code == 200
        readiness.database = False
        assert (await client.get("/readyz")).status_code == 503
        readiness.database = True
        assert (await client.get("/readyz")).status_code == 200


async def test_two_workers_share_the_probe_port_and_each_answers() -> None:
    first = probe_socket("127.0.0.1:0", share_port=True)
    port = first.getsockname()[1]
    second = probe_socket(f"127.0.0.1:{port}", share_port=True)
    servers = [probe_server(Readiness(database=True, broker=True)) for _ in range(2)]
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, sock in zip(servers, (first, second), strict=True)
    ]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(4):
                assert (await client.get("/readyz")).status_code == 200
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)
        first.close()
        second.close()


def test_a_port_already_taken_without_sharing_fails_at_bind() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(OSError, match="in use"):
            probe_socket(f"127.0.0.1:{taken.getsockname()[1]}", share_port=False)
