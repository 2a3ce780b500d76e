"""Fan-out of signals to connected homes.

Each signal is encoded once, to bytes that every home's socket is handed unchanged. A frame is
written to a home's transport at once (a write that the kernel cannot take yet waits in the
transport's buffer), so fan-out is one pass over the connections with no queue or task per home.
The transport's buffer is the home's queue: a home whose unsent bytes pass ``send_buffer`` is not
reading, and is dropped (it resumes from its last acknowledged sequence when it reconnects), so
it never delays the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
import contextlib
from dataclasses import dataclass, field
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from smart_community_protocol import Placement, addresses
from smart_community_protocol.push import encode_signal

from .ledger import StoredSignal

_LOGGER = logging.getLogger(__name__)
SLOW_HOME = "too slow; resume later"
# Homes written to between two turns of the event loop: a write is a system call, and with
# thousands of homes one pass would hold the loop for a few hundred milliseconds.
FAN_OUT_SLICE = 1000


def signal_frame(signal: StoredSignal) -> bytes:
    """The WebSocket frame for a stored signal; its signed JSON is embedded unchanged."""
    return encode_signal(signal.seq, signal.object_type, signal.operation, signal.body).encode()


@dataclass(eq=False, slots=True)
class HomeConnection:
    """One home's WebSocket and what has been sent on it."""

    placement: Placement
    socket: web.WebSocketResponse
    transport: asyncio.Transport | None
    send_buffer: int
    targets: frozenset[str] = field(init=False)
    last_sent: int = 0
    # Frames that arrive while the replay is read from the ledger wait here, in order.
    pending: list[tuple[int, bytes]] | None = field(default_factory=list)
    pending_bytes: int = 0
    dropped: bool = False

    def __post_init__(self) -> None:
        """Cache the targets that address this home."""
        self.targets = self.placement.targets

    def offer(self, seq: int, frame: bytes) -> bool:
        """Send (or hold during the replay) one frame; False when the home cannot keep up."""
        if self.pending is not None:
            self.pending.append((seq, frame))
            self.pending_bytes += len(frame)
            return self.pending_bytes <= self.send_buffer
        if seq and seq <= self.last_sent:
            return True  # already sent by the replay
        transport = self.transport
        if transport is None or transport.is_closing():
            return True  # the handler is ending; the home resumes when it reconnects
        if transport.get_write_buffer_size() > self.send_buffer:
            return False
        if seq:
            self.last_sent = seq
        _send(self.socket, frame)
        return True

    def finish_replay(self, replayed_up_to: int) -> bool:
        """Send the live frames that arrived during the replay behind it (skipping duplicates)."""
        self.last_sent = max(self.last_sent, replayed_up_to)
        pending, self.pending, self.pending_bytes = self.pending or [], None, 0
        return all(self.offer(seq, frame) for seq, frame in pending)


def _send(socket: web.WebSocketResponse, frame: bytes) -> None:
    # Uncompressed frames are written synchronously; started eagerly, the send is done before
    # create_task returns, and only a send that must wait for the transport lives on as a task.
    task = asyncio.get_running_loop().create_task(
        socket.send_frame(frame, WSMsgType.TEXT), eager_start=True
    )
    if task.done():
        _ignore_outcome(task)
    else:
        task.add_done_callback(_ignore_outcome)


def _ignore_outcome(task: asyncio.Task[Any]) -> None:
    # A socket that closed under the send has nothing to report: its home resumes later.
    if not task.cancelled():
        task.exception()


class Relay:
    """The registry of connected homes."""

    def __init__(self) -> None:
        """Start empty."""
        self._connections: set[HomeConnection] = set()
        self.relayed = 0
        self.dropped = 0
        self.departures = 0  # connections that have ended, ever
        self._watchers: list[tuple[Callable[[str], None], Callable[[str], None]]] = []

    def watch(self, returned: Callable[[str], None], departed: Callable[[str], None]) -> None:
        """Be told of each home that connects (``returned``) and each that leaves."""
        self._watchers.append((returned, departed))

    @property
    def connected(self) -> int:
        """How many homes are connected."""
        return len(self._connections)

    def buffered_bytes(self) -> list[int]:
        """Bytes waiting to be sent, per connection (held during a replay, or unsent)."""
        return [
            c.pending_bytes + (c.transport.get_write_buffer_size() if c.transport else 0)
            for c in self._connections
        ]

    def connected_homes(self) -> set[str]:
        """Ids of the homes connected now."""
        return {connection.placement.home for connection in self._connections}

    def register(self, connection: HomeConnection) -> None:
        """Start relaying to a connection."""
        self._connections.add(connection)
        for returned, _ in self._watchers:
            returned(connection.placement.home)

    def unregister(self, connection: HomeConnection) -> None:
        """Stop relaying to a connection."""
        if connection in self._connections:
            self._connections.remove(connection)
            self.departures += 1
            for _, departed in self._watchers:
                departed(connection.placement.home)

    async def publish(self, signal: StoredSignal) -> int:
        """Send a committed signal to every connected home it addresses; returns how many.

        The caller awaits it before publishing the next signal, so every home gets signals in
        ledger order.
        """
        return await self._fan_out(signal.seq, signal_frame(signal), signal.audience)

    async def inject(self, frame: bytes, audience: Iterable[str]) -> int:
        """Send an arbitrary frame (tests of a compromised relay)."""
        return await self._fan_out(0, frame, tuple(audience))

    async def _fan_out(self, seq: int, frame: bytes, audience: tuple[str, ...]) -> int:
        sent = 0
        wanted = list(audience)
        for index, connection in enumerate(tuple(self._connections)):
            if index and not index % FAN_OUT_SLICE:
                await asyncio.sleep(0)  # the loop's other work (acks, reports) in between
            if connection.dropped or not addresses(wanted, connection.targets):
                continue
            if connection.offer(seq, frame):
                sent += 1
            else:
                self.drop(connection, "not reading: its send buffer is full")
        self.relayed += sent
        return sent

    def drop(self, connection: HomeConnection, why: str) -> None:
        """Disconnect a home that cannot keep up; it resumes later from its last ack."""
        if connection.dropped:
            return
        _LOGGER.warning("dropping home %s: %s", connection.placement.home, why)
        self.dropped += 1
        self._close(connection, WSCloseCode.TRY_AGAIN_LATER, SLOW_HOME)

    def disconnect_home(self, home_id: str, why: str) -> int:
        """Close every connection of a home at once (its credential was revoked)."""
        closing = [c for c in self._connections if c.placement.home == home_id]
        for connection in closing:
            self._close(connection, WSCloseCode.POLICY_VIOLATION, why)
        return len(closing)

    def _close(self, connection: HomeConnection, code: int, why: str) -> None:
        connection.dropped = True
        self.unregister(connection)
        task = asyncio.get_running_loop().create_task(
            connection.socket.close(code=code, message=why.encode())
        )
        task.add_done_callback(_ignore_outcome)

    async def close_all(self) -> None:
        """Close every connection with GOING_AWAY (shutdown)."""
        connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.socket.close(
                    code=WSCloseCode.GOING_AWAY, message=b"bridge shutting down"
                )
