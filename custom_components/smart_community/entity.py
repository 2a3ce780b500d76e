"""Base entity of the Smart Community integration."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import override

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, MANUFACTURER
from .coordinator import SmartCommunityConfigEntry, SmartCommunityCoordinator


class Device(StrEnum):
    """The device an entity belongs to."""

    COMMUNITY = "community"
    HOME = "home"


@dataclass(frozen=True, kw_only=True)
class SmartCommunityEntityDescription(EntityDescription):
    """What an entity of the integration describes beyond Home Assistant's own fields."""

    device: Device = Device.HOME
    # What the home knows of itself (the link, its own load response) it shows even while the
    # bridge is unreachable; what comes from signals goes unavailable rather than stale.
    always_available: bool = False


class SmartCommunityEntity(CoordinatorEntity[SmartCommunityCoordinator]):
    """An entity fed by the verified signals of one home."""

    _attr_has_entity_name = True

    entity_description: SmartCommunityEntityDescription

    def __init__(
        self, entry: SmartCommunityConfigEntry, description: SmartCommunityEntityDescription
    ) -> None:
        """Describe the entity and attach it to the community's or the home's device."""
        coordinator = entry.runtime_data.coordinator
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = f"{entry.unique_id}_{description.key}"
        placement = coordinator.placement
        if description.device is Device.COMMUNITY:
            self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, placement.community)})
        else:
            self._attr_device_info = DeviceInfo(
                identifiers={(DOMAIN, f"{placement.community}/{placement.home}")},
                manufacturer=MANUFACTURER,
                model="Home",
                translation_key="home",
                translation_placeholders={"home": placement.home},
                via_device_id=entry.runtime_data.community_device_id,
            )

    @property
    @override
    def available(self) -> bool:
        """Whether the entity has something to say (see ``always_available``)."""
        return self.entity_description.always_available or super().available
