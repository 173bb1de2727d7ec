"""Process lifecycle: turning SIGTERM/SIGINT into an event the main coroutine waits on."""

from __future__ import annotations

import asyncio
import signal


def install_shutdown_handlers() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT. asyncio.run() alone does nothing about SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
