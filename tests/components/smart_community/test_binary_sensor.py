"""The demand-response binary sensor: on exactly from an interval's start to its end."""

from __future__ import annotations

from datetime import timedelta

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.protocol import Operation

from .conftest import DEMAND_RESPONSE, NOW, async_move_to, async_setup_integration
from .fake_bridge import FakeBridge, FakeGrid, dr_event, price_event

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)


async def test_on_from_start_to_end(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The sensor switches at the interval's start and end, to the second."""
    bridge.serve(grid.sign(dr_event("peak", start=NOW + HOUR, duration="PT2H")))
    # A price event is no demand response, however its intervals fall.
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.5, 0.9])))
    await async_setup_integration(hass, mock_config_entry)

    state = hass.states.get(DEMAND_RESPONSE)
    assert state is not None
    assert state.state == STATE_OFF
    assert state.attributes["next_start"] == NOW + HOUR
    assert state.attributes["event_name"] is None

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR - SECOND)
    assert hass.states.get(DEMAND_RESPONSE).state == STATE_OFF

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    state = hass.states.get(DEMAND_RESPONSE)
    assert state.state == STATE_ON
    assert state.attributes["event_name"] == "Evening peak"
    assert state.attributes["end"] == NOW + 3 * HOUR
    assert state.attributes["next_start"] is None

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 3 * HOUR - SECOND)
    assert hass.states.get(DEMAND_RESPONSE).state == STATE_ON

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 3 * HOUR)
    state = hass.states.get(DEMAND_RESPONSE)
    assert state.state == STATE_OFF
    assert state.attributes["end"] is None


async def test_pushed_and_cancelled(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """A pushed event applies at once; a signed DELETE takes it away."""
    assert hass.states.get(DEMAND_RESPONSE).state == STATE_OFF
    event = dr_event("now", start=NOW, name="Grid emergency")
    seq = await bridge.publish(grid.sign(event, operation=Operation.CREATE))
    await bridge.wait_for_ack(seq)
    state = hass.states.get(DEMAND_RESPONSE)
    assert state.state == STATE_ON
    assert state.attributes["event_name"] == "Grid emergency"

    seq = await bridge.publish(grid.sign(event, operation=Operation.DELETE), Operation.DELETE)
    await bridge.wait_for_ack(seq)
    assert hass.states.get(DEMAND_RESPONSE).state == STATE_OFF
