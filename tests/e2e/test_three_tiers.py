"""End to end: the real mock grid and the real bridge on 127.0.0.1, Home Assistant via the harness.

An event published at the grid (as the utility's back office would, through the BL API) turns
the Home Assistant binary sensor on at its interval start and off at its end. A forged or
replayed event injected at the bridge never reaches Home Assistant state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.const import CONF_CODE, CONF_URL, STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
import pytest

from custom_components.smart_community.const import DOMAIN
from smart_community_bridge import homes
from smart_community_bridge.app import create_app as create_bridge
from smart_community_bridge.config import parse_config
from smart_community_bridge.ledger import StoredSignal
from smart_community_bridge.relay import signal_frame
from smart_community_bridge.state import INTAKE, LEDGER, RELAY
from smart_community_grid.app import create_app as create_grid
from smart_community_grid.scenario import parse_scenario
from smart_community_protocol import Placement, format_datetime
from tests.loopback import free_port

BL_SECRET = "e2e-bl-secret"
VEN_SECRET = "e2e-ven-secret"
HOME = Placement(community="c1", feeder="f1", transformer="t1", home="h1")


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@dataclass
class Stack:
    grid_url: str
    bridge_url: str
    bridge: web.Application
    enrollment_code: str
    session: aiohttp.ClientSession

    async def bl_token(self) -> str:
        form = {"grant_type": "client_credentials", "client_id": "bl", "client_secret": BL_SECRET}
        async with self.session.post(f"{self.grid_url}/auth/token", data=form) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["access_token"])

    async def publish(self, start: datetime, duration: str, value: int = 2) -> dict[str, Any]:
        """POST an event to the grid as the utility's business logic does."""
        headers = {"Authorization": f"Bearer {await self.bl_token()}"}
        async with self.session.get(f"{self.grid_url}/programs", headers=headers) as response:
            program = next(p for p in await response.json() if p["programName"] == "dr")
        body = {
            "programID": program["id"],
            "eventName": "e2e peak",
            "targets": ["community:c1"],
            "intervalPeriod": {"start": format_datetime(start), "duration": duration},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [value]}]}],
        }
        async with self.session.post(
            f"{self.grid_url}/events", json=body, headers=headers
        ) as response:
            assert response.status == 201, await response.text()
            return dict(await response.json())


@pytest.fixture
def bridge_settings() -> dict[str, Any]:
    """Bridge configuration on top of the stack's own; a test module may override it."""
    return {}


@pytest.fixture(name="stack")
async def stack_fixture(
    socket_enabled: None, tmp_path: Path, bridge_settings: dict[str, Any]
) -> AsyncIterator[Stack]:
    grid_port, bridge_port = free_port(), free_port()
    scenario = parse_scenario(
        {
            "grid": "e2e-grid",
            "signing_key": "grid.pem",
            "communities": ["c1"],
            "clients": [
                {"client_id": "bl", "secret": BL_SECRET, "role": "BL"},
                {"client_id": "bridge-c1", "secret": VEN_SECRET, "role": "VEN", "community": "c1"},
            ],
            "programs": [{"name": "dr", "targets": ["community:c1"]}],
            "webhooks": {"timeout": 2, "attempts": 2, "backoff": 0.1, "allow_http_loopback": True},
        },
        tmp_path,
    )
    grid = await serve(create_grid(scenario), grid_port)
    bridge_app = create_bridge(
        parse_config(
            {
                "community": "c1",
                "port": bridge_port,
                "public_url": f"http://127.0.0.1:{bridge_port}",
                "database": str(tmp_path / "bridge.sqlite3"),
                "grid": {
                    "url": f"http://127.0.0.1:{grid_port}",
                    "client_id": "bridge-c1",
                    "client_secret": VEN_SECRET,
                    "poll_interval": 300,
                },
                **bridge_settings,
            }
        )
    )
    bridge = await serve(bridge_app, bridge_port)
    code, _ = await homes.issue_code(bridge_app[LEDGER], HOME)
    async with aiohttp.ClientSession() as session:
        stack = Stack(
            f"http://127.0.0.1:{grid_port}",
            f"http://127.0.0.1:{bridge_port}",
            bridge_app,
            code,
            session,
        )
        await wait_for(
            lambda: bool(bridge_app[INTAKE].verifier.pinned), "the bridge to pin the grid key"
        )
        yield stack
    await bridge.cleanup()
    await grid.cleanup()


async def wait_for(condition: Callable[[], bool], what: str, seconds: float = 15) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - state of three tiers, no one event to await
            await asyncio.sleep(0.05)
    assert condition(), what


async def setup_home(hass: HomeAssistant, stack: Stack) -> tuple[str, str]:
    """Add the integration through its real config flow; return the DR and rejection entity ids."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: stack.bridge_url, CONF_CODE: stack.enrollment_code}
    )
    while result["type"] is FlowResultType.FORM:
        assert not result.get("errors"), result
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.state is ConfigEntryState.LOADED
    ids = {
        e.translation_key: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    return ids["demand_response_active"], ids["rejected_signals"]


def state(hass: HomeAssistant, entity_id: str) -> str:
    current = hass.states.get(entity_id)
    assert current is not None
    return current.state


async def test_grid_event_turns_home_sensor_on_at_start_and_off_at_end(
    hass: HomeAssistant, stack: Stack
) -> None:
    dr_active, _ = await setup_home(hass, stack)
    assert state(hass, dr_active) == STATE_OFF

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    await stack.publish(start, "PT3S")
    await wait_for(lambda: state(hass, dr_active) == STATE_ON, "DR active", seconds=10)
    assert datetime.now(UTC) >= start  # not before the interval start
    await wait_for(lambda: state(hass, dr_active) == STATE_OFF, "DR over", seconds=10)
    assert datetime.now(UTC) >= start + timedelta(seconds=3)


async def test_forged_or_replayed_event_at_the_bridge_never_reaches_home_state(
    hass: HomeAssistant, stack: Stack
) -> None:
    dr_active, rejected = await setup_home(hass, stack)
    later = datetime.now(UTC) + timedelta(hours=1)
    genuine = await stack.publish(later, "PT30M", value=1)
    await wait_for(lambda: stack.bridge[RELAY].relayed >= 1, "the genuine event relayed")
    rejected_before = int(state(hass, rejected))

    # A compromised bridge (or anyone on its path) pushes an altered copy, active right now...
    forged = json.loads(json.dumps(genuine))
    forged["intervalPeriod"] = {
        "start": format_datetime(datetime.now(UTC) - timedelta(minutes=1)),
        "duration": "PT1H",
    }
    # ...and an old, genuine version again.
    ledger = stack.bridge[LEDGER]
    last = await ledger.last_seq()
    for seq, obj in ((last + 1, forged), (last + 2, genuine)):
        frame = signal_frame(
            StoredSignal(
                seq, "EVENT", obj["id"], "UPDATE", ("community:c1",), 2**40, json.dumps(obj)
            )
        )
        assert stack.bridge[RELAY].inject(frame, ["community:c1"]) == 1

    await wait_for(lambda: int(state(hass, rejected)) >= rejected_before + 1, "the forgery counted")
    await asyncio.sleep(0.5)
    assert state(hass, dr_active) == STATE_OFF
    assert int(state(hass, rejected)) == rejected_before + 1  # the replay is dropped quietly

    # At the bridge's own front door, the forged event is dropped before it is stored.
    assert await stack.bridge[INTAKE].accept(forged) is None
    assert await ledger.last_seq() == last
