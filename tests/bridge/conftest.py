"""Fixtures for bridge tests: a real bridge app on aiohttp's test server, homes, a grid signer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
import time
from typing import Any

from aiohttp.test_utils import TestClient
import pytest

from smart_community_bridge import homes
from smart_community_bridge.app import create_app
from smart_community_bridge.config import BridgeConfig, parse_config
from smart_community_bridge.state import INTAKE, LEDGER
from smart_community_protocol import Placement, Signer

COMMUNITY = "c1"
HOME_A = Placement(community=COMMUNITY, feeder="f1", transformer="t1", home="a")
HOME_B = Placement(community=COMMUNITY, feeder="f1", transformer="t2", home="b")


def bridge_config(tmp_path: Path, **overrides: Any) -> BridgeConfig:
    """A bridge whose grid is unreachable (tests feed the intake themselves)."""
    raw: dict[str, Any] = {
        "community": COMMUNITY,
        "host": "127.0.0.1",
        "port": 0,
        "database": str(tmp_path / "bridge.sqlite3"),
        "grid": {
            "url": "http://127.0.0.1:9",
            "client_id": "b",
            "client_secret": "s",
            "poll_interval": 3600,
        },
        "heartbeat": 5,
    }
    raw.update(overrides)
    return parse_config(raw)


def event(
    event_id: str = "e1",
    *,
    start_in: float = 60,
    minutes: int = 30,
    targets: list[str] | None = None,
    value: int = 2,
) -> dict[str, Any]:
    """A demand-response event as the grid publishes it (before signing)."""
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + start_in))
    return {
        "id": event_id,
        "objectType": "EVENT",
        "createdDateTime": "2027-01-01T00:00:00Z",
        "modificationDateTime": "2027-01-01T00:00:00Z",
        "programID": "dr",
        "eventName": f"event {event_id}",
        "targets": targets or [f"community:{COMMUNITY}"],
        "intervalPeriod": {"start": start, "duration": f"PT{minutes}M"},
        "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [value]}]}],
    }


@pytest.fixture(name="signer")
def signer_fixture() -> Signer:
    return Signer.generate("test-grid")


def signed(signer: Signer, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    now = int(time.time())
    return signer.sign(
        obj,
        audience=kwargs.pop("audience", obj.get("targets") or [f"community:{COMMUNITY}"]),
        not_before=kwargs.pop("not_before", now - 60),
        expires=kwargs.pop("expires", now + 3600),
        **kwargs,
    )


type BridgeFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(name="make_bridge")
def make_bridge_fixture(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], tmp_path: Path, signer: Signer
) -> BridgeFactory:
    async def make(**overrides: Any) -> TestClient[Any, Any]:
        client = await aiohttp_client(create_app(bridge_config(tmp_path, **overrides)))
        client.app[INTAKE].verifier.pin([signer.public_key])
        return client

    return make


@pytest.fixture(name="bridge")
async def bridge_fixture(make_bridge: BridgeFactory) -> TestClient[Any, Any]:
    return await make_bridge()


@pytest.fixture(name="credentials")
async def credentials_fixture(bridge: TestClient[Any, Any]) -> dict[str, str]:
    ledger = bridge.app[LEDGER]
    return {"a": await homes.add_home(ledger, HOME_A), "b": await homes.add_home(ledger, HOME_B)}


def auth(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}
