"""The link to the bridge: the connection sensor and when the home last heard from it."""

from __future__ import annotations

from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from .conftest import (
    CONNECTION,
    LAST_CONTACT,
    NOW,
    PRICE,
    REJECTED,
    async_reconnect_attempt,
    async_wait_connected,
    wait_for_state,
)
from .fake_bridge import FakeBridge, FakeGrid, price_event

MINUTE = timedelta(minutes=1)


async def test_connection_and_last_contact(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Connected while the push channel is up; the last contact moves with what arrives."""
    for entity_id in (CONNECTION, LAST_CONTACT):
        entry = er.async_get(hass).async_get(entity_id)
        assert entry is not None
        assert entry.entity_category == "diagnostic"
    assert hass.states.get(CONNECTION).state == STATE_ON
    assert hass.states.get(CONNECTION).attributes["device_class"] == "connectivity"
    assert hass.states.get(LAST_CONTACT).state == NOW.isoformat()

    # A signal, even one that changes nothing the home shows, is news from the bridge.
    frozen_now.move_to(NOW + MINUTE)
    signed = grid.sign(price_event("tou", start=NOW, prices=[0.5]))
    await bridge.wait_for_ack(await bridge.publish(signed))
    assert hass.states.get(LAST_CONTACT).state == (NOW + MINUTE).isoformat()
    frozen_now.move_to(NOW + 2 * MINUTE)
    await bridge.wait_for_ack(await bridge.publish(signed))  # a duplicate
    assert hass.states.get(LAST_CONTACT).state == (NOW + 2 * MINUTE).isoformat()
    # So is a resync.
    frozen_now.move_to(NOW + 3 * MINUTE)
    await init_integration.runtime_data.coordinator.async_refresh()
    assert hass.states.get(LAST_CONTACT).state == (NOW + 3 * MINUTE).isoformat()

    # Without the bridge, the signals go unavailable; the link sensors say what they know.
    frozen_now.move_to(NOW + 4 * MINUTE)
    bridge.available = False
    await bridge.disconnect()
    await wait_for_state(hass, CONNECTION, lambda state: state.state == STATE_OFF)
    assert hass.states.get(PRICE).state == STATE_UNAVAILABLE
    assert hass.states.get(LAST_CONTACT).state == (NOW + 3 * MINUTE).isoformat()

    bridge.available = True
    await async_reconnect_attempt(init_integration, bridge)
    await async_wait_connected(init_integration)
    await wait_for_state(hass, PRICE, lambda state: state.state == "0.5")
    assert hass.states.get(CONNECTION).state == STATE_ON
    assert hass.states.get(LAST_CONTACT).state != (NOW + 3 * MINUTE).isoformat()


async def test_what_stays_available_without_the_bridge(
    hass: HomeAssistant, init_integration: MockConfigEntry, bridge: FakeBridge
) -> None:
    """Without the bridge, what signals say goes unavailable; what the home knows of itself stays.

    That is the link, the signals it rejected and its own load response.
    """
    entity_ids = {
        entry.entity_id
        for entry in er.async_entries_for_config_entry(
            er.async_get(hass), init_integration.entry_id
        )
    }
    bridge.available = False
    await bridge.disconnect()
    await wait_for_state(hass, CONNECTION, lambda state: state.state == STATE_OFF)

    available = {
        entity_id
        for entity_id in entity_ids
        if (state := hass.states.get(entity_id)) is not None and state.state != STATE_UNAVAILABLE
    }
    assert available == {
        CONNECTION,
        LAST_CONTACT,
        REJECTED,
        "switch.home_h1_demand_response_participation",
        "sensor.home_h1_load_shed",
        "sensor.home_h1_reduction_in_last_event",
    }
    assert len(entity_ids - available) == 16
