"""A TCP relay in front of a server that can go silent: a half-open connection on demand.

`freeze()` makes the relay forward nothing more either way while holding both sockets open, as
a DMS whose machine vanished (power cut, cable pulled, a firewall dropping the flow) leaves
its connection: no FIN, no RST, nothing. Only the server's keepalive can tell."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class FreezingProxy:
    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._target = (host, int(port))
        self._frozen = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.address = ""

    def freeze(self) -> None:
        self._frozen.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, upstream_writer]
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if self._frozen.is_set():
                    await asyncio.Event().wait()  # hold the socket, forward nothing, for ever
                sink.write(data)
                await sink.drain()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Listens on a free loopback port until the block ends; yields its address."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self.address
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            for writer in self._writers:
                writer.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
