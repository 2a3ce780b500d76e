"""Fan-out of signals to connected homes.

Each signal is encoded once. Every connection has its own bounded queue and writer task, so a
slow or dead home only fills its own queue; when that is full the home is dropped (it resumes
from its last acknowledged sequence when it reconnects) and never delays the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
import contextlib
from dataclasses import dataclass, field
import logging

from aiohttp import WSCloseCode, web

from smart_community_protocol import Placement, addresses
from smart_community_protocol.push import encode_signal

from .ledger import StoredSignal

_LOGGER = logging.getLogger(__name__)


def signal_frame(signal: StoredSignal) -> str:
    """The WebSocket frame for a stored signal; its signed JSON is embedded unchanged."""
    return encode_signal(signal.seq, signal.object_type, signal.operation, signal.body)


@dataclass(eq=False, slots=True)
class HomeConnection:
    """One home's WebSocket, its queue and its writer."""

    placement: Placement
    socket: web.WebSocketResponse
    queue: asyncio.Queue[tuple[int, str]]
    targets: frozenset[str] = field(init=False)
    last_sent: int = 0
    replaying: bool = True
    pending: list[tuple[int, str]] = field(default_factory=list)
    dropped: bool = False

    def __post_init__(self) -> None:
        """Cache the targets that address this home."""
        self.targets = self.placement.targets

    def offer(self, seq: int, frame: str) -> bool:
        """Queue a frame; False when the home cannot keep up."""
        if self.replaying:
            self.pending.append((seq, frame))
            return True
        try:
            self.queue.put_nowait((seq, frame))
        except asyncio.QueueFull:
            return False
        return True

    def finish_replay(self, replayed_up_to: int) -> bool:
        """Move live frames that arrived during the replay behind it (skipping duplicates)."""
        self.replaying = False
        self.last_sent = max(self.last_sent, replayed_up_to)
        pending, self.pending = self.pending, []
        return all(self.offer(seq, frame) for seq, frame in pending if seq > replayed_up_to)

    async def write_loop(self) -> None:
        """Send queued frames in order until the socket closes."""
        while not self.socket.closed:
            seq, frame = await self.queue.get()
            if seq and seq <= self.last_sent:
                continue
            await self.socket.send_str(frame)
            self.last_sent = max(self.last_sent, seq)


class Relay:
    """The registry of connected homes."""

    def __init__(self) -> None:
        """Start empty."""
        self._connections: set[HomeConnection] = set()
        self.relayed = 0
        self.dropped = 0

    @property
    def connected(self) -> int:
        """How many homes are connected."""
        return len(self._connections)

    def queue_depths(self) -> list[int]:
        """Frames waiting per connection."""
        return [c.queue.qsize() + len(c.pending) for c in self._connections]

    def connected_homes(self) -> set[str]:
        """Ids of the homes connected now."""
        return {connection.placement.home for connection in self._connections}

    def register(self, connection: HomeConnection) -> None:
        """Start relaying to a connection."""
        self._connections.add(connection)

    def unregister(self, connection: HomeConnection) -> None:
        """Stop relaying to a connection."""
        self._connections.discard(connection)

    def publish(self, signal: StoredSignal) -> int:
        """Queue a committed signal to every connected home it addresses; returns how many."""
        frame = signal_frame(signal)
        return self._fan_out(signal.seq, frame, signal.audience)

    def inject(self, frame: str, audience: Iterable[str]) -> int:
        """Queue an arbitrary frame (operators' notices; tests of a compromised relay)."""
        return self._fan_out(0, frame, tuple(audience))

    def _fan_out(self, seq: int, frame: str, audience: tuple[str, ...]) -> int:
        sent = 0
        for connection in tuple(self._connections):
            if not addresses(list(audience), connection.targets):
                continue
            if connection.offer(seq, frame):
                sent += 1
            else:
                self.drop(connection, "queue full: the home is not reading")
        self.relayed += sent
        return sent

    def drop(self, connection: HomeConnection, why: str) -> None:
        """Disconnect a home that cannot keep up; it resumes later from its last ack."""
        if connection.dropped:
            return
        connection.dropped = True
        self.unregister(connection)
        _LOGGER.warning("dropping home %s: %s", connection.placement.home, why)
        self.dropped += 1
        task = asyncio.get_running_loop().create_task(
            connection.socket.close(
                code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow; resume later"
            )
        )
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

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
        # A socket that is already gone has nothing to report.
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def close_all(self) -> None:
        """Close every connection with GOING_AWAY (shutdown)."""
        connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.socket.close(
                    code=WSCloseCode.GOING_AWAY, message=b"bridge shutting down"
                )
