"""Setting the integration up and down."""

from __future__ import annotations

from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.typing import WebSocketGenerator

from custom_components.smart_community.const import DOMAIN

from .conftest import DEMAND_RESPONSE, PRICE, REJECTED
from .fake_bridge import FakeBridge


async def test_load_unload(
    hass: HomeAssistant, init_integration: MockConfigEntry, bridge: FakeBridge
) -> None:
    """The entry loads, opens the push channel, and closes it when unloaded."""
    assert init_integration.state is ConfigEntryState.LOADED
    assert bridge.since == [0]
    assert bridge.requests[:2] == ["/programs", "/events"]

    await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    await bridge.wait_for_disconnect()
    assert init_integration.state is ConfigEntryState.NOT_LOADED


async def test_bridge_down(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, bridge: FakeBridge
) -> None:
    """A bridge that cannot be reached makes Home Assistant retry later."""
    await bridge.stop()
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_bridge_unavailable(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, bridge: FakeBridge
) -> None:
    """A bridge that answers 503 makes Home Assistant retry later."""
    bridge.available = False
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_credential_refused(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, bridge: FakeBridge
) -> None:
    """A credential the bridge refuses stops the setup."""
    bridge.credential = "revoked"
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_ERROR
    assert mock_config_entry.reason == "The bridge no longer accepts the home credential"


async def test_not_a_bridge(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, bridge: FakeBridge
) -> None:
    """An answer the protocol does not allow makes Home Assistant retry later."""
    bridge.broken = True
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY


async def test_devices_and_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    entity_registry: er.EntityRegistry,
) -> None:
    """The home hangs off its community; entities sit on the device they describe."""
    entry_id = init_integration.entry_id
    community = device_registry.async_get_device_by_identifier((DOMAIN, "c1"), entry_id)
    home = device_registry.async_get_device_by_identifier((DOMAIN, "c1/h1"), entry_id)
    assert community is not None
    assert home is not None
    assert community.name == "Community c1"
    assert community.manufacturer == "Smart Community"
    assert community.model == "Community bridge"
    assert home.name == "Home h1"
    assert home.via_device_id == community.id

    for entity_id, device in ((PRICE, home), (DEMAND_RESPONSE, home), (REJECTED, community)):
        entry = entity_registry.async_get(entity_id)
        assert entry is not None
        assert entry.device_id == device.id
        assert entry.unique_id.startswith("c1/h1_")
    assert entity_registry.async_get(REJECTED).entity_category == "diagnostic"


async def test_remove_forgets_the_store(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """Deleting the entry deletes what the home stored."""
    key = f"{DOMAIN}.{init_integration.entry_id}"
    await hass.config_entries.async_unload(init_integration.entry_id)
    assert key in hass_storage
    await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    assert key not in hass_storage


async def test_only_stale_devices_can_be_removed(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    device_registry: dr.DeviceRegistry,
    hass_ws_client: WebSocketGenerator,
) -> None:
    """The resident may delete a device the entry no longer provides, not a current one."""
    assert await async_setup_component(hass, "config", {})
    entry_id = init_integration.entry_id
    stale = device_registry.async_get_or_create(
        config_entry_id=entry_id, identifiers={(DOMAIN, "c1/h0")}
    )
    client = await hass_ws_client(hass)
    for identifier, removable in (("c1", False), ("c1/h1", False), ("c1/h0", True)):
        device = device_registry.async_get_device_by_identifier((DOMAIN, identifier), entry_id)
        assert device is not None
        await client.send_json_auto_id(
            {
                "type": "config/device_registry/remove_config_entry",
                "config_entry_id": entry_id,
                "device_id": device.id,
            }
        )
        response = await client.receive_json()
        assert response["success"] is removable, identifier
    assert device_registry.async_get(stale.id) is None
