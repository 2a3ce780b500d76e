"""The demand-response calendar: past, current and upcoming events, across restarts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.calendar import DOMAIN as CALENDAR_DOMAIN
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.protocol import Operation

from .conftest import (
    CALENDAR,
    NOW,
    async_move_to,
    async_setup_integration,
    async_wait_connected,
)
from .fake_bridge import FakeBridge, FakeGrid, dr_event, price_event

HOUR = timedelta(hours=1)


async def _events(
    hass: HomeAssistant, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str]]:
    """The calendar's events in a range, through Home Assistant's calendar action."""
    response: Any = await hass.services.async_call(
        CALENDAR_DOMAIN,
        "get_events",
        {"entity_id": CALENDAR, "start_date_time": start, "end_date_time": end},
        blocking=True,
        return_response=True,
    )
    return [
        (
            dt_util.parse_datetime(event["start"]),
            dt_util.parse_datetime(event["end"]),
            event["summary"],
        )
        for event in response[CALENDAR]["events"]
    ]


async def _restart(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_connected(entry)


async def test_past_current_and_upcoming(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Announced events are upcoming, then current, then past, and stay after a restart."""
    bridge.serve(grid.sign(dr_event("peak", start=NOW + HOUR, name="Evening peak")))
    bridge.serve(grid.sign(dr_event("night", start=NOW + 5 * HOUR, name="Night", level=1)))
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.5, 0.9])))  # no event
    await async_setup_integration(hass, mock_config_entry)

    state = hass.states.get(CALENDAR)
    assert state.state == STATE_OFF
    assert state.attributes["message"] == "Evening peak"
    assert await _events(hass, NOW - HOUR, NOW + 24 * HOUR) == [
        (NOW + HOUR, NOW + 2 * HOUR, "Evening peak"),
        (NOW + 5 * HOUR, NOW + 6 * HOUR, "Night"),
    ]

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert hass.states.get(CALENDAR).state == STATE_ON
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 2 * HOUR)
    state = hass.states.get(CALENDAR)
    assert state.state == STATE_OFF
    assert state.attributes["message"] == "Night"

    # The events are long over and their signatures lapsed: the bridge no longer serves them,
    # the home no longer holds them, and still the calendar remembers them.
    bridge.objects.clear()
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 3 * 24 * HOUR)
    await _restart(hass, mock_config_entry)
    assert hass.states.get(CALENDAR).state == STATE_OFF
    assert await _events(hass, NOW - HOUR, NOW + 4 * 24 * HOUR) == [
        (NOW + HOUR, NOW + 2 * HOUR, "Evening peak"),
        (NOW + 5 * HOUR, NOW + 6 * HOUR, "Night"),
    ]

    # For thirty days.
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 31 * 24 * HOUR)
    assert await _events(hass, NOW - HOUR, NOW + 40 * 24 * HOUR) == []


async def test_cancelled_under_way(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """An event cancelled while it runs stays on the calendar until the cancellation."""
    event = dr_event("peak", start=NOW, duration="PT2H", name="Peak")
    await bridge.wait_for_ack(await bridge.publish(grid.sign(event, operation=Operation.CREATE)))
    upcoming = dr_event("later", start=NOW + 3 * HOUR, name="Later")
    await bridge.wait_for_ack(await bridge.publish(grid.sign(upcoming)))
    assert hass.states.get(CALENDAR).state == STATE_ON

    frozen_now.move_to(NOW + HOUR / 2)
    seq = await bridge.publish(grid.sign(event, operation=Operation.DELETE), Operation.DELETE)
    await bridge.wait_for_ack(seq)
    # Cancelled before it began, an event leaves no trace.
    seq = await bridge.publish(grid.sign(upcoming, operation=Operation.DELETE), Operation.DELETE)
    await bridge.wait_for_ack(seq)

    assert hass.states.get(CALENDAR).state == STATE_OFF
    assert await _events(hass, NOW - HOUR, NOW + 24 * HOUR) == [
        (NOW, NOW + HOUR / 2, "Peak"),
    ]


async def test_until_further_notice(
    hass: HomeAssistant, init_integration: MockConfigEntry, bridge: FakeBridge, grid: FakeGrid
) -> None:
    """An event without an end is shown as far ahead as the home looks, under its id."""
    event = dr_event("open", start=NOW, duration="P9999Y")
    del event["eventName"]
    await bridge.wait_for_ack(await bridge.publish(grid.sign(event)))
    state = hass.states.get(CALENDAR)
    assert state.state == STATE_ON
    assert state.attributes["message"] == "open"
    assert await _events(hass, NOW, NOW + HOUR) == [(NOW, NOW + timedelta(days=7), "open")]
