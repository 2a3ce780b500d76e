"""The Smart Community integration: verified grid signals for a home, from its community bridge."""

from __future__ import annotations

from homeassistant.const import CONF_API_TOKEN, CONF_URL, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.typing import ConfigType

from . import repairs
from .bridge_client import BridgeClient
from .const import DOMAIN, MANUFACTURER
from .coordinator import (
    SmartCommunityConfigEntry,
    SmartCommunityCoordinator,
    SmartCommunityData,
    stored_state,
)
from .inverter import (
    async_setup_inverters,
    device_identifier,
    inverter_subentries,
    inverters_changed,
)
from .reporter import UplinkReporter, uplink_store
from .responder import LoadResponder, response_store
from .services import async_setup_services

PLATFORMS = [
    Platform.BINARY_SENSOR,
    Platform.SENSOR,
    Platform.CALENDAR,
    Platform.EVENT,
    Platform.NUMBER,
    Platform.SWITCH,
]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the integration's actions, which work on any loaded entry."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: SmartCommunityConfigEntry) -> bool:
    """Set up a home from a config entry."""
    client = BridgeClient(
        entry.data[CONF_URL], entry.data[CONF_API_TOKEN], session=async_get_clientsession(hass)
    )
    coordinator = SmartCommunityCoordinator(hass, entry, client)
    await coordinator.async_config_entry_first_refresh()

    # The home's device hangs off the community's, so that one is registered first.
    community = coordinator.placement.community
    community_device = dr.async_get(hass).async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, community)},
        manufacturer=MANUFACTURER,
        model="Community bridge",
        translation_key="community",
        translation_placeholders={"community": community},
    )
    reporter = UplinkReporter(hass, entry, coordinator, client)
    responder = LoadResponder(hass, entry, coordinator, reporter)
    entry.runtime_data = SmartCommunityData(
        coordinator=coordinator,
        community_device_id=community_device.id,
        reporter=reporter,
        responder=responder,
        options=dict(entry.options),
    )
    coordinator.async_start_push()
    await async_setup_inverters(hass, entry)
    entry.async_on_unload(entry.add_update_listener(_async_entry_updated))
    # Unloading runs these last first: the responder stops before the reporter it feeds.
    await reporter.async_start()
    entry.async_on_unload(reporter.async_stop)
    await responder.async_start()
    entry.async_on_unload(responder.async_stop)
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def _async_entry_updated(hass: HomeAssistant, entry: SmartCommunityConfigEntry) -> None:
    """Reload the home when its options or its inverters changed (not for what it stores)."""
    if entry.options != entry.runtime_data.options or inverters_changed(entry):
        hass.config_entries.async_schedule_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: SmartCommunityConfigEntry) -> bool:
    """Unload a config entry."""
    unloaded = await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
    if unloaded:
        # What an unloaded entry cannot observe it cannot report either.
        repairs.async_clear(hass, entry.entry_id, repairs.DERIVED)
        repairs.async_clear_alerts(hass, entry.entry_id)
    return unloaded


async def async_remove_entry(hass: HomeAssistant, entry: SmartCommunityConfigEntry) -> None:
    """Forget what the home stored once its entry is deleted."""
    repairs.async_clear(hass, entry.entry_id, repairs.Issue)
    repairs.async_clear_alerts(hass, entry.entry_id)
    await stored_state(hass, entry.entry_id).async_remove()
    await response_store(hass, entry.entry_id).async_remove()
    await uplink_store(hass, entry.entry_id).async_remove()


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: SmartCommunityConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Let the resident delete a device the entry no longer provides, never its current ones."""
    placement = entry.runtime_data.coordinator.placement
    current = {
        (DOMAIN, placement.community),
        (DOMAIN, f"{placement.community}/{placement.home}"),
        *(device_identifier(subentry) for subentry in inverter_subentries(entry)),
    }
    return current.isdisjoint(device.identifiers)
