"""A home's devices as Home Assistant entities of test platforms: what the engine acts on.

They behave as real integrations' entities do: a service call changes their state (with the
caller's context), and a resident changes them through the same services.
"""

from __future__ import annotations

from typing import Any

from homeassistant.components.climate import (
    ClimateEntity,
    ClimateEntityFeature,
    HVACMode,
)
from homeassistant.components.number import NumberEntity, NumberMode
from homeassistant.components.water_heater import WaterHeaterEntity, WaterHeaterEntityFeature
from homeassistant.const import ATTR_TEMPERATURE, UnitOfElectricCurrent, UnitOfTemperature
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import setup_test_component_platform

HEATER = "input_boolean.heater"
PUMP = "input_boolean.pump"
THERMOSTAT = "climate.living_room"
WATER_HEATER = "water_heater.tank"
CHARGER = "number.charger_current"
INVERTER = "number.inverter_limit"
GRID_POWER = "sensor.grid_power"
PV_POWER = "sensor.pv_power"
GRID_ENERGY = "sensor.grid_energy"
HEATER_POWER = "sensor.heater_power"


class Thermostat(ClimateEntity):
    """A cooling thermostat."""

    _attr_should_poll = False
    _attr_supported_features = ClimateEntityFeature.TARGET_TEMPERATURE
    _attr_temperature_unit = UnitOfTemperature.CELSIUS
    _attr_min_temp = 16
    _attr_max_temp = 30

    def __init__(self) -> None:
        self.entity_id = THERMOSTAT
        self._attr_hvac_modes = [HVACMode.COOL, HVACMode.HEAT, HVACMode.OFF]
        self._attr_name = "Living room"
        self._attr_unique_id = "living_room"
        self._attr_hvac_mode = HVACMode.COOL
        self._attr_target_temperature = 24.0

    async def async_set_temperature(self, **kwargs: Any) -> None:
        self._attr_target_temperature = kwargs[ATTR_TEMPERATURE]
        self.async_write_ha_state()

    async def async_set_hvac_mode(self, hvac_mode: HVACMode) -> None:
        self._attr_hvac_mode = hvac_mode
        self.async_write_ha_state()


class Tank(WaterHeaterEntity):
    """An electric water heater."""

    _attr_should_poll = False
    _attr_supported_features = WaterHeaterEntityFeature.TARGET_TEMPERATURE
    _attr_temperature_unit = UnitOfTemperature.CELSIUS
    _attr_min_temp = 40
    _attr_max_temp = 75

    def __init__(self) -> None:
        self.entity_id = WATER_HEATER
        self._attr_operation_list = ["eco", "off"]
        self._attr_name = "Tank"
        self._attr_unique_id = "tank"
        self._attr_current_operation = "eco"
        self._attr_target_temperature = 60.0

    async def async_set_temperature(self, **kwargs: Any) -> None:
        self._attr_target_temperature = kwargs[ATTR_TEMPERATURE]
        self.async_write_ha_state()


class Setting(NumberEntity):
    """A number a device exposes: an EV charger's current, an inverter's export limit."""

    _attr_should_poll = False
    _attr_mode = NumberMode.BOX

    def __init__(
        self, entity_id: str, value: float, unit: str, maximum: float, minimum: float = 0
    ) -> None:
        self.entity_id = entity_id
        self._attr_name = entity_id.partition(".")[2].replace("_", " ")
        self._attr_unique_id = entity_id
        self._attr_native_value = value
        self._attr_native_unit_of_measurement = unit
        self._attr_native_max_value = maximum
        self._attr_native_min_value = minimum
        self.refuse = False  # a device that does not answer

    async def async_set_native_value(self, value: float) -> None:
        if self.refuse:
            raise HomeAssistantError("the device did not answer")
        self._attr_native_value = value
        self.async_write_ha_state()


class Devices:
    """The home's devices, to reach into from a test."""

    def __init__(self) -> None:
        self.thermostat = Thermostat()
        self.tank = Tank()
        self.charger = Setting(CHARGER, 16, UnitOfElectricCurrent.AMPERE, 32)
        self.inverter = Setting(INVERTER, 100, "%", 100)


async def async_set_up_devices(hass: HomeAssistant) -> Devices:
    """Two switches, a thermostat, a water heater, a charger, an inverter, and meters."""
    devices = Devices()
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {"heater": {"initial": True}, "pump": {"initial": True}}},
    )
    setup_test_component_platform(hass, "climate", [devices.thermostat])
    setup_test_component_platform(hass, "water_heater", [devices.tank])
    setup_test_component_platform(hass, "number", [devices.charger, devices.inverter])
    for domain in ("climate", "water_heater", "number"):
        assert await async_setup_component(hass, domain, {domain: {"platform": "test"}})
    set_power(hass, GRID_POWER, 4000)
    set_power(hass, PV_POWER, 0)
    set_power(hass, HEATER_POWER, 1800)
    hass.states.async_set(
        GRID_ENERGY,
        "1000.0",
        {"unit_of_measurement": "kWh", "device_class": "energy", "state_class": "total_increasing"},
    )
    await hass.async_block_till_done()
    return devices


def set_power(hass: HomeAssistant, entity_id: str, watts: float) -> None:
    """A power meter's reading, in W."""
    hass.states.async_set(
        entity_id,
        str(watts),
        {"unit_of_measurement": "W", "device_class": "power", "state_class": "measurement"},
    )
