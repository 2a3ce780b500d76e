"""Price and limit sensors: now and next, the day's range and level, the cheapest window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.sensor import ATTR_OPTIONS
from homeassistant.const import (
    ATTR_UNIT_OF_MEASUREMENT,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    UnitOfPower,
)
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.const import CONF_CHEAPEST_WINDOW

from .conftest import (
    AVERAGE,
    CHEAPEST,
    EXPORT_LIMIT,
    EXPORT_PRICE,
    HIGHEST,
    IMPORT_LIMIT,
    LEVEL,
    LOWEST,
    NEXT_CHANGE,
    NEXT_PRICE,
    NOW,
    PRICE,
    REJECTED,
    async_move_to,
    async_setup_integration,
    wait_for_state,
)
from .fake_bridge import FakeBridge, FakeGrid, capacity_event, price_event, program

HOUR = timedelta(hours=1)


async def test_price_follows_the_intervals(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The price changes exactly at interval boundaries, without asking the bridge."""
    bridge.serve(grid.sign(price_event("tou", start=NOW - HOUR / 2, prices=[0.5, 0.8, 0.8, 0.3])))
    await async_setup_integration(hass, mock_config_entry)

    state = hass.states.get(PRICE)
    assert state is not None
    assert state.state == "0.5"
    assert state.attributes[ATTR_UNIT_OF_MEASUREMENT] == "CNY/kWh"
    change = hass.states.get(NEXT_CHANGE)
    assert change is not None
    assert change.state == (NOW + HOUR / 2).isoformat()
    assert change.attributes["next_price"] == 0.8

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR / 2 - timedelta(seconds=1))
    assert hass.states.get(PRICE).state == "0.5"
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR / 2)
    assert hass.states.get(PRICE).state == "0.8"
    # Two intervals at the same price are one stretch: the next change is the drop to 0.3.
    change = hass.states.get(NEXT_CHANGE)
    assert change.state == (NOW + HOUR * 5 / 2).isoformat()
    assert change.attributes["next_price"] == 0.3

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR * 5 / 2)
    assert hass.states.get(PRICE).state == "0.3"
    assert hass.states.get(NEXT_CHANGE).attributes["next_price"] is None

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR * 7 / 2)
    assert hass.states.get(PRICE).state == STATE_UNKNOWN
    assert hass.states.get(NEXT_CHANGE).state == STATE_UNKNOWN


async def test_price_pushed(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """A new tariff version pushed by the bridge replaces the old one at once."""
    await async_setup_integration(hass, mock_config_entry)
    assert hass.states.get(PRICE).state == STATE_UNKNOWN

    seq = await bridge.publish(grid.sign(price_event("tou", start=NOW, prices=[0.5])))
    await bridge.wait_for_ack(seq)
    assert hass.states.get(PRICE).state == "0.5"

    seq = await bridge.publish(grid.sign(price_event("tou", start=NOW, prices=[0.42])))
    await bridge.wait_for_ack(seq)
    assert hass.states.get(PRICE).state == "0.42"
    assert hass.states.get(REJECTED).state == "0"


async def test_currency_from_program_or_home_assistant(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """The currency comes from the event, else its program, else Home Assistant's own."""
    hass.config.currency = "EUR"
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.5], currency=None)))
    await async_setup_integration(hass, mock_config_entry)
    assert hass.states.get(PRICE).attributes[ATTR_UNIT_OF_MEASUREMENT] == "EUR/kWh"

    seq = await bridge.publish(grid.sign(program("tariff", currency="USD")))
    await bridge.wait_for_ack(seq)
    assert hass.states.get(PRICE).attributes[ATTR_UNIT_OF_MEASUREMENT] == "USD/kWh"


# A day of the demo tariff in Shanghai (UTC+8): valley, flat, peak, flat, in local hours.
SHANGHAI_MIDNIGHT = datetime(2026, 5, 31, 16, 0, tzinfo=UTC)  # 1 June, 00:00 local
DAY_PRICES = [0.31] * 8 + [0.62] * 9 + [1.05] * 4 + [0.62] * 3
DAY_AVERAGE = sum(DAY_PRICES) / 24


def _value(hass: HomeAssistant, entity_id: str) -> float:
    state = hass.states.get(entity_id)
    assert state is not None
    return float(state.state)


async def test_the_days_prices_in_the_local_day(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Lowest, highest and average of the local day, and the level of the price now."""
    await hass.config.async_set_time_zone("Asia/Shanghai")
    bridge.serve(grid.sign(price_event("day1", start=SHANGHAI_MIDNIGHT, prices=DAY_PRICES)))
    tomorrow = SHANGHAI_MIDNIGHT + timedelta(days=1)
    bridge.serve(grid.sign(price_event("day2", start=tomorrow, prices=[0.5] * 24)))
    await async_setup_integration(hass, mock_config_entry)  # 16:00 local

    assert _value(hass, PRICE) == 0.62
    assert _value(hass, LOWEST) == 0.31
    assert _value(hass, HIGHEST) == 1.05
    assert _value(hass, AVERAGE) == pytest.approx(DAY_AVERAGE)
    for entity_id in (LOWEST, HIGHEST, AVERAGE):
        assert hass.states.get(entity_id).attributes[ATTR_UNIT_OF_MEASUREMENT] == "CNY/kWh"
    level = hass.states.get(LEVEL)
    assert level.state == "normal"
    assert level.attributes[ATTR_OPTIONS] == [
        "very_cheap",
        "cheap",
        "normal",
        "expensive",
        "very_expensive",
    ]

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + timedelta(hours=1))  # peak
    assert hass.states.get(LEVEL).state == "very_expensive"
    # At local midnight the day, and with it the statistics, turn over.
    await async_move_to(hass, mock_config_entry, frozen_now, tomorrow)
    assert (_value(hass, LOWEST), _value(hass, HIGHEST), _value(hass, AVERAGE)) == (0.5, 0.5, 0.5)
    assert hass.states.get(LEVEL).state == "normal"
    await async_move_to(hass, mock_config_entry, frozen_now, tomorrow + timedelta(days=1))
    for entity_id in (LOWEST, HIGHEST, AVERAGE, LEVEL):
        assert hass.states.get(entity_id).state == STATE_UNKNOWN


async def test_forecast_and_next_price(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """Every known interval is an attribute of the current price; the next price a sensor."""
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.5, 0.8])))
    await async_setup_integration(hass, mock_config_entry)
    assert hass.states.get(PRICE).attributes["forecast"] == [
        {"start": NOW, "end": NOW + HOUR, "price": 0.5},
        {"start": NOW + HOUR, "end": NOW + 2 * HOUR, "price": 0.8},
    ]
    next_price = hass.states.get(NEXT_PRICE)
    assert next_price.state == "0.8"
    assert next_price.attributes[ATTR_UNIT_OF_MEASUREMENT] == "CNY/kWh"


async def test_export_price(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The export price, where the grid publishes one, with its own forecast."""
    hass.config.currency = "EUR"
    await async_setup_integration(hass, mock_config_entry)
    assert hass.states.get(EXPORT_PRICE).state == STATE_UNKNOWN
    assert hass.states.get(EXPORT_PRICE).attributes["forecast"] == []

    signed = grid.sign(
        price_event("feed-in", start=NOW, prices=[0.6, 0.6], export_prices=[0.4, 0.3])
    )
    await bridge.wait_for_ack(await bridge.publish(signed))
    state = hass.states.get(EXPORT_PRICE)
    assert state.state == "0.4"
    assert state.attributes[ATTR_UNIT_OF_MEASUREMENT] == "CNY/kWh"
    assert [item["price"] for item in state.attributes["forecast"]] == [0.4, 0.3]
    # The import price stays one stretch: only the export price changes at the boundary.
    assert hass.states.get(NEXT_CHANGE).state == (NOW + 2 * HOUR).isoformat()
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert hass.states.get(EXPORT_PRICE).state == "0.3"


async def test_capacity_limits(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Import and export limits in kW while an event sets them, none otherwise."""
    bridge.serve(grid.sign(capacity_event("cap", start=NOW, import_limit=3500, units="W")))
    later = capacity_event("pv", start=NOW + HOUR, export_limit=2.5, duration="PT2H")
    bridge.serve(grid.sign(later))
    await async_setup_integration(hass, mock_config_entry)

    state = hass.states.get(IMPORT_LIMIT)
    assert state.state == "3.5"
    assert state.attributes[ATTR_UNIT_OF_MEASUREMENT] == UnitOfPower.KILO_WATT
    assert hass.states.get(EXPORT_LIMIT).state == STATE_UNKNOWN

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert hass.states.get(IMPORT_LIMIT).state == STATE_UNKNOWN
    assert hass.states.get(EXPORT_LIMIT).state == "2.5"
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 3 * HOUR)
    assert hass.states.get(EXPORT_LIMIT).state == STATE_UNKNOWN


async def test_next_cheapest_window(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The cheapest window of the configured length ahead; once it starts, it stays."""
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.9, 0.2, 0.2, 0.9, 0.1, 0.1])))
    await async_setup_integration(hass, mock_config_entry)

    # The default length is two hours.
    state = hass.states.get(CHEAPEST)
    assert state.state == (NOW + 4 * HOUR).isoformat()
    assert state.attributes["end"] == NOW + 6 * HOUR
    assert state.attributes["average_price"] == pytest.approx(0.1)

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 4.5 * HOUR)
    assert hass.states.get(CHEAPEST).state == (NOW + 4 * HOUR).isoformat()
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 6 * HOUR)
    assert hass.states.get(CHEAPEST).state == STATE_UNKNOWN


async def test_cheapest_window_length_from_options(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """The options set the window's length; one that is no duration leaves the default."""
    mock_config_entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        mock_config_entry, options={CONF_CHEAPEST_WINDOW: {"minutes": 30}}
    )
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.9, 0.2, 0.2, 0.9, 0.1])))
    await async_setup_integration(hass, mock_config_entry)
    state = hass.states.get(CHEAPEST)
    assert state.state == (NOW + 4 * HOUR).isoformat()
    assert state.attributes["end"] == NOW + 4.5 * HOUR

    hass.config_entries.async_update_entry(
        mock_config_entry, options={CONF_CHEAPEST_WINDOW: {"lightyears": 1}}
    )
    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    state = await wait_for_state(hass, CHEAPEST, lambda s: s.state != STATE_UNAVAILABLE)
    assert state.state == (NOW + HOUR).isoformat()
    assert state.attributes["end"] == NOW + 3 * HOUR
