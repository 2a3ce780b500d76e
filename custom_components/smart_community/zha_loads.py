"""ZigBee loads through ZHA: which enrolled entities are ZigBee devices, and may they be driven.

The load-response engine switches ZigBee loads through their ZHA entities like any other
entity; before it does, ``async_zigbee_load`` tells it whether the entity belongs to a ZigBee
device, what that device draws now and whether it is fit to be driven (see ``zigbee``). It
reads ZHA's own gateway (``homeassistant.components.zha.helpers``) and the registries; it
sends nothing on the ZigBee network itself. Without ZHA set up there are no ZigBee loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.sensor import SensorDeviceClass
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er

from .zigbee import DriveRefusal, drive_refusal, measured_power

if TYPE_CHECKING:
    from homeassistant.components.zha.helpers import ZHADeviceProxy

ZHA_DOMAIN: Final = "zha"


@dataclass(frozen=True, kw_only=True, slots=True)
class ZigbeeLoad:
    """A ZigBee device behind an entity the engine may drive."""

    ieee: str
    device_id: str  # Home Assistant's device registry id
    name: str
    switch_entity_ids: tuple[str, ...]
    power_entity_id: str | None
    power: float | None  # W, as last reported; None when the device measures nothing
    available: bool
    mains_powered: bool
    refusal: DriveRefusal | None  # why it must not be driven now; None when it may


def _device_proxies(hass: HomeAssistant) -> dict[str, ZHADeviceProxy]:
    """ZHA's devices by Home Assistant device id; empty while ZHA is not running."""
    if ZHA_DOMAIN not in hass.config.components:
        return {}
    # Imported only with ZHA loaded: the module needs ZHA's libraries, installed with it.
    from homeassistant.components.zha.helpers import get_zha_gateway_proxy  # noqa: PLC0415

    try:
        gateway = get_zha_gateway_proxy(hass)
    except ValueError:  # ZHA is loaded but its radio is not up (yet)
        return {}
    return {
        proxy.device_id: proxy
        for proxy in gateway.device_proxies.values()
        if not proxy.device.is_coordinator
    }


def _load(hass: HomeAssistant, proxy: ZHADeviceProxy) -> ZigbeeLoad:
    device = proxy.device
    entries = er.async_entries_for_device(er.async_get(hass), proxy.device_id)
    zha_entries = [entry for entry in entries if entry.platform == ZHA_DOMAIN]
    switches = tuple(
        entry.entity_id
        for entry in zha_entries
        if entry.domain == Platform.SWITCH and entry.disabled_by is None
    )
    power_entity = next(
        (
            entry.entity_id
            for entry in zha_entries
            if entry.domain == Platform.SENSOR
            and entry.original_device_class == SensorDeviceClass.POWER
            and entry.disabled_by is None
        ),
        None,
    )
    refusal = drive_refusal(device.device, available=device.available)
    if refusal is None and not switches:
        refusal = DriveRefusal.NO_ON_OFF  # its On/Off cluster is not a switch here
    return ZigbeeLoad(
        ieee=str(device.ieee),
        device_id=proxy.device_id,
        name=device.name,
        switch_entity_ids=switches,
        power_entity_id=power_entity,
        power=measured_power(device.device),
        available=device.available,
        mains_powered=bool(device.is_mains_powered),
        refusal=refusal,
    )


@callback
def async_zigbee_load(hass: HomeAssistant, entity_id: str) -> ZigbeeLoad | None:
    """The ZigBee load behind an entity; None for an entity that is not a ZHA device's."""
    entry = er.async_get(hass).async_get(entity_id)
    if entry is None or entry.platform != ZHA_DOMAIN or entry.device_id is None:
        return None
    if (proxy := _device_proxies(hass).get(entry.device_id)) is None:
        return None
    return _load(hass, proxy)


@callback
def async_zigbee_loads(hass: HomeAssistant) -> list[ZigbeeLoad]:
    """Every ZigBee device of ZHA's network that has something to switch."""
    loads = [_load(hass, proxy) for proxy in _device_proxies(hass).values()]
    return [load for load in loads if load.refusal is not DriveRefusal.NO_ON_OFF]


@callback
def async_zigbee_diagnostics(hass: HomeAssistant) -> list[dict[str, Any]]:
    """Diagnostics of the ZigBee loads: fitness to be driven and power, without addresses."""
    return [
        {
            "name": load.name,
            "switches": list(load.switch_entity_ids),
            "power_entity": load.power_entity_id,
            "power": load.power,
            "available": load.available,
            "mains_powered": load.mains_powered,
            "refusal": load.refusal,
        }
        for load in async_zigbee_loads(hass)
    ]
