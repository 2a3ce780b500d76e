"""End to end: a grid event makes homes shed, restore and report, up to the grid.

The real mock grid and bridge on 127.0.0.1, two homes in one Home Assistant, each enrolled
through the config flow and given a device through the options flow. An event published at the
grid switches both heaters off at its start; home h1 turns its back on at the end, the resident
of home h2 turns theirs on during the event (an override). The bridge stores each home's
acknowledgement, opt-out and reduction; the grid receives the community's summary of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import ATTR_ENTITY_ID, STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest

from smart_community_bridge import homes
from smart_community_bridge.state import LEDGER
from smart_community_protocol import Placement

from .stack import Stack, add_home, configure, state, wait_for

H2 = Placement(community="c1", feeder="f1", transformer="t1", home="h2")


@pytest.fixture
def bridge_settings() -> dict[str, Any]:
    """Short buckets and frequent checks, so the grid hears within seconds."""
    return {
        "fusion": {
            "bucket_seconds": 10,
            "bucket_grace": 0,
            "batch_seconds": 0.05,
            "report_interval": 1,
        }
    }


async def enrol(hass: HomeAssistant, stack: Stack, heater: str) -> ConfigEntry:
    """A home through the config flow, its heater enrolled through the options flow."""
    entry = await add_home(hass, stack)
    await configure(hass, entry, "devices", {"loads": [heater]}, {"nominal_power": 2.0})
    return entry


async def publish(stack: Stack, start: datetime, duration: str) -> str:
    """The utility publishes a SIMPLE level 3 event for the community; returns its id."""
    return str((await stack.publish(start, duration, value=3))["id"])


async def grid_summary(stack: Stack, event_id: str) -> dict[str, Any]:
    """The latest summary of the homes' responses the grid holds for an event."""
    reports = await stack.grid_reports(event_id)
    summaries = [r for r in reports if str(r.get("reportName", "")).endswith("responses")]
    if not summaries:
        return {}
    interval = summaries[-1]["resources"][0]["intervals"][0]
    return {p["type"]: p["values"][0] for p in interval["payloads"]}


async def test_grid_event_sheds_restores_and_reports_up_to_the_grid(
    hass: HomeAssistant, stack: Stack
) -> None:
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {"heater_1": {"initial": True}, "heater_2": {"initial": True}}},
    )
    first = await enrol(hass, stack, "input_boolean.heater_1")
    stack.enrollment_code, _ = await homes.issue_code(stack.bridge[LEDGER], H2)
    second = await enrol(hass, stack, "input_boolean.heater_2")
    assert (first.unique_id, second.unique_id) == ("c1/h1", "c1/h2")

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    # Longer than the engine's spacing between two writes, so the restore is due at the end.
    event_id = await publish(stack, start, "PT12S")
    heaters = ("input_boolean.heater_1", "input_boolean.heater_2")
    await wait_for(
        lambda: {state(hass, heater) for heater in heaters} == {STATE_OFF},
        "both homes shed their heater",
        seconds=10,
    )
    assert datetime.now(UTC) >= start  # not before the interval start

    # The resident of h2 wants the heater back: an override, reported as an opt-out.
    await hass.services.async_call(
        "input_boolean", "turn_on", {ATTR_ENTITY_ID: "input_boolean.heater_2"}, blocking=True
    )
    await wait_for(
        lambda: state(hass, "input_boolean.heater_1") == STATE_ON,
        "h1 restores its heater at the end",
        seconds=20,
    )
    assert datetime.now(UTC) >= start + timedelta(seconds=12)
    assert state(hass, "input_boolean.heater_2") == STATE_ON

    # What the bridge stored of each home.
    ledger = stack.bridge[LEDGER]
    stored: dict[str, set[Any]] = {}

    async def read_ledger() -> None:
        high = await ledger.report_high_water()
        for value in await ledger.report_values(
            [event_id], 0, high, ["OPERATING_STATE", "DELTA_USAGE"]
        ):
            kind = value.value if value.payload_type == "OPERATING_STATE" else "DELTA_USAGE"
            stored.setdefault(value.home, set()).add(kind)

    async def settled() -> bool:
        await read_ledger()
        return {"RUNNING_CURTAILED", "DELTA_USAGE"} <= stored.get("h1", set()) and (
            "RUNNING_OPTED_OUT" in stored.get("h2", set())
        )

    await wait_for_async(settled, "the bridge stores acknowledgements, opt-out, reductions")
    assert "RUNNING_OPTED_OUT" not in stored["h1"]

    # And the grid hears the community's summary: one home took part, one opted out, less used.
    summary: dict[str, Any] = {}

    async def summarised() -> bool:
        summary.update(await grid_summary(stack, event_id))
        return summary.get("X_HOMES_OPTED_OUT") == 1 and summary.get("DELTA_USAGE", 0) < 0

    await wait_for_async(summarised, "the grid receives the responses", seconds=25)
    assert summary["X_HOMES_PARTICIPATING"] == 1


async def wait_for_async(
    condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 15
) -> None:
    """Poll an async condition (state of three tiers: no one event to await)."""
    try:
        async with asyncio.timeout(seconds):
            while not await condition():  # noqa: ASYNC110 - no one event to await
                await asyncio.sleep(0.2)
    except TimeoutError as err:
        raise AssertionError(f"timed out waiting for {what}") from err
