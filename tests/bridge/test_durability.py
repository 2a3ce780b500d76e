"""Nothing acknowledged is lost: the bridge is killed with SIGKILL again and again mid-stream.

A real grid publishes a stream of events (some for one transformer only, some updated later)
while the bridge process is repeatedly killed and restarted and homes drop and resume their
connections. At the end every event the grid published is in the bridge's ledger, and every
home applied every signal addressed to it exactly once (duplicates arrive, and are recognised
and dropped by sequence and by the signature's version).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import random
import signal
import sqlite3
import sys
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
import pytest

from smart_community_bridge import homes
from smart_community_bridge.ledger import Ledger
from smart_community_grid.app import create_app as create_grid
from smart_community_grid.scenario import parse_scenario
from smart_community_protocol import (
    Placement,
    RejectReason,
    SignalRejected,
    Verifier,
    format_datetime,
    keys_from_jwks,
)
from smart_community_protocol.push import encode_ack, signal_from
from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[2]
KILLS = 5
EVENTS = 36


@dataclass
class SimulatedHome:
    """A home that verifies, applies once, acknowledges, and now and then drops its connection."""

    placement: Placement
    credential: str
    last_seq: int = 0
    applied: list[tuple[str, int]] = field(default_factory=list)  # (event id, signature seq)
    duplicates: int = 0
    connections: int = 0
    verifier: Verifier | None = None

    def apply(self, notification: dict[str, Any], seq: int) -> None:
        assert self.verifier is not None
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        try:
            verified = self.verifier.verify(notification["object"], operation=None)
        except SignalRejected as err:
            if err.reason not in {RejectReason.REPLAYED, RejectReason.OLDER_VERSION}:
                raise
            self.duplicates += 1
        else:
            self.applied.append((verified.object_id, verified.claims.seq))
        self.last_seq = seq

    async def run(self, bridge: str, stop: asyncio.Event, rng: random.Random) -> None:
        headers = {"Authorization": f"Bearer {self.credential}"}
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    if self.verifier is None:
                        async with session.get(f"{bridge}/keys", headers=headers) as response:
                            keys = keys_from_jwks(await response.json())
                        self.verifier = Verifier(keys, audience=self.placement.targets)
                    async with session.ws_connect(
                        f"{bridge}/ws?since={self.last_seq}", headers=headers
                    ) as ws:
                        self.connections += 1
                        await self._listen(ws, stop, rng)
                except aiohttp.ClientError, ConnectionError, TimeoutError, ValueError:
                    pass
                await asyncio.sleep(rng.uniform(0.05, 0.3))

    async def _listen(
        self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event, rng: random.Random
    ) -> None:
        """Apply signals until the bridge goes away, or hang up after a few seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(rng.uniform(0.3, 1.5)):
                async for message in ws:
                    if stop.is_set() or message.type is not WSMsgType.TEXT:
                        return
                    data = json.loads(message.data)
                    if data.get("type") != "signal":
                        continue
                    pushed = signal_from(data)
                    self.apply(pushed.notification, pushed.seq)
                    await ws.send_str(encode_ack(pushed.seq))


class BridgeProcess:
    def __init__(self, environment: dict[str, str]) -> None:
        self.environment = environment
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smart_community_bridge", "serve",
            env=self.environment, cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


@pytest.fixture(name="grid")
async def grid_fixture(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    scenario = parse_scenario(
        {
            "grid": "durable-grid",
            "signing_key": "grid.pem",
            "communities": ["c1"],
            "clients": [
                {"client_id": "bl", "secret": "bl-secret", "role": "BL"},
                {"client_id": "bridge", "secret": "ven-secret", "role": "VEN", "community": "c1"},
            ],
            "programs": [{"name": "dr", "targets": ["community:c1"]}],
            "webhooks": {"timeout": 1, "attempts": 2, "backoff": 0.1, "allow_http_loopback": True},
        },
        tmp_path,
    )
    runner = web.AppRunner(create_grid(scenario))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def publish_stream(grid: str, rng: random.Random) -> list[str]:
    """Publish EVENTS events (a third for transformer t2 only), updating every fourth one."""
    published: list[str] = []
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials", "client_id": "bl", "client_secret": "bl-secret"}
        async with session.post(f"{grid}/auth/token", data=form) as response:
            headers = {"Authorization": f"Bearer {(await response.json())['access_token']}"}
        async with session.get(f"{grid}/programs", headers=headers) as response:
            program = (await response.json())[0]["id"]
        start = datetime.now(UTC) + timedelta(hours=1)
        for index in range(EVENTS):
            body = {
                "programID": program,
                "eventName": f"event {index}",
                "targets": ["transformer:c1/t2"] if index % 3 == 0 else ["community:c1"],
                "intervalPeriod": {"start": format_datetime(start), "duration": "PT30M"},
                "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}],
            }
            async with session.post(f"{grid}/events", json=body, headers=headers) as response:
                assert response.status == 201
                event = await response.json()
            published.append(event["id"])
            if index % 4 == 0:
                body["intervals"][0]["payloads"][0]["values"] = [2]
                async with session.put(
                    f"{grid}/events/{event['id']}", json=body, headers=headers
                ) as response:
                    assert response.status == 200
            await asyncio.sleep(rng.uniform(0.05, 0.25))
    return published


async def test_kill_9_repeatedly_loses_nothing_and_applies_each_signal_once(
    grid: str, tmp_path: Path
) -> None:
    rng = random.Random(9)
    port = free_port()
    database = tmp_path / "bridge.sqlite3"
    environment = {
        **os.environ,
        "SMART_COMMUNITY_BRIDGE_COMMUNITY": "c1",
        "SMART_COMMUNITY_BRIDGE_HOST": "127.0.0.1",
        "SMART_COMMUNITY_BRIDGE_PORT": str(port),
        "SMART_COMMUNITY_BRIDGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SMART_COMMUNITY_BRIDGE_DATABASE": str(database),
        "SMART_COMMUNITY_BRIDGE_GRID__URL": grid,
        "SMART_COMMUNITY_BRIDGE_GRID__CLIENT_ID": "bridge",
        "SMART_COMMUNITY_BRIDGE_GRID__CLIENT_SECRET": "ven-secret",
        "SMART_COMMUNITY_BRIDGE_GRID__POLL_INTERVAL": "1",
    }
    ledger = await Ledger.open(database)
    simulated = []
    for index, transformer in enumerate(["t1", "t1", "t2", "t2", "t3", "t2"]):
        placement = Placement(
            community="c1", feeder="f1", transformer=transformer, home=f"h{index}"
        )
        simulated.append(SimulatedHome(placement, await homes.add_home(ledger, placement)))
    await ledger.close()

    bridge = BridgeProcess(environment)
    await bridge.start()
    stop = asyncio.Event()
    url = f"http://127.0.0.1:{port}"
    listeners = [
        asyncio.create_task(home.run(url, stop, random.Random(i)))
        for i, home in enumerate(simulated)
    ]
    publisher = asyncio.create_task(publish_stream(grid, rng))
    kills_during_stream = 0
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.6, 1.6))
        await bridge.kill()
        kills_during_stream += not publisher.done()
        await asyncio.sleep(rng.uniform(0.1, 0.5))
        await bridge.start()
    published = await publisher
    assert kills_during_stream >= 3  # the stream really crossed the kills

    # Let the bridge resync and the homes catch up, then stop everything.
    async with asyncio.timeout(30):
        while True:
            rows = _ledger_rows(database)
            addressed = {
                home.placement.home: {(r["object_id"], r["version"]) for r in rows if _for(home, r)}
                for home in simulated
            }
            if {r["object_id"] for r in rows} >= set(published) and all(
                set(home.applied) == addressed[home.placement.home] for home in simulated
            ):
                break
            await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*listeners)
    await bridge.kill()

    assert {r["object_id"] for r in rows} >= set(published)  # no grid event lost
    for home in simulated:
        assert len(home.applied) == len(set(home.applied)), home.placement.home  # exactly once
        assert set(home.applied) == addressed[home.placement.home]
    for home in simulated:
        assert home.connections >= 2  # it lost the bridge and resumed


def _ledger_rows(database: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        return [
            dict(row)
            for row in connection.execute("SELECT object_id, version, audience FROM signals")
        ]


def _for(home: SimulatedHome, row: dict[str, Any]) -> bool:
    return not home.placement.targets.isdisjoint(json.loads(row["audience"]))
