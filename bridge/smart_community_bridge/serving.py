"""Serving the bridge: the listening socket, a deadline on request headers, graceful stop.

aiohttp waits as long as a client likes for a request's headers, so a few thousand clients that
trickle them in ("slow loris") could hold every socket. Each connection here must deliver its
first request's headers (which carry the credential) within ``header_deadline`` seconds, or it
is closed; then aiohttp's own keep-alive and WebSocket heartbeat take over.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

_LOGGER = logging.getLogger(__name__)
_END_OF_HEADERS = b"\r\n\r\n"


class HeaderDeadline(asyncio.Protocol):
    """Wraps aiohttp's protocol; closes the connection if no complete header block arrives."""

    def __init__(self, inner: asyncio.Protocol, deadline: float) -> None:
        """Guard ``inner`` (an aiohttp request handler)."""
        self._inner = inner
        self._deadline = deadline
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the clock, then hand over."""
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._deadline, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Stop the clock once the first header block is complete."""
        if self._timer is not None:
            # Only the last bytes matter: the terminator may straddle two reads.
            window = self._tail + data
            if _END_OF_HEADERS in window:
                self._timer.cancel()
                self._timer = None
            self._tail = window[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Hand over."""
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock and hand over."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """Hand over flow control."""
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Hand over flow control."""
        self._inner.resume_writing()

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            _LOGGER.info("closing a connection that sent no request within %.0f s", self._deadline)
            self._transport.close()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    header_deadline: float,
    shutdown_timeout: float,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then give requests ``shutdown_timeout`` seconds to end."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    loop = asyncio.get_running_loop()
    server = runner.server
    assert server is not None
    listener = await loop.create_server(
        lambda: HeaderDeadline(server(), header_deadline),
        host,
        port,
        reuse_address=True,
        backlog=4096,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in listener.sockets)
    print(f"smart-community-bridge serving on {bound}", flush=True)  # noqa: T201
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        listener.close()
        # on_shutdown closes homes' sockets with GOING_AWAY; handlers get shutdown_timeout to end.
        await runner.cleanup()
