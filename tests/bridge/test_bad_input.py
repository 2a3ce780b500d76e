"""Bad input: every malformed body, frame or connection gets a clear refusal, and nothing breaks.

Bounded fuzzing (hypothesis) of the REST bodies and WebSocket frames the bridge parses; after
each run the bridge still serves a well-behaved home and its database is intact.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
import sqlite3
from typing import Any

from aiohttp import ClientSession, WSMsgType, web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from smart_community_bridge import homes
from smart_community_bridge.app import create_app
from smart_community_bridge.state import CONFIG, INTAKE, LEDGER, UPSTREAM
from smart_community_protocol.push import encode_report
from tests.loopback import free_port

from .conftest import HOME_A, auth, bridge_config, event, signed

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)
# Bodies shaped like the real ones, so fuzzing reaches past the first check.
report_like = st.fixed_dictionaries(
    {"eventID": json_values | st.just("X_TELEMETRY"), "clientName": json_values | st.just("h")},
    optional={
        "resources": st.lists(
            st.fixed_dictionaries(
                {
                    "resourceName": json_values,
                    "intervals": st.lists(
                        json_values
                        | st.fixed_dictionaries({"id": json_values, "payloads": json_values}),
                        max_size=3,
                    ),
                },
                optional={"intervalPeriod": json_values},
            ),
            max_size=3,
        ),
        "payloadDescriptors": json_values,
    },
)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ACCEPTED_STATUSES = {200, 201, 400, 401, 403, 404, 405, 413}


async def assert_still_serving(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Any
) -> None:
    """A well-behaved home still gets signals, and SQLite finds nothing wrong with its file."""
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["b"]))
    assert (await ws.receive_json())["type"] == "welcome"
    marker = f"after-{id(ws)}"
    await bridge.app[INTAKE].accept(signed(signer, event(marker)))
    async with asyncio.timeout(5):
        while True:
            message = json.loads((await ws.receive()).data)
            if message["type"] == "signal" and message["notification"]["object"]["id"] == marker:
                break
    await ws.close()
    with sqlite3.connect(bridge.app[CONFIG].database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@FUZZ
@given(body=json_values | report_like)
async def test_fuzzed_report_bodies(
    bridge: TestClient[Any, Any], credentials: dict[str, str], body: Any
) -> None:
    response = await bridge.post("/reports", data=json.dumps(body), headers=auth(credentials["a"]))
    assert response.status in {201, 400}, await response.text()
    if response.status == 400:
        assert (await response.json())["detail"]


@FUZZ
@given(
    body=json_values,
    path=st.sampled_from(["/enroll", "/operator/enrollment-codes", "/grid/notifications"]),
)
async def test_fuzzed_bodies_elsewhere(bridge: TestClient[Any, Any], body: Any, path: str) -> None:
    headers = auth(bridge.app[UPSTREAM].webhook_token) if path.startswith("/grid") else {}
    response = await bridge.post(path, data=json.dumps(body), headers=headers)
    assert response.status in ACCEPTED_STATUSES, (path, response.status, await response.text())


@FUZZ
@given(
    frames=st.lists(
        st.text(max_size=200)
        | json_values.map(json.dumps)
        | report_like.map(lambda r: encode_report(1, r)),
        min_size=1,
        max_size=8,
    )
)
async def test_fuzzed_push_frames(
    bridge: TestClient[Any, Any], credentials: dict[str, str], frames: list[str]
) -> None:
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    assert (await ws.receive_json())["type"] == "welcome"
    for frame in frames:
        await ws.send_str(frame)
    await ws.close()


async def test_fuzzing_leaves_the_bridge_whole(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Any
) -> None:
    """One more round of each kind, then a normal home must be served as before."""
    for body in ([], {"eventID": 1}, "x", {"resources": [{"intervals": [None]}]}):
        response = await bridge.post(
            "/reports", data=json.dumps(body), headers=auth(credentials["a"])
        )
        assert response.status == 400
    response = await bridge.post(
        "/reports", data=b"\xff\xfe not utf-8", headers=auth(credentials["a"])
    )
    assert response.status == 400
    await assert_still_serving(bridge, credentials, signer)


async def test_oversized_bodies_and_frames_are_refused(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Any
) -> None:
    response = await bridge.post(
        "/reports", data=b"{" + b" " * 300_000 + b"}", headers=auth(credentials["a"])
    )
    assert response.status == 413
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    assert (await ws.receive_json())["type"] == "welcome"
    await ws.send_str("x" * 100_000)
    async with asyncio.timeout(5):
        closing = await ws.receive()
    assert closing.type is WSMsgType.CLOSE
    assert closing.data == 1009  # message too big
    await assert_still_serving(bridge, credentials, signer)


async def test_binary_frames_close_the_socket_and_bad_since_is_refused(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    response = await bridge.get(
        "/ws", params={"since": "yesterday"}, headers=auth(credentials["a"])
    )
    assert response.status == 400
    assert "since" in (await response.json())["detail"]
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    await ws.receive_json()
    await ws.send_bytes(b"\x00\x01")
    async with asyncio.timeout(5):
        assert (await ws.receive()).type in {WSMsgType.CLOSE, WSMsgType.CLOSED}


async def test_a_flood_of_connections_leaves_others_served(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Any
) -> None:
    """Hundreds of sockets at once, half of them without credentials: each gets its answer."""

    async def attempt(index: int) -> int:
        headers = auth(credentials["a"]) if index % 2 else {}
        try:
            ws = await bridge.ws_connect("/ws", headers=headers)
        except Exception as err:  # noqa: BLE001 - the refusal is the expected outcome here
            return getattr(err, "status", 0)
        await ws.close()
        return 101

    outcomes = await asyncio.gather(*(attempt(i) for i in range(300)))
    assert outcomes.count(401) == 150
    assert outcomes.count(101) == 150
    await assert_still_serving(bridge, credentials, signer)


async def test_a_home_hanging_up_during_the_handshake_is_no_error(
    tmp_path: Path,
    signer: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A home that hangs up after asking for the push channel and before the bridge answers
    (it restarts, its integration reloads) is let go quietly: nothing logged as an error.

    Served as the bridge serves (aiohttp's test server cancels a handler whose client has
    gone, which production does not)."""
    app = create_app(bridge_config(tmp_path))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        app[INTAKE].verifier.pin([signer.public_key])
        credential = await homes.add_home(app[LEDGER], HOME_A)
        reached, go = asyncio.Event(), asyncio.Event()
        prepare = web.WebSocketResponse.prepare

        async def held_prepare(self: web.WebSocketResponse, request: web.BaseRequest) -> Any:
            reached.set()
            await go.wait()
            return await prepare(self, request)

        monkeypatch.setattr(web.WebSocketResponse, "prepare", held_prepare)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                "GET /ws?since=0 HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {credential}\r\n\r\n"
            ).encode()
        )
        await asyncio.wait_for(reached.wait(), 5)
        writer.transport.abort()
        await asyncio.sleep(0.1)  # the bridge sees the connection go
        go.set()
        await asyncio.sleep(0.1)  # and answers into it
        monkeypatch.undo()
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        async with (
            ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/ws", headers=auth(credential)) as ws,
        ):
            assert (await ws.receive_json())["type"] == "welcome"
    finally:
        await runner.cleanup()
