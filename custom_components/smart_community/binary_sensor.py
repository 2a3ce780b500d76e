"""Binary sensors of the Smart Community integration: demand response, the bridge connection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, override

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.binary_sensor.const import BinarySensorDeviceClass
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SignalState, SmartCommunityConfigEntry
from .entity import Device, SmartCommunityEntity, SmartCommunityEntityDescription

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class SmartCommunityBinarySensorEntityDescription(
    BinarySensorEntityDescription, SmartCommunityEntityDescription
):
    """Describes a Smart Community binary sensor."""

    is_on_fn: Callable[[SignalState], bool]
    attributes_fn: Callable[[SignalState], dict[str, Any]] | None = None


BINARY_SENSORS: tuple[SmartCommunityBinarySensorEntityDescription, ...] = (
    SmartCommunityBinarySensorEntityDescription(
        key="demand_response_active",
        translation_key="demand_response_active",
        is_on_fn=lambda state: state.outlook.demand_response is not None,
        attributes_fn=lambda state: {
            "event_name": dr.event_name if (dr := state.outlook.demand_response) else None,
            "end": dr.end if dr else None,
            "next_start": nxt.start if (nxt := state.outlook.next_demand_response) else None,
        },
    ),
    SmartCommunityBinarySensorEntityDescription(
        key="bridge_connection",
        translation_key="bridge_connection",
        device=Device.COMMUNITY,
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        always_available=True,
        is_on_fn=lambda state: state.connected,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartCommunityConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the binary sensors of a home."""
    async_add_entities(
        SmartCommunityBinarySensor(entry, description) for description in BINARY_SENSORS
    )


class SmartCommunityBinarySensor(SmartCommunityEntity, BinarySensorEntity):
    """A binary sensor fed by verified signals."""

    entity_description: SmartCommunityBinarySensorEntityDescription

    @property
    @override
    def is_on(self) -> bool:
        """Whether the condition holds now."""
        return self.entity_description.is_on_fn(self.coordinator.data)

    @property
    @override
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Details beside the state."""
        if (attributes_fn := self.entity_description.attributes_fn) is None:
            return None
        return attributes_fn(self.coordinator.data)
