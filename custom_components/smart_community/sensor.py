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
from homeassistant.const import (
    EntityCategory,
    UnitOfEnergy,
    UnitOfFrequency,
    UnitOfPower,
    UnitOfTemperature,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SignalState, SmartCommunityConfigEntry, SmartCommunityData
from .entity import Device, SmartCommunityEntity, SmartCommunityEntityDescription
from .inverter import InverterData, InverterEntity
from .prices import PriceLevel
from .signals import Alert, AlertKind, PriceInterval, price_unit
from .sunspec import InverterStatus

PARALLEL_UPDATES = 0
# The alert sensor's state while no alert is in force.
NO_ALERT = "none"


@dataclass(frozen=True, kw_only=True)
class SmartCommunitySensorEntityDescription(
    SensorEntityDescription, SmartCommunityEntityDescription
):
    """Describes a Smart Community sensor."""

    value_fn: Callable[[SignalState], float | int | str | datetime | None]
    # The currency of a price is the grid's; Home Assistant's own stands in while none is known.
    unit_fn: Callable[[SignalState, str], str] | None = None
    attributes_fn: Callable[[SignalState], dict[str, Any]] | None = None


def _price_unit(state: SignalState, default_currency: str) -> str:
    return price_unit(state.outlook.price_forecast, default_currency)


def _export_price_unit(state: SignalState, default_currency: str) -> str:
    return price_unit(state.outlook.export_price_forecast, default_currency)


def _alert(state: SignalState) -> Alert | None:
    """The most urgent alert in force (the latest among equals)."""
    return state.outlook.alerts[0] if state.outlook.alerts else None


def _next_alert(state: SignalState) -> Alert | None:
    """The soonest alert announced for later."""
    return state.outlook.upcoming_alerts[0] if state.outlook.upcoming_alerts else None


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
        always_available=True,
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
    SmartCommunitySensorEntityDescription(
        key="alert",
        translation_key="alert",
        device_class=SensorDeviceClass.ENUM,
        options=[NO_ALERT, *(str(kind) for kind in AlertKind)],
        value_fn=lambda state: alert.kind if (alert := _alert(state)) else NO_ALERT,
        attributes_fn=lambda state: {
            "message": alert.message if (alert := _alert(state)) else None,
            "event_id": alert.event_id if alert else None,
            "issuer": alert.issuer if alert else None,
            "start": alert.start if alert else None,
            "end": alert.end if alert else None,
            "alerts": len(state.outlook.alerts),
            "next_alert": next_alert.kind if (next_alert := _next_alert(state)) else None,
            "next_alert_start": next_alert.start if next_alert else None,
            "next_alert_message": next_alert.message if next_alert else None,
        },
    ),
    SmartCommunitySensorEntityDescription(
        key="ev_charging_limit",
        translation_key="ev_charging_limit",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        value_fn=lambda state: state.outlook.ev_charging_limit,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartCommunityConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the sensors of a home."""
    async_add_entities(SmartCommunitySensor(entry, description) for description in SENSORS)
    async_add_entities(
        SmartCommunityResponseSensor(entry, description) for description in RESPONSE_SENSORS
    )
    for subentry_id, coordinator in entry.runtime_data.inverters.items():
        async_add_entities(
            (InverterSensor(coordinator, description) for description in INVERTER_SENSORS),
            config_subentry_id=subentry_id,
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


@dataclass(frozen=True, kw_only=True)
class InverterSensorEntityDescription(SensorEntityDescription):
    """Describes a sensor of a SunSpec inverter."""

    value_fn: Callable[[InverterData], float | str | None]


INVERTER_SENSORS: tuple[InverterSensorEntityDescription, ...] = (
    InverterSensorEntityDescription(
        key="ac_power",
        translation_key="inverter_ac_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        value_fn=lambda data: data.reading.ac_power,
    ),
    InverterSensorEntityDescription(
        key="lifetime_energy",
        translation_key="inverter_lifetime_energy",
        device_class=SensorDeviceClass.ENERGY,
        state_class=SensorStateClass.TOTAL_INCREASING,
        native_unit_of_measurement=UnitOfEnergy.WATT_HOUR,
        suggested_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=1,
        value_fn=lambda data: data.reading.lifetime_energy,
    ),
    InverterSensorEntityDescription(
        key="status",
        translation_key="inverter_status",
        device_class=SensorDeviceClass.ENUM,
        options=[status.name.lower() for status in InverterStatus],
        value_fn=lambda data: data.reading.status.name.lower() if data.reading.status else None,
    ),
    InverterSensorEntityDescription(
        key="dc_power",
        translation_key="inverter_dc_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.WATT,
        suggested_display_precision=0,
        entity_registry_enabled_default=False,
        value_fn=lambda data: data.reading.dc_power,
    ),
    InverterSensorEntityDescription(
        key="frequency",
        translation_key="inverter_frequency",
        device_class=SensorDeviceClass.FREQUENCY,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfFrequency.HERTZ,
        suggested_display_precision=2,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda data: data.reading.frequency,
    ),
    InverterSensorEntityDescription(
        key="cabinet_temperature",
        translation_key="inverter_cabinet_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        suggested_display_precision=1,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda data: data.reading.cabinet_temperature,
    ),
)


class InverterSensor(InverterEntity, SensorEntity):
    """A sensor of a SunSpec inverter, from its last poll."""

    entity_description: InverterSensorEntityDescription

    @property
    @override
    def native_value(self) -> float | str | None:
        """The sensor's value."""
        return self.entity_description.value_fn(self.coordinator.data)


@dataclass(frozen=True, kw_only=True)
class SmartCommunityResponseSensorEntityDescription(
    SensorEntityDescription, SmartCommunityEntityDescription
):
    """Describes a sensor of the home's own load response, which needs no signal to show."""

    always_available: bool = True
    value_fn: Callable[[SmartCommunityData], float | None]
    attributes_fn: Callable[[SmartCommunityData], dict[str, Any]] | None = None


def _reduction_attributes(data: SmartCommunityData) -> dict[str, Any]:
    last = data.reporter.last_reduction
    return {
        "event_id": last.event_id if last else None,
        "start": last.start if last else None,
        "end": last.end if last else None,
        "baseline": last.baseline if last else None,
        "measured": last.measured if last else None,
        "method": last.method if last else None,
    }


RESPONSE_SENSORS: tuple[SmartCommunityResponseSensorEntityDescription, ...] = (
    SmartCommunityResponseSensorEntityDescription(
        key="last_event_reduction",
        translation_key="last_event_reduction",
        device_class=SensorDeviceClass.ENERGY,
        native_unit_of_measurement=UnitOfEnergy.KILO_WATT_HOUR,
        suggested_display_precision=2,
        value_fn=lambda data: r.reduction if (r := data.reporter.last_reduction) else None,
        attributes_fn=_reduction_attributes,
    ),
    SmartCommunityResponseSensorEntityDescription(
        key="shed_power",
        translation_key="shed_power",
        device_class=SensorDeviceClass.POWER,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfPower.KILO_WATT,
        suggested_display_precision=2,
        value_fn=lambda data: data.responder.shed_power,
    ),
)


class SmartCommunityResponseSensor(SmartCommunityEntity, SensorEntity):
    """A sensor of what the home itself did: available whether the bridge answers or not."""

    entity_description: SmartCommunityResponseSensorEntityDescription

    def __init__(
        self,
        entry: SmartCommunityConfigEntry,
        description: SmartCommunityResponseSensorEntityDescription,
    ) -> None:
        """Attach the sensor to the home's device."""
        super().__init__(entry, description)
        self._data = entry.runtime_data

    @override
    async def async_added_to_hass(self) -> None:
        """Follow the responder and the reporter as well as the signals."""
        await super().async_added_to_hass()
        self.async_on_remove(self._data.responder.async_add_listener(self.async_write_ha_state))
        self.async_on_remove(self._data.reporter.async_add_listener(self.async_write_ha_state))

    @property
    @override
    def native_value(self) -> float | None:
        """The sensor's value."""
        return self.entity_description.value_fn(self._data)

    @property
    @override
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Details beside the value."""
        if (attributes_fn := self.entity_description.attributes_fn) is None:
            return None
        return attributes_fn(self._data)
