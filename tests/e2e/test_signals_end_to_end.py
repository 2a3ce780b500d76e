"""End to end, with the clock in the test's hands: the real mock grid, the real bridge and Home
Assistant on 127.0.0.1, all three reading the same frozen clock.

The grid's time-of-use tariff (Shanghai, today and tomorrow) shows up in the price sensors and
in the cheapest window; a demand-response event published at the grid appears on the calendar
and fires the event entity, becomes current when the clock reaches it, and its cancellation (a
DELETE at the grid) fires ``cancelled``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
import time
from typing import Any

import aiohttp
from aiohttp import web
from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigEntryState
from homeassistant.const import CONF_CODE, CONF_URL, STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.smart_community.const import DOMAIN
from smart_community_bridge import homes
from smart_community_bridge.app import create_app as create_bridge
from smart_community_bridge.config import parse_config
from smart_community_bridge.state import INTAKE, LEDGER
from smart_community_grid.app import create_app as create_grid
from smart_community_grid.app_keys import TOKENS
from smart_community_grid.oauth import TokenAuthority
from smart_community_grid.scenario import parse_scenario
from smart_community_protocol import Placement, format_datetime
from tests.components.smart_community.conftest import wait_for_state
from tests.loopback import free_port

BL_SECRET = "e2e-bl-secret"
VEN_SECRET = "e2e-ven-secret"
HOME = Placement(community="c1", feeder="f1", transformer="t1", home="h1")
# 10:00 in Shanghai, in the flat period of the tariff below.
FROZEN = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
TOMORROW = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # 2 June, 00:00 in Shanghai
TARIFF = {
    "program": "tou",
    "timezone": "Asia/Shanghai",
    "currency": "CNY",
    "periods": [
        {"start": "00:00", "price": 0.31},
        {"start": "08:00", "price": 0.62},
        {"start": "17:00", "price": 1.05},
        {"start": "21:00", "price": 0.62},
    ],
    "export_periods": [{"start": "00:00", "price": 0.39}],
}
DAY_AVERAGE = (8 * 0.31 + 9 * 0.62 + 4 * 1.05 + 3 * 0.62) / 24


@dataclass
class Grid:
    """The utility's back office, as a BL client of the grid's API."""

    url: str
    session: aiohttp.ClientSession

    async def _headers(self) -> dict[str, str]:
        form = {"grant_type": "client_credentials", "client_id": "bl", "client_secret": BL_SECRET}
        async with self.session.post(f"{self.url}/auth/token", data=form) as response:
            assert response.status == 200, await response.text()
            return {"Authorization": f"Bearer {(await response.json())['access_token']}"}

    async def publish(self, name: str, start: datetime, duration: str, level: int) -> str:
        """POST a SIMPLE event to the demand-response program; returns its id."""
        headers = await self._headers()
        async with self.session.get(f"{self.url}/programs", headers=headers) as response:
            program = next(p for p in await response.json() if p["programName"] == "dr")
        body = {
            "programID": program["id"],
            "eventName": name,
            "intervalPeriod": {"start": format_datetime(start), "duration": duration},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [level]}]}],
        }
        async with self.session.post(f"{self.url}/events", json=body, headers=headers) as answer:
            assert answer.status == 201, await answer.text()
            return str((await answer.json())["id"])

    async def cancel(self, event_id: str) -> None:
        """DELETE an event, which the grid announces as its cancellation."""
        headers = await self._headers()
        async with self.session.delete(f"{self.url}/events/{event_id}", headers=headers) as answer:
            assert answer.status == 200, await answer.text()


async def serve(app: web.Application, port: int) -> web.AppRunner:
    """Run an application on 127.0.0.1 (no access log: it reads a local time zone that a
    frozen clock does not provide)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@dataclass
class Stack:
    grid: Grid
    bridge_url: str
    enrollment_code: str


async def spin_until(condition: Callable[[], bool], what: str) -> None:
    """Let the event loop run the servers (the clock stands still) until the condition holds."""
    for _ in range(200_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"waited in vain for {what}")


@pytest.fixture(name="stack")
async def stack_fixture(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path, freezer: FrozenDateTimeFactory
) -> AsyncIterator[Stack]:
    freezer.move_to(FROZEN)
    await hass.config.async_set_time_zone("Asia/Shanghai")
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
            "tariff": TARIFF,
            "programs": [{"name": "dr", "targets": ["community:c1"]}],
            "webhooks": {"timeout": 2, "attempts": 2, "backoff": 0.1, "allow_http_loopback": True},
        },
        tmp_path,
    )
    grid_app = create_grid(scenario)
    # The token authority's default clock is the one of import time; give it the test's.
    grid_app[TOKENS] = TokenAuthority(
        scenario.grid, scenario.clients, lifetime=scenario.token_lifetime, clock=time.time
    )
    grid = await serve(grid_app, grid_port)
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
            }
        )
    )
    bridge = await serve(bridge_app, bridge_port)
    code, _ = await homes.issue_code(bridge_app[LEDGER], HOME)
    await spin_until(lambda: bool(bridge_app[INTAKE].verifier.pinned), "the bridge to pin")
    async with aiohttp.ClientSession() as session:
        yield Stack(
            Grid(f"http://127.0.0.1:{grid_port}", session), f"http://127.0.0.1:{bridge_port}", code
        )
    await bridge.cleanup()
    await grid.cleanup()


async def enrol(hass: HomeAssistant, stack: Stack) -> tuple[ConfigEntry, dict[str, str]]:
    """Add the home through its real config flow; its entity ids by translation key."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: stack.bridge_url, CONF_CODE: stack.enrollment_code}
    )
    assert result["type"] is FlowResultType.FORM, result
    assert result["step_id"] == "confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY, result
    await hass.async_block_till_done()
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.state is ConfigEntryState.LOADED
    ids = {
        registered.translation_key or "": registered.entity_id
        for registered in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    await wait_for_state(hass, ids["bridge_connection"], lambda state: state.state == STATE_ON)
    return entry, ids


async def move_to(hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime) -> None:
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


async def calendar_events(
    hass: HomeAssistant, entity_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    response: Any = await hass.services.async_call(
        "calendar",
        "get_events",
        {"entity_id": entity_id, "start_date_time": start, "end_date_time": end},
        blocking=True,
        return_response=True,
    )
    return list(response[entity_id]["events"])


async def test_grid_tariff_in_the_price_sensors_and_the_cheapest_window(
    hass: HomeAssistant, stack: Stack
) -> None:
    _, ids = await enrol(hass, stack)
    # Today's four periods and tomorrow's, as the grid published them (one event a day).
    price = await wait_for_state(
        hass, ids["current_price"], lambda state: len(state.attributes.get("forecast", [])) == 8
    )
    assert price.state == "0.62"
    assert price.attributes["unit_of_measurement"] == "CNY/kWh"
    forecast = price.attributes["forecast"]
    assert [item["price"] for item in forecast] == [0.31, 0.62, 1.05, 0.62] * 2
    assert forecast[0]["start"] == TOMORROW - timedelta(days=1)

    def value(key: str) -> float:
        state = hass.states.get(ids[key])
        assert state is not None
        return float(state.state)

    assert value("today_lowest_price") == 0.31
    assert value("today_highest_price") == 1.05
    assert value("today_average_price") == pytest.approx(DAY_AVERAGE)
    assert hass.states.get(ids["price_level"]).state == "normal"
    assert value("next_price") == 1.05
    assert hass.states.get(ids["next_price_change"]).state == (FROZEN + 7 * HOUR).isoformat()
    assert value("export_price") == 0.39

    cheapest = hass.states.get(ids["cheapest_window"])
    assert cheapest.state == TOMORROW.isoformat()  # the valley after midnight
    assert cheapest.attributes["end"] == TOMORROW + 2 * HOUR
    assert cheapest.attributes["average_price"] == pytest.approx(0.31)

    response = await hass.services.async_call(
        DOMAIN,
        "find_cheapest_window",
        {"duration": {"hours": 4}, "earliest_start": "2026-06-02 05:00:00"},
        blocking=True,
        return_response=True,
    )
    assert response == {
        "start": "2026-06-02T05:00:00+08:00",
        "end": "2026-06-02T09:00:00+08:00",
        "average_price": pytest.approx((3 * 0.31 + 0.62) / 4),
        "unit": "CNY/kWh",
    }


async def test_grid_event_on_the_calendar_and_its_cancellation(
    hass: HomeAssistant, stack: Stack, freezer: FrozenDateTimeFactory
) -> None:
    _, ids = await enrol(hass, stack)
    calendar, event_entity = ids["demand_response_events"], ids["demand_response_event"]
    start = FROZEN + HOUR
    event_id = await stack.grid.publish("e2e peak", start, "PT1H", level=2)

    announced = await wait_for_state(
        hass, event_entity, lambda state: state.attributes.get("event_id") == event_id
    )
    assert announced.attributes["event_type"] == "new"
    assert announced.attributes["event_name"] == "e2e peak"
    assert announced.attributes["level"] == 2
    assert dt_util.parse_datetime(announced.attributes["start"]) == start
    assert dt_util.parse_datetime(announced.attributes["end"]) == start + HOUR
    assert hass.states.get(calendar).state == STATE_OFF
    events = await calendar_events(hass, calendar, FROZEN, FROZEN + 24 * HOUR)
    assert [(e["summary"], dt_util.parse_datetime(e["start"])) for e in events] == [
        ("e2e peak", start)
    ]

    await move_to(hass, freezer, start + HOUR / 4)
    assert hass.states.get(calendar).state == STATE_ON
    assert hass.states.get(ids["demand_response_active"]).state == STATE_ON

    await stack.grid.cancel(event_id)
    cancelled = await wait_for_state(
        hass, event_entity, lambda state: state.attributes.get("event_type") == "cancelled"
    )
    assert cancelled.attributes["event_id"] == event_id
    assert hass.states.get(ids["demand_response_active"]).state == STATE_OFF
    assert hass.states.get(calendar).state == STATE_OFF
    # It happened, until it was cancelled.
    events = await calendar_events(hass, calendar, FROZEN, FROZEN + 24 * HOUR)
    assert [
        (dt_util.parse_datetime(e["start"]), dt_util.parse_datetime(e["end"])) for e in events
    ] == [(start, start + HOUR / 4)]
