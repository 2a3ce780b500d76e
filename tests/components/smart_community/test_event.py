"""The demand-response event entity: new, modified and cancelled, with the event's data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from homeassistant.components.event import ATTR_EVENT_TYPES
from homeassistant.const import ATTR_FRIENDLY_NAME, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers.event import async_track_state_change_event
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.protocol import Operation

from .conftest import DR_EVENT, NOW, async_setup_integration, async_wait_connected
from .fake_bridge import FakeBridge, FakeCommunity, FakeGrid, community_event, dr_event, price_event

HOUR = timedelta(hours=1)
IGNORED = {ATTR_EVENT_TYPES, ATTR_FRIENDLY_NAME}


@pytest.fixture
def fired(hass: HomeAssistant) -> list[tuple[str, dict[str, Any]]]:
    """Every event the entity fires: its type and its data."""
    seen: list[tuple[str, dict[str, Any]]] = []

    @callback
    def _changed(event: Event[EventStateChangedData]) -> None:
        old, new = event.data["old_state"], event.data["new_state"]
        # Setting up and restoring after a restart write the state too; firing is the rest.
        if old is None or new is None or STATE_UNAVAILABLE in (old.state, new.state):
            return
        data = {k: v for k, v in new.attributes.items() if k not in IGNORED}
        seen.append((data.pop("event_type"), data))

    async_track_state_change_event(hass, DR_EVENT, _changed)
    return seen


@pytest.mark.usefixtures("init_integration")
async def test_new_modified_cancelled(
    hass: HomeAssistant,
    bridge: FakeBridge,
    grid: FakeGrid,
    fired: list[tuple[str, dict[str, Any]]],
) -> None:
    """Each change of a demand-response event fires once, with what the event says."""
    state = hass.states.get(DR_EVENT)
    assert state.state == STATE_UNKNOWN
    assert state.attributes["event_types"] == ["new", "modified", "cancelled"]

    event = dr_event("peak", start=NOW + HOUR, name="Evening peak", level=2)
    await bridge.wait_for_ack(await bridge.publish(grid.sign(event, operation=Operation.CREATE)))
    longer = {**event, "intervalPeriod": {**event["intervalPeriod"], "duration": "PT2H"}}
    await bridge.wait_for_ack(await bridge.publish(grid.sign(longer)))
    seq = await bridge.publish(grid.sign(longer, operation=Operation.DELETE), Operation.DELETE)
    await bridge.wait_for_ack(seq)
    # Prices are no demand response; a duplicate is no change.
    await bridge.wait_for_ack(
        await bridge.publish(grid.sign(price_event("tou", start=NOW, prices=[1])))
    )

    start = (NOW + HOUR).isoformat()
    expected = {"event_id": "peak", "event_name": "Evening peak", "start": start, "level": 2}
    assert fired == [
        ("new", {**expected, "end": (NOW + 2 * HOUR).isoformat()}),
        ("modified", {**expected, "end": (NOW + 3 * HOUR).isoformat()}),
        ("cancelled", {**expected, "end": (NOW + 3 * HOUR).isoformat()}),
    ]
    assert hass.states.get(DR_EVENT).attributes["event_type"] == "cancelled"


async def test_found_on_resync_and_not_again_after_restart(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    fired: list[tuple[str, dict[str, Any]]],
) -> None:
    """An event first seen in a resync is new; one the home knew before a restart is not."""
    known = dr_event("known", start=NOW + HOUR)
    bridge.serve(grid.sign(known))
    await async_setup_integration(hass, mock_config_entry)
    assert fired == []  # known from the start: nothing was announced since

    bridge.serve(grid.sign(dr_event("missed", start=NOW + 2 * HOUR, name="Missed", level=3)))
    await mock_config_entry.runtime_data.coordinator.async_refresh()
    assert [(kind, data["event_id"]) for kind, data in fired] == [("new", "missed")]

    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_connected(mock_config_entry)
    await mock_config_entry.runtime_data.coordinator.async_refresh()
    assert len(fired) == 1
    # The last event survives the restart as the entity's state.
    assert hass.states.get(DR_EVENT).attributes["event_id"] == "missed"


@pytest.mark.usefixtures("init_integration")
async def test_only_demand_response_is_announced(
    hass: HomeAssistant,
    bridge: FakeBridge,
    grid: FakeGrid,
    community: FakeCommunity,
    fired: list[tuple[str, dict[str, Any]]],
) -> None:
    """Grants, shares and alerts are no demand-response events; turning into one is announced
    as new, and out of one as cancelled (with what was cancelled)."""
    grant = community_event("grant-r1", "EXPORT_CAPACITY_LIMIT", 5, start=NOW, duration="P9999Y")
    share = community_event("ev-limit-h1", "X_EV_CHARGING_LIMIT", 7, start=NOW, duration="PT15M")
    for body in (grant, share):
        signed = community.sign(body, audience=["home:c1/h1"], operation=Operation.CREATE)
        await bridge.wait_for_ack(await bridge.publish(signed, Operation.CREATE))
    notice = community_event(
        "works", "ALERT_OTHER", "Works on the feeder", start=NOW, duration="PT1H", units=None
    )
    await bridge.wait_for_ack(await bridge.publish(grid.sign({**notice, "programID": "notices"})))
    normal = dr_event("peak", start=NOW + HOUR, level=0)
    await bridge.wait_for_ack(await bridge.publish(grid.sign(normal)))
    assert fired == []

    await bridge.wait_for_ack(await bridge.publish(grid.sign(dr_event("peak", start=NOW + HOUR))))
    await bridge.wait_for_ack(await bridge.publish(grid.sign(normal)))
    assert [(kind, data["event_id"], data["level"]) for kind, data in fired] == [
        ("new", "peak", 2),
        ("cancelled", "peak", 2),
    ]
