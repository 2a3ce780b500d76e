"""Sensors of the Smart Community integration: prices, limits, and the link to the bridge."""

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
from homeassistant.const import EntityCategory, UnitOfPower
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SignalState, SmartCommunityConfigEntry
from .entity import Device, SmartCommunityEntity, SmartCommunityEntityDescription
from .prices import PriceLevel
from .signals import PriceInterval, price_unit

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class SmartCommunitySensorEntityDescription(
    SensorEntityDescription, SmartCommunityEntityDescription
):
    """Describes a Smart Community sensor."""

    device: Device = Device.HOME
    value_fn: Callable[[SignalState], float | int | str | datetime | None]
    # The currency of a price is the grid's; Home Assistant's own stands in while none is known.
    unit_fn: Callable[[SignalState, str], str] | None = None
    attributes_fn: Callable[[SignalState], dict[str, Any]] | None = None


def _price_unit(state: SignalState, default_currency: str) -> str:
    return price_unit(state.outlook.price_forecast, default_currency)


def _export_price_unit(state: SignalState, default_currency: str) -> str:
    return price_unit(state.outlook.export_price_forecast, default_currency)


def _forecast(forecast: tuple[PriceInterval, ...]) -> dict[str, Any]:
    return {
        "forecast": [
            {"start": interval.start, "end": interval.end, "price": interval.price.value}
            for interval in forecast
        ]
    }


SENSORS: tuple[SmartCommunitySensorEntityDescription, ...] = (
    SmartCommunitySensorEntityDescription(
        key="current_price",
        translation_key="current_price",
        suggested_display_precision=4,
        unit_fn=_price_unit,
        value_fn=lambda state: state.outlook.price.value if state.outlook.price else None,
        attributes_fn=lambda state: _forecast(state.outlook.price_forecast),
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
    SmartCommunitySensorEntityDescription(
        key="next_price",
        translation_key="next_price",
        suggested_display_precision=4,
        unit_fn=_price_unit,
        value_fn=lambda state: state.outlook.next_price.value if state.outlook.next_price else None,
    ),
    SmartCommunitySensorEntityDescription(
        key="today_lowest_price",
        translation_key="today_lowest_price",
        suggested_display_precision=4,
        unit_fn=_price_unit,
        value_fn=lambda state: today.minimum if (today := state.prices.today) else None,
    ),
    SmartCommunitySensorEntityDescription(
        key="today_highest_price",
        translation_key="today_highest_price",
        suggested_display_precision=4,
        unit_fn=_price_unit,
        value_fn=lambda state: today.maximum if (today := state.prices.today) else None,
    ),
    SmartCommunitySensorEntityDescription(
        key="today_average_price",
        translation_key="today_average_price",
        suggested_display_precision=4,
        unit_fn=_price_unit,
        value_fn=lambda state: today.average if (today := state.prices.today) else None,
    ),
    SmartCommunitySensorEntityDescription(
        key="price_level",
        translation_key="price_level",
        device_class=SensorDeviceClass.ENUM,
        options=[str(level) for level in PriceLevel],
        value_fn=lambda state: state.prices.level,
    ),
    SmartCommunitySensorEntityDescription(
        key="cheapest_window",
        translation_key="cheapest_window",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda state: window.start if (window := state.prices.cheapest_window) else None,
        attributes_fn=lambda state: {
            "end": window.end if (window := state.prices.cheapest_window) else None,
            "average_price": window.average if window else None,
        },
    ),
    SmartCommunitySensorEntityDescription(
        key="export_price",
        translation_key="export_price",
        suggested_display_precision=4,
        unit_fn=_export_price_unit,
        value_fn=lambda state: price.value if (price := state.outlook.export_price) else None,
        attributes_fn=lambda state: _forecast(state.outlook.export_price_forecast),
    ),
    SmartCommunitySensorEntityDescription(
        key="import_limit",
        translation_key="import_limit",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        value_fn=lambda state: state.outlook.import_limit,
    ),
    SmartCommunitySensorEntityDescription(
        key="export_limit",
        translation_key="export_limit",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        value_fn=lambda state: state.outlook.export_limit,
    ),
    SmartCommunitySensorEntityDescription(
        key="last_contact",
        translation_key="last_contact",
        device=Device.COMMUNITY,
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        always_available=True,
        value_fn=lambda state: state.last_contact,
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
    # Every known price interval: useful on the state, too long for every history row.
    _unrecorded_attributes = frozenset({"forecast"})

    @property
    @override
    def native_value(self) -> float | int | str | datetime | None:
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
