"""The bridge client alone: what each kind of answer becomes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
import socket
from typing import Any

from aiohttp import ClientSession, WSMsgType, web
import pytest

from custom_components.smart_community.bridge_client import (
    BridgeAuthenticationError,
    BridgeClient,
    BridgeConnectionError,
    BridgeError,
    BridgeRefusedError,
    BridgeResponseError,
)
from custom_components.smart_community.protocol import jwks
from custom_components.smart_community.protocol.push import Signal

from .conftest import CREDENTIAL, PLACEMENT
from .fake_bridge import FakeBridge, FakeGrid

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Peer:
    """A server on 127.0.0.1 whose answer to each path the test chooses."""

    def __init__(self) -> None:
        """No routes answer yet."""
        self.handlers: dict[str, Handler] = {}
        self.release = asyncio.Event()  # lets handlers that hang finish at teardown
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen on an ephemeral port."""
        app = web.Application()
        app.router.add_get("/{path:.*}", self._dispatch)
        app.router.add_post("/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Let hanging handlers finish, then stop."""
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        return await self.handlers[request.path](request)

    def answer(self, path: str, response: Callable[[], web.StreamResponse]) -> None:
        """Answer ``path`` with a fresh ``response()``."""

        async def _handler(_request: web.Request) -> web.StreamResponse:
            return response()

        self.handlers[path] = _handler

    def push(self, *frames: Any, close: bool = True) -> None:
        """Serve /ws: send the frames (str: text, bytes: binary, other: JSON), then close.

        Without ``close`` the server keeps reading until the client closes.
        """

        async def _handler(request: web.Request) -> web.StreamResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            for frame in frames:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                elif isinstance(frame, str):
                    await ws.send_str(frame)
                else:
                    await ws.send_json(frame)
            if not close:
                async for _message in ws:
                    pass
            await ws.close()
            return ws

        self.handlers["/ws"] = _handler

    def hang(self, path: str) -> None:
        """Never answer ``path`` (until teardown)."""

        async def _handler(_request: web.Request) -> web.StreamResponse:
            await self.release.wait()
            return web.Response()

        self.handlers[path] = _handler


WELCOME = {"type": "welcome", "home": "h1", "last_seq": 3, "heartbeat": 30}


@pytest.fixture
async def session() -> AsyncGenerator[ClientSession]:
    """A plain aiohttp session: the client needs no Home Assistant."""
    async with ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def peer(socket_enabled: None) -> AsyncGenerator[Peer]:
    """A server whose answers each test chooses."""
    server = Peer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def client(peer: Peer, session: ClientSession) -> BridgeClient:
    """A client of the peer, with a short timeout."""
    return BridgeClient(peer.url, CREDENTIAL, session=session, request_timeout=0.2)


async def test_against_the_fake_bridge(socket_enabled: None, session: ClientSession) -> None:
    """Every call of the client understands the fake bridge, push included."""
    grid = FakeGrid(PLACEMENT.community)
    bridge = FakeBridge(PLACEMENT, CREDENTIAL, [grid.public_key])
    await bridge.start()
    try:
        signed = grid.sign({"id": "p1", "objectType": "PROGRAM"})
        bridge.serve(signed)
        await bridge.push({"objectType": "PROGRAM", "operation": "CREATE", "object": signed})
        client = BridgeClient(f"{bridge.url}/", CREDENTIAL, session=session)
        assert await client.get_home() == PLACEMENT
        assert [key.kid for key in await client.get_keys()] == [grid.public_key.kid]
        assert await client.get_programs() == [signed]
        assert await client.get_events(active=False) == []
        async with client.push(since=0) as stream:
            assert stream.welcome.home == "h1"
            assert stream.welcome.last_seq == 1
            signal = await anext(aiter(stream))
            assert signal == Signal(
                seq=1,
                notification={"objectType": "PROGRAM", "operation": "CREATE", "object": signed},
            )
            await stream.ack(1)
            await bridge.wait_for_ack(1)
        assert bridge.since == [0]
    finally:
        await bridge.stop()


def _json(body: Any, status: int = 200) -> Callable[[], web.StreamResponse]:
    return lambda: web.json_response(body, status=status)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (_json({}, 401), BridgeAuthenticationError),
        (_json({}, 403), BridgeAuthenticationError),
        (_json({}, 502), BridgeConnectionError),
        (_json({}, 404), BridgeResponseError),
        (lambda: web.Response(text="<html/>", content_type="text/html"), BridgeResponseError),
        (lambda: web.Response(text="{", content_type="application/json"), BridgeResponseError),
        (_json([]), BridgeResponseError),
        (_json({"home": "h1"}), BridgeResponseError),
        (
            _json({"home": "h 1", "community": "c1", "feeder": "f", "transformer": "t"}),
            BridgeResponseError,
        ),
    ],
)
async def test_home_errors(
    peer: Peer,
    client: BridgeClient,
    response: Callable[[], web.StreamResponse],
    error: type[BridgeError],
) -> None:
    """Refusals, outages and answers outside the protocol each get their own error."""
    peer.answer("/home", response)
    with pytest.raises(error):
        await client.get_home()


@pytest.mark.parametrize("body", [[], {"keys": []}, {"keys": [{"kty": "RSA"}]}, jwks([])], ids=str)
async def test_unusable_keys(peer: Peer, client: BridgeClient, body: Any) -> None:
    """A key set the home cannot pin is an answer outside the protocol."""
    peer.answer("/keys", _json(body))
    with pytest.raises(BridgeResponseError):
        await client.get_keys()


@pytest.mark.parametrize("body", [{}, [1], "x"])
async def test_unusable_lists(peer: Peer, client: BridgeClient, body: Any) -> None:
    """Programs and events must come as a JSON array of objects."""
    peer.answer("/events", _json(body))
    with pytest.raises(BridgeResponseError):
        await client.get_events()


async def test_timeout(peer: Peer, client: BridgeClient) -> None:
    """A bridge that does not answer in time counts as unreachable."""
    peer.hang("/programs")
    with pytest.raises(BridgeConnectionError, match="timed out"):
        await client.get_programs()


async def test_unreachable(socket_enabled: None, session: ClientSession) -> None:
    """Nothing listening: a connection error, for REST and push alike."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = BridgeClient(f"http://127.0.0.1:{port}", CREDENTIAL, session=session)
    with pytest.raises(BridgeConnectionError):
        await client.get_programs()
    with pytest.raises(BridgeConnectionError):
        async with client.push(since=0):
            pass


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, BridgeAuthenticationError), (503, BridgeConnectionError), (404, BridgeResponseError)],
)
async def test_push_refused(
    peer: Peer, client: BridgeClient, status: int, error: type[BridgeError]
) -> None:
    """A handshake the bridge refuses is classified like a REST answer."""
    peer.answer("/ws", _json({}, status))
    with pytest.raises(error):
        async with client.push(since=0):
            pass


async def test_push_open_times_out(peer: Peer, client: BridgeClient) -> None:
    """A handshake that never completes times out."""
    peer.hang("/ws")
    with pytest.raises(BridgeConnectionError, match="timed out"):
        async with client.push(since=0):
            pass


async def test_push_without_welcome(peer: Peer, client: BridgeClient) -> None:
    """A channel that stays silent after the handshake is given up."""
    peer.push(close=False)
    with pytest.raises(BridgeConnectionError, match="no welcome"):
        async with client.push(since=0):
            pass


@pytest.mark.parametrize(
    "first", [{"type": "signal", "seq": 1}, {"type": "welcome", "home": "h1"}, "[]", "{", b"\x00"]
)
async def test_push_bad_welcome(peer: Peer, client: BridgeClient, first: Any) -> None:
    """The first message must be a welcome."""
    peer.push(first)
    with pytest.raises(BridgeResponseError):
        async with client.push(since=0):
            pass


async def _receive(client: BridgeClient, received: list[Signal]) -> None:
    async with client.push(since=3) as stream:
        async for signal in stream:
            received.append(signal)  # noqa: PERF401 - what came before a failure is kept


async def test_push_closed(peer: Peer, client: BridgeClient) -> None:
    """Signals arrive in order; unknown messages are skipped; a close ends the stream."""
    notification = {"objectType": "EVENT", "operation": "DELETE", "object": {}}
    peer.push(
        WELCOME, {"type": "later"}, {"type": "signal", "seq": 4, "notification": notification}
    )
    received: list[Signal] = []
    with pytest.raises(BridgeConnectionError, match="closed"):
        await _receive(client, received)
    assert received == [Signal(seq=4, notification=notification)]


@pytest.mark.parametrize(
    "frame", [{"type": "signal", "seq": "4", "notification": {}}, {"type": "signal", "seq": 4}]
)
async def test_push_bad_signal(peer: Peer, client: BridgeClient, frame: Any) -> None:
    """A signal needs an integer sequence and a notification object."""
    peer.push(WELCOME, frame)
    with pytest.raises(BridgeResponseError):
        await _receive(client, [])


async def test_push_broken_frame(peer: Peer, client: BridgeClient) -> None:
    """A frame the WebSocket layer cannot read fails the channel."""

    async def _handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json(WELCOME)
        await ws.send_frame(b"\xff\xfe", WSMsgType.TEXT)  # not UTF-8
        await peer.release.wait()
        return ws

    peer.handlers["/ws"] = _handler
    with pytest.raises(BridgeConnectionError, match="failed"):
        await _receive(client, [])


async def test_ack_on_closed_channel(peer: Peer, client: BridgeClient) -> None:
    """Acknowledging on a channel that is gone is a connection error."""
    peer.push(WELCOME, close=False)
    async with client.push(since=3) as stream:
        await stream.close()
        with pytest.raises(BridgeConnectionError):
            await stream.ack(4)


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Mon, 01 Jun 2026 08:02:00 GMT", 120.0),
        ("Mon, 01 Jun 2026 07:59:30 GMT", -30.0),
        ("Mon, 01 Jun 2026 08:02:00 -0000", None),  # no zone: no comparison
        ("not a date", None),
    ],
)
async def test_clock_offset_from_the_date_header(
    peer: Peer, client: BridgeClient, frozen_now: Any, date: str, expected: float | None
) -> None:
    """The bridge's clock is read from its Date header, when it gives a usable one."""
    peer.answer("/programs", lambda: web.json_response([], headers={"Date": date}))
    assert client.clock_offset is None
    await client.get_programs()
    offset = client.clock_offset
    assert (offset.total_seconds() if offset is not None else None) == expected


async def test_reports_and_resources_at_the_fake_bridge(
    socket_enabled: None, session: ClientSession
) -> None:
    """Reports and resources go up; the stored ones come back."""
    bridge = FakeBridge(PLACEMENT, CREDENTIAL, [])
    await bridge.start()
    try:
        client = BridgeClient(bridge.url, CREDENTIAL, session=session)
        report = {"eventID": "X_TELEMETRY", "clientName": "h1", "resources": [{"x": 1}]}
        assert (await client.post_report(report))["id"] == "report-1"
        assert bridge.reports == [report]
        stored = await client.post_resource({"resourceName": "PV", "attributes": []})
        assert stored["X_CONNECTION_STATUS"] == "REQUESTED"
        assert await client.get_resources() == [stored]
    finally:
        await bridge.stop()


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (_json({"detail": "eventID: required"}, 400), BridgeRefusedError, "eventID: required"),
        (lambda: web.Response(text="no", status=400), BridgeRefusedError, "status 400"),
        (_json({}, 503), BridgeConnectionError, "unavailable"),
        (_json({}, 401), BridgeAuthenticationError, "refused"),
        (_json([], 201), BridgeResponseError, "JSON object"),
        (lambda: web.Response(text="<p/>", status=201), BridgeResponseError, "JSON"),
    ],
)
async def test_report_errors(
    peer: Peer,
    client: BridgeClient,
    response: Callable[[], web.StreamResponse],
    error: type[BridgeError],
    message: str,
) -> None:
    """A refused report says why; an outage is worth trying again; odd answers are errors."""
    peer.answer("/reports", response)
    with pytest.raises(error, match=message):
        await client.post_report({"eventID": "X_TELEMETRY"})
