"""The bridge relays verified grid signals to the homes they address, and nothing else."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
import socket
from typing import Any

from aiohttp import WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient
import pytest

from smart_community_bridge import homes
from smart_community_bridge.state import INTAKE, LEDGER, RELAY, UPSTREAM
from smart_community_protocol import SIGNATURE_FIELD, Operation, Signer, Verifier

from .conftest import HOME_A, HOME_B, BridgeFactory, auth, event, signed


async def receive(ws: Any, kind: str = "signal", wait: float = 5) -> dict[str, Any]:
    """The next message of a kind (skipping others)."""
    async with asyncio.timeout(wait):
        while True:
            message = await ws.receive()
            assert message.type is WSMsgType.TEXT, message
            data: dict[str, Any] = json.loads(message.data)
            if data["type"] == kind:
                return data


async def test_home_endpoints_require_a_valid_credential(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    for headers in (
        {},
        auth("sch_wrong"),
        auth("not-even-the-format"),
        {"Authorization": "Basic x"},
    ):
        for path in ("/home", "/programs", "/events"):
            response = await bridge.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert (await response.json())["status"] == 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await bridge.ws_connect("/ws")
    assert refused.value.status == 401

    response = await bridge.get("/home", headers=auth(credentials["a"]))
    assert await response.json() == {
        "home": "a",
        "community": "c1",
        "feeder": "f1",
        "transformer": "t1",
        "targets": sorted(HOME_A.targets),
    }


async def test_keys_are_the_pinned_grid_keys(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    response = await bridge.get("/keys")  # public: a home pins them before it has a credential
    assert [key["kid"] for key in (await response.json())["keys"]] == [signer.public_key.kid]


async def test_signal_reaches_targeted_homes_with_signature_intact(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    ws_a = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    ws_b = await bridge.ws_connect("/ws", headers=auth(credentials["b"]))
    assert (await receive(ws_a, "welcome"))["home"] == "a"
    await receive(ws_b, "welcome")

    for_t1 = signed(signer, event("t1-only", targets=["transformer:c1/t1"]))
    everyone = signed(signer, event("all"))
    await bridge.app[INTAKE].accept(for_t1, Operation.CREATE)
    await bridge.app[INTAKE].accept(everyone, Operation.CREATE)

    first = await receive(ws_a)
    second = await receive(ws_a)
    assert [first["notification"]["object"]["id"], second["notification"]["object"]["id"]] == [
        "t1-only",
        "all",
    ]
    assert second["seq"] > first["seq"]
    assert first["notification"]["operation"] == "CREATE"
    assert (await receive(ws_b))["notification"]["object"]["id"] == "all"  # b is on t2

    # What the home receives verifies against the grid key: the relay changed nothing.
    home_verifier = Verifier([signer.public_key], audience=HOME_A.targets)
    assert home_verifier.verify(first["notification"]["object"]).object_id == "t1-only"
    await ws_a.close()
    await ws_b.close()


async def test_forged_and_replayed_signals_are_dropped(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    await receive(ws, "welcome")
    intake = bridge.app[INTAKE]
    genuine = signed(signer, event("e1"))
    tampered = {**genuine, "eventName": "changed on the way"}
    intruder = signed(Signer.generate("test-grid"), event("e2"))
    elsewhere = signed(signer, event("e3", targets=["community:other"]))

    assert await intake.accept(tampered) is None
    assert await intake.accept(intruder) is None
    assert await intake.accept(elsewhere) is None
    assert await intake.accept(genuine) is not None
    assert await intake.accept(genuine) is None  # the same version again (webhook and poll)
    assert dict(intake.rejected) == {"bad_signature": 1, "unknown_key": 1, "wrong_audience": 1}

    assert (await receive(ws))["notification"]["object"]["id"] == "e1"
    with pytest.raises(TimeoutError):
        await receive(ws, wait=0.3)
    assert await bridge.app[LEDGER].last_seq() == 1


async def test_resume_replays_exactly_the_missed_signals(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    intake = bridge.app[INTAKE]
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    await receive(ws, "welcome")
    await intake.accept(signed(signer, event("e1")))
    seen = (await receive(ws))["seq"]
    await ws.send_json({"type": "ack", "seq": seen})
    await ws.close()

    await intake.accept(signed(signer, event("e2")))
    await intake.accept(signed(signer, event("other", targets=["transformer:c1/t2"])))
    await intake.accept(signed(signer, event("e3")))

    ws = await bridge.ws_connect(f"/ws?since={seen}", headers=auth(credentials["a"]))
    welcome = await receive(ws, "welcome")
    assert welcome["last_seq"] == 4
    replayed = [await receive(ws) for _ in range(2)]
    assert [m["notification"]["object"]["id"] for m in replayed] == ["e2", "e3"]
    await intake.accept(signed(signer, event("e4")))
    assert (await receive(ws))["notification"]["object"]["id"] == "e4"
    with pytest.raises(TimeoutError):
        await receive(ws, wait=0.3)
    await ws.close()


async def test_rest_resync_returns_latest_active_versions(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    intake = bridge.app[INTAKE]
    await intake.accept(signed(signer, event("e1", value=1)))
    await intake.accept(signed(signer, event("e1", value=3), operation=Operation.UPDATE))
    await intake.accept(signed(signer, event("ended", start_in=-7200, minutes=30)))
    await intake.accept(signed(signer, event("for-b", targets=["home:c1/b"])))
    gone = event("deleted")
    await intake.accept(signed(signer, gone))
    await intake.accept(signed(signer, gone, operation=Operation.DELETE), Operation.DELETE)

    response = await bridge.get(
        "/events", params={"active": "true"}, headers=auth(credentials["a"])
    )
    events = await response.json()
    assert [e["id"] for e in events] == ["e1"]
    assert events[0]["intervals"][0]["payloads"][0]["values"] == [3]
    assert SIGNATURE_FIELD in events[0]
    response = await bridge.get("/events", headers=auth(credentials["a"]))
    assert sorted(e["id"] for e in await response.json()) == ["e1", "ended"]
    response = await bridge.get(
        "/events", params={"active": "maybe"}, headers=auth(credentials["a"])
    )
    assert response.status == 400
    assert "active" in (await response.json())["detail"]


async def open_stalled_home(bridge: TestClient[Any, Any], credential: str) -> socket.socket:
    """A home that completes the handshake and then never reads (a tiny receive buffer)."""
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(stalled, (bridge.host, bridge.port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        stalled,
        (
            f"GET /ws?since=0 HTTP/1.1\r\nHost: {bridge.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {credential}\r\n\r\n"
        ).encode(),
    )
    received = b""
    async with asyncio.timeout(5):
        while b'"welcome"' not in received:  # once welcomed, the home is registered for relay
            received += await loop.sock_recv(stalled, 1)
    assert received.startswith(b"HTTP/1.1 101"), received
    return stalled


async def test_home_that_stops_reading_is_dropped_and_resumes(
    make_bridge: BridgeFactory, signer: Signer
) -> None:
    bridge = await make_bridge(home_send_buffer_kb=16)
    ledger, relay = bridge.app[LEDGER], bridge.app[RELAY]
    stalled_credential = await homes.add_home(ledger, HOME_A)
    reader_credential = await homes.add_home(ledger, HOME_B)
    reader = await bridge.ws_connect("/ws", headers=auth(reader_credential))
    await receive(reader, "welcome")
    stalled = await open_stalled_home(bridge, stalled_credential)
    assert relay.connected == 2

    padding = "x" * 60_000  # big signals fill the kernel's buffers, then the bridge's
    published = 0
    async with asyncio.timeout(10):
        while relay.connected == 2:
            published += 1
            body = signed(signer, {**event(f"e{published}"), "X_padding": padding})
            assert await bridge.app[INTAKE].accept(body) is not None
            await asyncio.sleep(0)  # let the kernel move what it can
    assert relay.dropped == 1
    assert relay.connected_homes() == {"b"}  # the reading home is still served, in full
    seqs = [(await receive(reader))["seq"] for _ in range(published)]
    assert seqs == list(range(1, published + 1))
    stalled.close()

    # The dropped home comes back and gets exactly what it had not acknowledged.
    resumed = await bridge.ws_connect("/ws?since=0", headers=auth(stalled_credential))
    await receive(resumed, "welcome")
    assert [(await receive(resumed))["seq"] for _ in range(published)] == seqs
    with pytest.raises(TimeoutError):
        await receive(resumed, wait=0.3)
    await resumed.close()
    await reader.close()


async def test_grid_webhook(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    response = await bridge.get("/grid/notifications", params={"echo": "abc123"})
    assert await response.text() == "abc123"
    assert (await bridge.get("/grid/notifications")).status == 400

    notification = {
        "objectType": "EVENT",
        "operation": "CREATE",
        "object": signed(signer, event("e1")),
    }
    response = await bridge.post("/grid/notifications", json=notification)
    assert response.status == 401
    token = bridge.app[UPSTREAM].webhook_token
    headers = auth(token)
    response = await bridge.post("/grid/notifications", data="{not json", headers=headers)
    assert response.status == 400
    response = await bridge.post(
        "/grid/notifications", json={"objectType": "EVENT"}, headers=headers
    )
    assert response.status == 400
    assert "operation" in (await response.json())["detail"]
    response = await bridge.post("/grid/notifications", json=notification, headers=headers)
    assert response.status == 200
    events = await (await bridge.get("/events", headers=auth(credentials["a"]))).json()
    assert [e["id"] for e in events] == ["e1"]
    response = await bridge.post("/grid/notifications", data=b"x" * 300_000, headers=headers)
    assert response.status == 413


async def test_restart_keeps_signals_and_rejects_old_versions(
    make_bridge: BridgeFactory, signer: Signer, tmp_path: Path
) -> None:
    first = await make_bridge()
    old = signed(signer, event("e1", value=1))
    new = signed(signer, event("e1", value=2))
    await first.app[INTAKE].accept(new)
    await first.close()

    second = await make_bridge()
    assert await second.app[INTAKE].accept(old) is None
    assert await second.app[INTAKE].accept(new) is None
    assert await second.app[LEDGER].last_seq() == 1
