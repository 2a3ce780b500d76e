"""Repair issues: each raised when its condition holds and cleared when it no longer does."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_CODE, STATE_OFF
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.smart_community.const import CONF_KEYS, DOMAIN, RECONNECT_MAXIMUM
from custom_components.smart_community.protocol import format_datetime, jwks

from .conftest import (
    CONNECTION,
    NOW,
    PRICE,
    REJECTED,
    async_failed_attempt,
    async_move_to,
    async_spin_until,
    async_wait_connected,
    wait_for_state,
)
from .fake_bridge import FakeBridge, FakeGrid, notification, price_event

HOUR = timedelta(hours=1)


def _issue(hass: HomeAssistant, entry: MockConfigEntry, issue: str) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{issue}_{entry.entry_id}")


async def _fix(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, entry: MockConfigEntry, issue: str
) -> dict[str, Any]:
    """Run an issue's fix flow through the repairs API, as the frontend does."""
    assert await async_setup_component(hass, "repairs", {})
    client = await hass_client()
    response = await client.post(
        "/api/repairs/issues/fix",
        json={"handler": DOMAIN, "issue_id": f"{issue}_{entry.entry_id}"},
    )
    assert response.status == 200, await response.text()
    flow = await response.json()
    assert flow["step_id"] == "confirm"
    assert flow["description_placeholders"]["home"] == entry.title
    response = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}", json={})
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_bridge_unreachable_for_long(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """An hour without the bridge raises the issue; the bridge back clears it."""
    bridge.available = False
    await bridge.disconnect()
    await wait_for_state(hass, CONNECTION, lambda state: state.state == STATE_OFF)
    await async_failed_attempt(init_integration, bridge)
    await async_move_to(hass, init_integration, frozen_now, NOW + HOUR - timedelta(seconds=1))
    assert _issue(hass, init_integration, "bridge_unreachable") is None

    await async_move_to(hass, init_integration, frozen_now, NOW + HOUR)
    issue = _issue(hass, init_integration, "bridge_unreachable")
    assert issue is not None
    assert issue.severity is ir.IssueSeverity.ERROR
    assert not issue.is_fixable
    assert issue.translation_placeholders == {
        "home": "h1 (c1)",
        "url": bridge.url,
        "since": "2026-06-01 01:00:00",  # NOW in Home Assistant's time zone
    }

    bridge.available = True
    await _reconnected(hass, init_integration)
    assert _issue(hass, init_integration, "bridge_unreachable") is None


async def _reconnected(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Run out reconnect delays until the push channel is up again.

    An attempt that moving the clock started may still be failing, so one delay may not do.
    """
    coordinator = entry.runtime_data.coordinator
    for _ in range(10):
        async_fire_time_changed(hass, dt_util.utcnow() + RECONNECT_MAXIMUM)
        with contextlib.suppress(AssertionError):
            await async_spin_until(lambda: coordinator.connected)
            return
    raise AssertionError("the home did not reconnect")


async def test_bridge_unreachable_at_start(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A home that last heard from its bridge long ago and cannot reach it says so at once."""
    key = f"{DOMAIN}.{mock_config_entry.entry_id}"
    hass_storage[key] = {
        "version": 1,
        "minor_version": 1,
        "key": key,
        "data": {
            "last_seq": 0,
            "guard": [],
            "objects": [],
            "rejected": 0,
            "last_rejection": None,
            "last_contact": format_datetime(NOW - 2 * HOUR),
        },
    }
    bridge.available = False
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert _issue(hass, mock_config_entry, "bridge_unreachable") is not None

    bridge.available = True
    frozen_now.move_to(NOW + 2 * HOUR)
    async_fire_time_changed(hass)
    await async_spin_until(lambda: mock_config_entry.state is ConfigEntryState.LOADED)
    await async_wait_connected(mock_config_entry)
    assert _issue(hass, mock_config_entry, "bridge_unreachable") is None


async def test_invalid_signature_until_acknowledged(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    hass_client: ClientSessionGenerator,
) -> None:
    """A forged signal raises the issue; it stays, across a reload, until acknowledged."""
    signed = grid.sign(price_event("tou", start=NOW, prices=[0.9]))
    signed["intervals"][0]["payloads"][0]["values"] = [0.01]
    await bridge.wait_for_ack(await bridge.push(notification(signed)))
    issue = _issue(hass, init_integration, "invalid_signature")
    assert issue is not None
    assert issue.is_fixable
    assert issue.translation_placeholders["object"] == "EVENT tou"
    assert hass.states.get(REJECTED).state == "1"

    await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert _issue(hass, init_integration, "invalid_signature") is not None

    result = await _fix(hass, hass_client, init_integration, "invalid_signature")
    assert result["type"] == FlowResultType.CREATE_ENTRY
    assert _issue(hass, init_integration, "invalid_signature") is None


async def test_bridge_clock_apart(
    hass: HomeAssistant, init_integration: MockConfigEntry, bridge: FakeBridge
) -> None:
    """A bridge clock far from the home's raises the issue; one close to it clears it."""
    coordinator = init_integration.runtime_data.coordinator
    bridge.clock_offset = timedelta(seconds=30)
    await coordinator.async_refresh()
    assert _issue(hass, init_integration, "clock_skew") is None

    bridge.clock_offset = -timedelta(minutes=2)
    await coordinator.async_refresh()
    issue = _issue(hass, init_integration, "clock_skew")
    assert issue is not None
    assert issue.translation_key == "clock_skew"
    assert issue.translation_placeholders == {"home": "h1 (c1)", "seconds": "120"}

    bridge.clock_offset = timedelta(0)
    await coordinator.async_refresh()
    assert _issue(hass, init_integration, "clock_skew") is None


@pytest.mark.usefixtures("init_integration")
async def test_signal_from_the_future(
    hass: HomeAssistant, init_integration: MockConfigEntry, bridge: FakeBridge, grid: FakeGrid
) -> None:
    """A signal refused as issued in the future raises the issue; a fresh one accepted clears
    it."""
    early = grid.sign(price_event("tou", start=NOW, prices=[0.5]), issued_at=NOW + 5 * HOUR / 60)
    await bridge.wait_for_ack(await bridge.publish(early))
    issue = _issue(hass, init_integration, "clock_skew")
    assert issue is not None
    assert issue.translation_key == "signal_clock_skew"
    assert issue.translation_placeholders == {"home": "h1 (c1)", "object": "EVENT tou"}
    assert hass.states.get(REJECTED).attributes["last_reason"] == "issued_in_future"

    await bridge.wait_for_ack(
        await bridge.publish(grid.sign(price_event("tou", start=NOW, prices=[0.6])))
    )
    assert hass.states.get(PRICE).state == "0.6"
    assert _issue(hass, init_integration, "clock_skew") is None


async def test_grid_key_changed(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    hass_client: ClientSessionGenerator,
) -> None:
    """New keys at the bridge are never pinned silently: the resident enrols again."""
    rotated = FakeGrid(grid.community)
    bridge.keys = [rotated.public_key]
    # A signal under the new key is refused, and makes the home ask for the keys at once.
    signed = rotated.sign(price_event("tou", start=NOW, prices=[0.7]))
    await bridge.wait_for_ack(await bridge.publish(signed))
    assert hass.states.get(REJECTED).attributes["last_reason"] == "unknown_key"
    await hass.async_block_till_done()
    issue = _issue(hass, init_integration, "grid_key_changed")
    assert issue is not None
    assert issue.is_fixable
    assert issue.translation_placeholders == {
        "home": "h1 (c1)",
        "pinned": grid.public_key.kid,
        "offered": rotated.public_key.kid,
    }
    assert init_integration.data[CONF_KEYS] == jwks([grid.public_key])

    # Fixing the issue starts the reauthentication, which takes a new enrollment code.
    result = await _fix(hass, hass_client, init_integration, "grid_key_changed")
    assert result["type"] == FlowResultType.CREATE_ENTRY
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == ["reauth"]
    bridge.enrollment_codes.add("NEW-CODE")
    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_CODE: "NEW-CODE"}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    await async_wait_connected(init_integration)

    assert init_integration.data[CONF_KEYS] == jwks([rotated.public_key])
    assert _issue(hass, init_integration, "grid_key_changed") is None
    await wait_for_state(hass, PRICE, lambda state: state.state == "0.7")


async def test_grid_key_fix_for_a_removed_home(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    hass_client: ClientSessionGenerator,
) -> None:
    """A fix flow for a home that is no longer set up stops at once."""
    bridge.keys = [FakeGrid(bridge.placement.community).public_key]
    await init_integration.runtime_data.coordinator.async_refresh()
    assert _issue(hass, init_integration, "grid_key_changed") is not None
    assert await async_setup_component(hass, "repairs", {})
    client = await hass_client()
    response = await client.post(
        "/api/repairs/issues/fix",
        json={"handler": DOMAIN, "issue_id": f"grid_key_changed_{init_integration.entry_id}"},
    )
    flow = await response.json()
    await hass.config_entries.async_remove(init_integration.entry_id)
    assert _issue(hass, init_integration, "grid_key_changed") is None
    response = await client.post(f"/api/repairs/issues/fix/{flow['flow_id']}", json={})
    assert (await response.json())["reason"] == "entry_removed"
