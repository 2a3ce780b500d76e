"""The three tiers for end-to-end tests: the real mock grid and bridge on 127.0.0.1, and helpers
to set up a home in Home Assistant through the integration's real config flow. The ``stack``
fixture (tests/e2e/conftest.py) starts them; ``bridge_settings`` and ``grid_settings`` add to
their configuration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_CODE, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er

from custom_components.smart_community.const import DOMAIN
from smart_community_bridge import homes
from smart_community_bridge.app import create_app as create_bridge
from smart_community_bridge.config import parse_config
from smart_community_bridge.state import INTAKE, LEDGER
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

    async def publish(
        self, start: datetime, duration: str, value: int = 2, **fields: Any
    ) -> dict[str, Any]:
        """POST a SIMPLE event to the grid as the utility's business logic does; ``fields``
        add to the event's or replace them (``intervals``, ``reportDescriptors``, ...)."""
        headers = {"Authorization": f"Bearer {await self.bl_token()}"}
        async with self.session.get(f"{self.grid_url}/programs", headers=headers) as response:
            program = next(p for p in await response.json() if p["programName"] == "dr")
        body = {
            "programID": program["id"],
            "eventName": "e2e peak",
            "targets": ["community:c1"],
            "intervalPeriod": {"start": format_datetime(start), "duration": duration},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [value]}]}],
            **fields,
        }
        async with self.session.post(
            f"{self.grid_url}/events", json=body, headers=headers
        ) as response:
            assert response.status == 201, await response.text()
            return dict(await response.json())

    async def withdraw(self, event_id: str) -> None:
        """DELETE an event at the grid, which the grid announces as its cancellation."""
        headers = {"Authorization": f"Bearer {await self.bl_token()}"}
        async with self.session.delete(
            f"{self.grid_url}/events/{event_id}", headers=headers
        ) as response:
            assert response.status == 200, await response.text()

    async def grid_reports(self, event_id: str) -> list[dict[str, Any]]:
        """The reports the grid holds for an event, as the utility reads them, oldest first."""
        headers = {"Authorization": f"Bearer {await self.bl_token()}"}
        async with self.session.get(
            f"{self.grid_url}/reports", params={"eventID": event_id}, headers=headers
        ) as response:
            assert response.status == 200, await response.text()
            reports = await response.json()
        return sorted(reports, key=lambda r: r["createdDateTime"])


@asynccontextmanager
async def started_stack(
    tmp_path: Path, bridge_settings: dict[str, Any], grid_settings: dict[str, Any]
) -> AsyncIterator[Stack]:
    """The mock grid and the bridge, serving on free ports; a home's enrollment code ready.

    ``grid_settings`` are scenario keys (``delegation``: the bridge client's delegation);
    ``bridge_settings`` bridge configuration keys.
    """
    grid_port, bridge_port = free_port(), free_port()
    settings = dict(grid_settings)
    bridge_client = {
        "client_id": "bridge-c1",
        "secret": VEN_SECRET,
        "role": "VEN",
        "community": "c1",
    }
    if "delegation" in settings:
        bridge_client["delegation"] = settings.pop("delegation")
    scenario = parse_scenario(
        {
            "grid": "e2e-grid",
            "signing_key": "grid.pem",
            "communities": ["c1"],
            "clients": [{"client_id": "bl", "secret": BL_SECRET, "role": "BL"}, bridge_client],
            "programs": [{"name": "dr", "targets": ["community:c1"]}],
            "webhooks": {"timeout": 2, "attempts": 2, "backoff": 0.1, "allow_http_loopback": True},
            **settings,
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


async def add_home(hass: HomeAssistant, stack: Stack) -> ConfigEntry:
    """Add a home (the one ``stack.enrollment_code`` is for) through the real config flow."""
    before = {e.entry_id for e in hass.config_entries.async_entries(DOMAIN)}
    await setup_home(hass, stack)
    return next(e for e in hass.config_entries.async_entries(DOMAIN) if e.entry_id not in before)


async def configure(
    hass: HomeAssistant, entry: ConfigEntry, part: str, *forms: dict[str, Any]
) -> None:
    """Set one part of a home's options (``devices``, ``reporting``, ...) through the real
    options flow, one form after the other."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": part}
    )
    for form in forms:
        assert result["type"] is FlowResultType.FORM, result
        result = await hass.config_entries.options.async_configure(result["flow_id"], form)
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()


def state(hass: HomeAssistant, entity_id: str) -> str:
    current = hass.states.get(entity_id)
    assert current is not None
    return current.state
