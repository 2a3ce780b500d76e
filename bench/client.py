"""A client process of the benchmark: many simulated homes speaking the bridge's push protocol.

Each home opens ``GET /ws?since=<last acknowledged seq>`` with its own bearer credential from its
own loopback source address, checks the welcome, then for every signal frame: verifies the grid
signature against the keys the process read from the bridge's ``/keys``, checks the audience and
its own replay guard, records when it had the signal, and acknowledges it. A lost connection is
retried with the integration's jittered exponential backoff, resuming after the last ack.
For the ingest phase, homes send OpenADR reportRequests over the same channel (``report``
frames) and time the bridge's ``report_result`` answers.

Shared verification: every home of one process that receives byte-identical frame text reuses
the one JSON decode and signature check done for those exact bytes (the frame text is the cache
key); the audience check, the replay guard and the acknowledgement are each home's own.

The orchestrator (``bench.harness``) drives the process with JSON lines on stdin; each answer is
one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
import gc
import json
import math
import os
from pathlib import Path
import random
import socket
import sys
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType
from yarl import URL

from smart_community_protocol import (
    ModelError,
    Notification,
    PublicKey,
    RejectReason,
    ReplayGuard,
    SignalRejected,
    Verifier,
    format_datetime,
    keys_from_jwks,
)
from smart_community_protocol.push import (
    PushMessageError,
    encode_ack,
    encode_report,
    signal_from,
    welcome_from,
)

from .common import (
    emit,
    raise_file_limit,
    reconnect_delay,
    source_address,
    stdin_reader,
)

CONNECT_TIMEOUT = 15.0
CACHE_LIMIT = 512
SLOW_RECEIVE_BUFFER = 4096
_CONNECTION_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, PushMessageError, ValueError)


@dataclass(frozen=True, slots=True)
class Checked:
    """What one frame's exact bytes verified to (shared by every home that got those bytes)."""

    signal: bool
    seq: int = 0
    object_id: str = ""
    version: tuple[str, str, str] = ("", "", "")
    claim_seq: int = 0
    expires: int = 0
    audience: tuple[str, ...] = ()
    rejected: str | None = None
    message: dict[str, Any] | None = None  # a frame that is not a signal (never shared)


class FrameChecker:
    """Decodes and verifies frames, once per distinct frame text."""

    def __init__(self, keys: list[PublicKey]) -> None:
        """Trust the grid keys read from the bridge; audiences are checked per home."""
        self._verifier = Verifier(keys, audience=lambda _target: True)
        self._cache: dict[str, Checked] = {}
        self.frames = 0
        self.verifications = 0
        self.first_frame: dict[str, str] = {}

    def forget(self) -> None:
        """Drop the shared results (a new phase pays for its first verification again)."""
        self._cache.clear()

    def check(self, text: str) -> Checked:
        """The verification result for these exact frame bytes."""
        self.frames += 1
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        checked = self._verify(text)
        if not checked.signal:
            return checked  # per-home answers (report results) are not worth keeping
        self.verifications += 1
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[text] = checked
        if checked.signal and checked.rejected is None:
            self.first_frame.setdefault(checked.object_id, text)
        return checked

    def _verify(self, text: str) -> Checked:
        try:
            message = json.loads(text)
        except ValueError:
            return Checked(signal=False)
        if not isinstance(message, dict):
            return Checked(signal=False)
        if message.get("type") != "signal":
            return Checked(signal=False, message=message)
        try:
            signal = signal_from(message)
            notification = Notification.parse(signal.notification)
        except (PushMessageError, ModelError) as err:
            return Checked(signal=True, rejected=f"{RejectReason.MALFORMED}: {err}")
        try:
            verified = self._verifier.verify(
                notification.object, operation=notification.operation, record=False
            )
        except SignalRejected as err:
            return Checked(signal=True, seq=signal.seq, rejected=str(err.reason))
        claims = verified.claims
        return Checked(
            signal=True,
            seq=signal.seq,
            object_id=verified.object_id,
            version=(claims.iss, verified.object_type, verified.object_id),
            claim_seq=claims.seq,
            expires=claims.exp,
            audience=claims.aud,
        )


@dataclass(eq=False, slots=True)
class Home:
    """One simulated home and what it has applied."""

    index: int
    home_id: str
    credential: str
    targets: frozenset[str]
    source: str
    guard: ReplayGuard = field(default_factory=ReplayGuard)
    last_seq: int = 0
    received: dict[str, float] = field(default_factory=dict)
    wanted: bool = False
    connected: bool = False
    welcomed_at: float = 0.0
    task: asyncio.Task[None] | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    slow: socket.socket | None = None
    duplicates: int = 0
    rejected: int = 0
    drops: int = 0
    connect_errors: int = 0
    next_ref: int = 0
    outstanding: dict[int, float] = field(default_factory=dict)
    answered: asyncio.Event | None = None

    def reset(self) -> None:
        """Forget everything applied (a new bridge, a new installation)."""
        self.guard = ReplayGuard()
        self.last_seq = 0
        self.received = {}


@dataclass(slots=True)
class ReportStats:
    """What became of the reports sent in one ingest run."""

    sent: int = 0
    stored: int = 0
    failed: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    first_sent: float = math.inf
    last_stored: float = 0.0


def report_body(now: float) -> dict[str, Any]:
    """A home's telemetry for the last 10 s, as an OpenADR reportRequest."""
    start = format_datetime(datetime.fromtimestamp(now - now % 10, UTC))
    return {
        "eventID": "X_TELEMETRY",
        "clientName": "home",
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "DEMAND", "units": "KW"},
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE", "units": "KWH"},
        ],
        "resources": [
            {
                "resourceName": "home",
                "intervalPeriod": {"start": start, "duration": "PT10S"},
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [
                            {"type": "DEMAND", "values": [round(random.uniform(0.2, 7.0), 3)]},
                            {"type": "USAGE", "values": [round(random.uniform(0.0, 0.02), 5)]},
                        ],
                    }
                ],
            }
        ],
    }


class Worker:
    """The homes of this process and the commands that drive them."""

    def __init__(self, homes: list[Home], concurrency: int) -> None:
        """Serve ``homes``; at most ``concurrency`` handshakes at once."""
        self.homes = {home.index: home for home in homes}
        self._gate = asyncio.Semaphore(concurrency)
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._url = URL("http://127.0.0.1")
        self.checker: FrameChecker | None = None
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.reports = ReportStats()

    # --- connections -----------------------------------------------------------------------

    def _session(self, source: str) -> aiohttp.ClientSession:
        session = self._sessions.get(source)
        if session is None:
            connector = aiohttp.TCPConnector(limit=0, local_addr=(source, 0), force_close=True)
            session = aiohttp.ClientSession(connector=connector)
            self._sessions[source] = session
        return session

    async def _open(self, home: Home) -> aiohttp.ClientWebSocketResponse:
        async with self._gate, asyncio.timeout(CONNECT_TIMEOUT):
            ws = await self._session(home.source).ws_connect(
                self._url.joinpath("ws").with_query(since=home.last_seq),
                headers={"Authorization": f"Bearer {home.credential}"},
                compress=0,
                autoping=True,
                max_msg_size=8 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
            try:
                first = await ws.receive()
                _check_welcome(first.data if first.type is WSMsgType.TEXT else None, home)
            except BaseException:
                await ws.close()
                raise
        return ws

    async def _run(self, home: Home) -> None:
        failures = 0
        while home.wanted:
            connected = False
            try:
                ws = await self._open(home)
                home.ws = ws
                try:
                    home.connected = connected = True
                    home.welcomed_at = time.monotonic()
                    failures = 0
                    await self._read(home, ws)
                finally:
                    home.connected = False
                    home.ws = None
                    await ws.close()
            except _CONNECTION_ERRORS as err:
                self.errors[type(err).__name__] += 1
                if not connected:
                    home.connect_errors += 1
            if not _wanted(home):  # read again: close() may have run meanwhile
                return
            if connected:
                home.drops += 1
            await asyncio.sleep(reconnect_delay(failures))
            failures += 1

    async def _read(self, home: Home, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            message = await ws.receive()
            if message.type is not WSMsgType.TEXT:
                return
            seq = self._apply(home, message.data)
            if seq is not None:
                await ws.send_str(encode_ack(seq))

    def _apply(self, home: Home, text: str) -> int | None:
        assert self.checker is not None
        checked = self.checker.check(text)
        if not checked.signal:
            if checked.message is not None and checked.message.get("type") == "report_result":
                self._report_result(home, checked.message)
            return None
        if checked.rejected is not None or home.targets.isdisjoint(checked.audience):
            home.rejected += 1
        elif home.guard.check(checked.version, checked.claim_seq) is not None:
            home.duplicates += 1
        else:
            home.guard.record(checked.version, checked.claim_seq, checked.expires)
            if checked.object_id not in home.received:
                home.received[checked.object_id] = time.monotonic()
                self.counts[checked.object_id] += 1
        home.last_seq = max(home.last_seq, checked.seq)
        return checked.seq

    def _report_result(self, home: Home, message: dict[str, Any]) -> None:
        sent = home.outstanding.pop(message.get("ref"), None)  # type: ignore[arg-type]
        if sent is None:
            return
        now = time.monotonic()
        if message.get("status") == 201:
            self.reports.stored += 1
            self.reports.latencies.append(now - sent)
            self.reports.last_stored = max(self.reports.last_stored, now)
        else:
            self.reports.failed[int(message.get("status") or 0)] += 1
        if home.answered is not None:
            home.answered.set()

    async def _send_report(self, home: Home) -> bool:
        ws = home.ws
        if ws is None or ws.closed:
            return False
        home.next_ref += 1
        text = encode_report(home.next_ref, report_body(time.time()))
        sent = time.monotonic()
        home.outstanding[home.next_ref] = sent
        self.reports.sent += 1
        self.reports.first_sent = min(self.reports.first_sent, sent)
        await ws.send_str(text)
        return True

    async def _report_loop(self, home: Home, paced: bool, rate: float, deadline: float) -> None:
        if paced:
            period = 1.0 / rate
            due = time.monotonic() + random.uniform(0.0, period)
            while due < deadline:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if not await self._send_report(home):
                    return
                due += period
            return
        answered = home.answered = asyncio.Event()
        try:
            while time.monotonic() < deadline:
                answered.clear()
                if not await self._send_report(home):
                    return
                async with asyncio.timeout(max(1.0, deadline - time.monotonic()) + 10.0):
                    await answered.wait()
        finally:
            home.answered = None

    async def _open_slow(self, home: Home) -> socket.socket:
        """A home that completes the handshake, reads its welcome, then never reads again."""
        loop = asyncio.get_running_loop()
        host, port = self._url.host or "127.0.0.1", self._url.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER)
            sock.bind((home.source, 0))
            sock.setblocking(False)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, (host, port))
                key = base64.b64encode(os.urandom(16)).decode("ascii")
                request = (
                    f"GET /ws?since={home.last_seq} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: Bearer {home.credential}\r\n\r\n"
                )
                await loop.sock_sendall(sock, request.encode("ascii"))
                buffer = b""
                while b"\r\n\r\n" not in buffer:
                    buffer += await _receive_some(loop, sock)
                head, _, rest = buffer.partition(b"\r\n\r\n")
                _check_upgraded(head)
                _check_welcome(await _first_frame(loop, sock, rest), home)
        except BaseException:
            sock.close()
            raise
        return sock

    # --- commands --------------------------------------------------------------------------

    def _selected(self, indices: list[int] | None) -> list[Home]:
        if indices is None:
            return list(self.homes.values())
        return [self.homes[i] for i in indices if i in self.homes]

    async def target(self, url: str, fetch_keys: bool) -> dict[str, Any]:
        """Talk to the server at ``url`` from now on; read and pin its grid keys if asked."""
        self._url = URL(url)
        if fetch_keys:
            home = next(iter(self.homes.values()))
            async with (
                asyncio.timeout(CONNECT_TIMEOUT),
                self._session(home.source).get(
                    self._url.joinpath("keys"),
                    headers={"Authorization": f"Bearer {home.credential}"},
                ) as response,
            ):
                response.raise_for_status()
                keys = keys_from_jwks(await response.json())
            self.checker = FrameChecker(keys)
            return {"keys": [key.kid for key in keys]}
        return {}

    async def connect(
        self, indices: list[int] | None, fresh: bool, within: float
    ) -> dict[str, Any]:
        """Connect homes (resuming after their last ack) and wait until each has its welcome."""
        started = time.monotonic()
        homes = self._selected(indices)
        if fresh:
            assert self.checker is not None
            self.checker.forget()
            self.counts.clear()
            for home in homes:
                home.reset()
        for home in homes:
            if not home.wanted:
                home.wanted = True
                home.task = asyncio.get_running_loop().create_task(self._run(home))
        deadline = started + within
        # Thousands of homes and no one event to await: poll.
        while time.monotonic() < deadline and not all(home.connected for home in homes):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        connected = sum(home.connected for home in homes)
        return {
            "connected": connected,
            "missing": len(homes) - connected,
            "seconds": time.monotonic() - started,
        }

    async def close(self, indices: list[int] | None) -> dict[str, Any]:
        """Disconnect homes for good (no reconnect)."""
        homes = self._selected(indices)
        tasks: list[asyncio.Future[Any]] = []
        for home in homes:
            home.wanted = False
            if home.ws is not None:
                tasks.append(asyncio.ensure_future(home.ws.close()))
            if home.task is not None:
                home.task.cancel()
                tasks.append(home.task)
                home.task = None
            if home.slow is not None:
                home.slow.close()
                home.slow = None
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"closed": len(homes)}

    async def report(
        self, paced: bool, rate: float, duration: float, drain: float
    ) -> dict[str, Any]:
        """Every connected home reports over its push channel for ``duration`` seconds.

        Paced: each home sends ``rate`` reports a second, from a random phase, whatever the
        answers. Otherwise each home keeps one report outstanding (the next once the bridge has
        stored the last), which finds the most the bridge can store.
        """
        self.reports = ReportStats()
        homes = [home for home in self.homes.values() if home.connected and home.ws is not None]
        deadline = time.monotonic() + duration
        runs = await asyncio.gather(
            *(self._report_loop(home, paced, rate, deadline) for home in homes),
            return_exceptions=True,
        )
        for failure in runs:
            if isinstance(failure, BaseException):
                self.errors[type(failure).__name__] += 1
        settle = time.monotonic() + drain
        while time.monotonic() < settle and any(home.outstanding for home in homes):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        unanswered = sum(len(home.outstanding) for home in homes)
        for home in homes:
            home.outstanding.clear()
        stats = self.reports
        return {
            "homes": len(homes),
            "sent": stats.sent,
            "stored": stats.stored,
            "failed": {str(k): v for k, v in stats.failed.items()},
            "unanswered": unanswered,
            "latencies": [round(x, 5) for x in stats.latencies],
            "first_sent": stats.first_sent if stats.sent else None,
            "last_stored": stats.last_stored or None,
        }

    async def slow(self, indices: list[int]) -> dict[str, Any]:
        """Replace homes' connections with ones that stop reading after the welcome."""
        homes = self._selected(indices)
        await self.close([home.index for home in homes])
        opened = await asyncio.gather(
            *(self._open_slow(home) for home in homes), return_exceptions=True
        )
        ok = 0
        for home, result in zip(homes, opened, strict=True):
            if isinstance(result, socket.socket):
                home.slow = result
                ok += 1
            else:
                self.errors[type(result).__name__] += 1
        return {"slow": ok, "failed": len(homes) - ok}

    async def times(
        self, events: list[str], indices: list[int] | None, within: float, frames: bool
    ) -> dict[str, Any]:
        """Per home (connected ones by default) the time it had verified every one of events."""
        homes = (
            [home for home in self.homes.values() if home.wanted]
            if indices is None
            else self._selected(indices)
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(self.counts[event] >= len(homes) for event in events) and all(
                all(event in home.received for event in events) for home in homes
            ):
                break
            await asyncio.sleep(0.01)
        had: list[float | None] = []
        for home in homes:
            stamps = [home.received.get(event) for event in events]
            had.append(None if None in stamps else max(s for s in stamps if s is not None))
        answer: dict[str, Any] = {
            "indices": [home.index for home in homes],
            "times": had,
            "welcomed": [home.welcomed_at for home in homes],
        }
        if frames and self.checker is not None:
            answer["frames"] = {e: self.checker.first_frame.get(e) for e in events}
        return answer

    def stats(self) -> dict[str, Any]:
        """Counters of this process."""
        homes = self.homes.values()
        return {
            "homes": len(self.homes),
            "connected": sum(home.connected for home in homes),
            "frames": self.checker.frames if self.checker else 0,
            "verifications": self.checker.verifications if self.checker else 0,
            "duplicates": sum(home.duplicates for home in homes),
            "rejected": sum(home.rejected for home in homes),
            "drops": sum(home.drops for home in homes),
            "connect_errors": sum(home.connect_errors for home in homes),
            "errors": dict(self.errors),
        }

    async def shutdown(self) -> None:
        """Close every connection and session."""
        await self.close(None)
        await asyncio.gather(*(session.close() for session in self._sessions.values()))


def _wanted(home: Home) -> bool:
    return home.wanted


def _check_welcome(text: str | None, home: Home) -> None:
    """PushMessageError unless ``text`` is the welcome of ``home``."""
    if text is None:
        raise PushMessageError("the push channel did not start with a text frame")
    welcome = welcome_from(json.loads(text))
    if welcome.home != home.home_id:
        raise PushMessageError(f"welcome names {welcome.home}, not {home.home_id}")


def _check_upgraded(head: bytes) -> None:
    """ConnectionError unless the response head switches to WebSocket."""
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode("latin-1"))


async def _receive_some(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    chunk = await loop.sock_recv(sock, 4096)
    if not chunk:
        raise ConnectionError("the server closed the connection")
    return chunk


async def _first_frame(loop: asyncio.AbstractEventLoop, sock: socket.socket, buffer: bytes) -> str:
    """The payload of the first (unmasked, unfragmented) server frame."""
    while True:
        if len(buffer) >= 2:
            length = buffer[1] & 0x7F
            offset = {126: 4, 127: 10}.get(length, 2)
            if len(buffer) >= offset:
                if offset > 2:
                    length = int.from_bytes(buffer[2:offset])
                if len(buffer) >= offset + length:
                    return buffer[offset : offset + length].decode("utf-8")
        buffer += await _receive_some(loop, sock)


def load_homes(path: Path, community: str, worker: int, workers: int) -> list[Home]:
    """This process's share of the credentials file (home ``i`` goes to worker ``i % workers``)."""
    homes = []
    with path.open(encoding="utf-8") as file:
        for index, line in enumerate(file):
            if index % workers != worker:
                continue
            entry = json.loads(line)
            c = community
            homes.append(
                Home(
                    index=index,
                    home_id=entry["home"],
                    credential=entry["credential"],
                    targets=frozenset(
                        {
                            f"community:{c}",
                            f"feeder:{c}/{entry['feeder']}",
                            f"transformer:{c}/{entry['transformer']}",
                            f"home:{c}/{entry['home']}",
                        }
                    ),
                    source=source_address(index),
                )
            )
    return homes


async def serve(worker: Worker) -> None:
    """Answer commands until ``exit`` or the end of stdin.

    The automatic garbage collector is off: one process stands for thousands of homes, and a
    full collection over all of them would pause every one of them at once (real homes are
    separate machines). Garbage is collected, and what survives frozen, after each command
    that connects or disconnects homes, never while a fan-out is being timed.
    """
    gc.disable()
    commands = await stdin_reader()
    emit({"ready": True, "homes": len(worker.homes)})
    try:
        while line := await commands.readline():
            command = json.loads(line)
            name = command.pop("cmd")
            ident = command.pop("id", None)
            try:
                result = await _dispatch(worker, name, command)
            except Exception as err:  # noqa: BLE001 - reported to the orchestrator
                emit({"id": ident, "error": f"{type(err).__name__}: {err}"})
            else:
                if name in {"connect", "close", "slow"}:
                    gc.unfreeze()
                    gc.collect()
                    gc.freeze()
                emit({"id": ident, "result": result})
            if name == "exit":
                return
    finally:
        await worker.shutdown()


async def _dispatch(worker: Worker, name: str, args: dict[str, Any]) -> Any:
    match name:
        case "target":
            return await worker.target(args["url"], args.get("fetch_keys", False))
        case "connect":
            return await worker.connect(
                args.get("indices"), args.get("fresh", False), args.get("timeout", 120.0)
            )
        case "close":
            return await worker.close(args.get("indices"))
        case "slow":
            return await worker.slow(args["indices"])
        case "report":
            return await worker.report(
                args["paced"], args.get("rate", 1.0), args["duration"], args.get("drain", 10.0)
            )
        case "times":
            return await worker.times(
                args["events"], args.get("indices"), args["timeout"], args.get("frames", False)
            )
        case "stats":
            return worker.stats()
        case "exit":
            return {}
    raise ValueError(f"unknown command {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.client --credentials FILE --worker I --workers N``."""
    parser = argparse.ArgumentParser(prog="bench.client", description=__doc__)
    parser.add_argument("--credentials", type=Path, required=True)
    parser.add_argument("--community", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    raise_file_limit()
    homes = load_homes(args.credentials, args.community, args.worker, args.workers)

    async def run() -> None:
        await serve(Worker(homes, args.concurrency))

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
