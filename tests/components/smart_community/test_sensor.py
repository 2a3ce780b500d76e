"""Price sensors: the current price, and when and to what it changes next."""

from __future__ import annotations

from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import ATTR_UNIT_OF_MEASUREMENT, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .conftest import NEXT_CHANGE, NOW, PRICE, REJECTED, async_move_to, async_setup_integration
from .fake_bridge import FakeBridge, FakeGrid, price_event, program

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
