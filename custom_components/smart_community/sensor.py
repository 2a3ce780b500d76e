"""Sensors of the Smart Community integration: price now and next, rejected signals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, override

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, UnitOfEnergy
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SignalState, SmartCommunityConfigEntry
from .entity import Device, SmartCommunityEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class SmartCommunitySensorEntityDescription(SensorEntityDescription):
    """Describes a Smart Community sensor."""

    device: Device = Device.HOME
    value_fn: Callable[[SignalState], float | int | datetime | None]
    # The currency of a price is the grid's; Home Assistant's own stands in while none is known.
    unit_fn: Callable[[SignalState, str], str] | None = None
    attributes_fn: Callable[[SignalState], dict[str, Any]] | None = None


def _price_unit(state: SignalState, default_currency: str) -> str:
    price = state.outlook.price or state.outlook.next_price
    currency = price.currency if price and price.currency else default_currency
    return f"{currency}/{UnitOfEnergy.KILO_WATT_HOUR}"


SENSORS: tuple[SmartCommunitySensorEntityDescription, ...] = (
    SmartCommunitySensorEntityDescription(
        key="current_price",
        translation_key="current_price",
        suggested_display_precision=4,
        unit_fn=_price_unit,
        value_fn=lambda state: state.outlook.price.value if state.outlook.price else None,
    ),
    SmartCommunitySensorEntityDescription(
        key="next_price_change",
        translation_key="next_price_change",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda state: state.outlook.next_price_change,
        attributes_fn=lambda state: {
            "next_price": state.outlook.next_price.value if state.outlook.next_price else None
        },
    ),
    SmartCommunitySensorEntityDescription(
        key="rejected_signals",
        translation_key="rejected_signals",
        device=Device.COMMUNITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda state: state.rejected,
        attributes_fn=lambda state: {
            "last_reason": state.last_rejection.reason if state.last_rejection else None,
            "last_message": state.last_rejection.message if state.last_rejection else None,
            "last_object": state.last_rejection.object_ref if state.last_rejection else None,
            "last_rejected_at": state.last_rejection.at if state.last_rejection else None,
        },
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartCommunityConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the sensors of a home."""
    async_add_entities(
        SmartCommunitySensor(entry, description, description.device) for description in SENSORS
    )


class SmartCommunitySensor(SmartCommunityEntity, SensorEntity):
    """A sensor fed by verified signals."""

    entity_description: SmartCommunitySensorEntityDescription

    @property
    @override
    def native_value(self) -> float | int | datetime | None:
        """The sensor's value."""
        return self.entity_description.value_fn(self.coordinator.data)

    @property
    @override
    def native_unit_of_measurement(self) -> str | None:
        """The unit, which for a price depends on the grid's currency."""
        if (unit_fn := self.entity_description.unit_fn) is None:
            return super().native_unit_of_measurement
        return unit_fn(self.coordinator.data, self.hass.config.currency)

    @property
    @override
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Details beside the value."""
        if (attributes_fn := self.entity_description.attributes_fn) is None:
            return None
        return attributes_fn(self.coordinator.data)
