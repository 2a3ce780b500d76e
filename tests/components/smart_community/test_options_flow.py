"""The options: which devices respond and within which bounds, what is reported, prices."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResult, FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.const import (
    CONF_CHEAPEST_WINDOW,
    CONF_INVERTERS,
    CONF_LOADS,
    CONF_MAX_SHED_POWER,
    CONF_STALE_AFTER,
    CONF_TELEMETRY,
    CONF_TELEMETRY_INTERVAL,
)

from .home_devices import (
    CHARGER,
    GRID_ENERGY,
    GRID_POWER,
    HEATER,
    INVERTER,
    PV_POWER,
    THERMOSTAT,
    WATER_HEATER,
    async_set_up_devices,
)

pytestmark = pytest.mark.usefixtures("mock_setup_entry")

MINUTES = {"hours": 0, "minutes": 1, "seconds": 0}


@pytest.fixture
async def entry(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> MockConfigEntry:
    """A set-up entry (set-up itself is mocked) beside the home's devices."""
    await async_set_up_devices(hass)
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    return mock_config_entry


async def open_menu(hass: HomeAssistant, entry: MockConfigEntry, choice: str) -> FlowResult:
    """Open the options and pick a part of them."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["devices", "limits", "reporting", "prices"]
    return await hass.config_entries.options.async_configure(
        result["flow_id"], {"next_step_id": choice}
    )


def suggested(result: FlowResult, key: str) -> Any:
    """What a form suggests for a field (its current option)."""
    for marker in result["data_schema"].schema:
        if marker == key:
            if marker.default is not None and callable(marker.default):
                return marker.default()
            return (marker.description or {}).get("suggested_value")
    raise KeyError(key)


async def submit(hass: HomeAssistant, result: FlowResult, data: dict[str, Any]) -> FlowResult:
    return await hass.config_entries.options.async_configure(result["flow_id"], data)


async def test_enrol_devices(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Loads in priority order, each with its load and bound, then the inverters."""
    result = await open_menu(hass, entry, "devices")
    assert result["step_id"] == "devices"
    assert suggested(result, CONF_LOADS) == []
    result = await submit(
        hass,
        result,
        {CONF_LOADS: [WATER_HEATER, HEATER, THERMOSTAT, CHARGER], CONF_INVERTERS: [INVERTER]},
    )
    assert result["step_id"] == "load"
    assert result["description_placeholders"] == {"device": "Tank", "position": "1", "count": "4"}
    assert suggested(result, "temperature_offset") == 10.0
    result = await submit(
        hass, result, {"nominal_power": 3.0, "temperature_offset": 8.0, "power_sensor": PV_POWER}
    )
    assert result["description_placeholders"]["position"] == "2"
    assert "temperature_offset" not in {str(k) for k in result["data_schema"].schema}
    result = await submit(hass, result, {"nominal_power": 2.0})
    assert suggested(result, "temperature_offset") == 2.0
    result = await submit(hass, result, {"nominal_power": 1.5, "temperature_offset": 2.0})
    assert suggested(result, "minimum_value") == 6.0
    # A charger's phases and voltage turn the community's EV charging share into a current.
    assert (suggested(result, "phases"), suggested(result, "voltage")) == (1, 230.0)
    result = await submit(
        hass, result, {"nominal_power": 7.0, "minimum_value": 8.0, "phases": 3, "voltage": 220}
    )
    assert result["step_id"] == "inverter"
    assert result["description_placeholders"] == {"device": "inverter limit"}
    result = await submit(hass, result, {"rated_power": 6.0})
    assert result["type"] is FlowResultType.CREATE_ENTRY

    assert entry.options[CONF_LOADS] == [
        {
            "entity_id": WATER_HEATER,
            "nominal_power": 3.0,
            "temperature_offset": 8.0,
            "power_sensor": PV_POWER,
        },
        {"entity_id": HEATER, "nominal_power": 2.0},
        {"entity_id": THERMOSTAT, "nominal_power": 1.5, "temperature_offset": 2.0},
        {
            "entity_id": CHARGER,
            "nominal_power": 7.0,
            "minimum_value": 8.0,
            "phases": 3.0,
            "voltage": 220.0,
        },
    ]
    assert entry.options[CONF_INVERTERS] == [{"entity_id": INVERTER, "rated_power": 6.0}]

    # Asked again, the options show what was chosen.
    result = await open_menu(hass, entry, "devices")
    assert suggested(result, CONF_LOADS) == [WATER_HEATER, HEATER, THERMOSTAT, CHARGER]
    result = await submit(
        hass, result, {CONF_LOADS: [CHARGER, WATER_HEATER], CONF_INVERTERS: [INVERTER]}
    )
    assert (suggested(result, "phases"), suggested(result, "voltage")) == (3.0, 220.0)
    result = await submit(
        hass, result, {"nominal_power": 7.0, "minimum_value": 8.0, "phases": 3, "voltage": 220}
    )
    assert suggested(result, "nominal_power") == 3.0
    assert suggested(result, "power_sensor") == PV_POWER
    result = await submit(hass, result, {"nominal_power": 3.0, "temperature_offset": 8.0})
    assert suggested(result, "rated_power") == 6.0
    result = await submit(hass, result, {"rated_power": 6.0})
    assert [load["entity_id"] for load in entry.options[CONF_LOADS]] == [CHARGER, WATER_HEATER]
    assert entry.options[CONF_LOADS][1] == {
        "entity_id": WATER_HEATER,
        "nominal_power": 3.0,
        "temperature_offset": 8.0,
    }


async def test_no_devices(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Enrolling nothing is a choice too: the engine then does nothing."""
    result = await open_menu(hass, entry, "devices")
    result = await submit(hass, result, {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_LOADS: [], CONF_INVERTERS: []}


async def test_a_device_cannot_be_both(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """The same number cannot be a load and an inverter limit."""
    result = await open_menu(hass, entry, "devices")
    result = await submit(hass, result, {CONF_LOADS: [CHARGER], CONF_INVERTERS: [CHARGER]})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "device_twice"}
    assert suggested(result, CONF_LOADS) == [CHARGER]


async def test_limits(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """The cap and the stale-signal time, which must leave a moment for a reconnect."""
    result = await open_menu(hass, entry, "limits")
    assert suggested(result, CONF_MAX_SHED_POWER) == 5.0
    assert suggested(result, CONF_STALE_AFTER) == {"hours": 0, "minutes": 15, "seconds": 0}
    result = await submit(
        hass, result, {CONF_MAX_SHED_POWER: 3.0, CONF_STALE_AFTER: {"seconds": 30}}
    )
    assert result["errors"] == {CONF_STALE_AFTER: "too_short"}
    result = await submit(hass, result, {CONF_MAX_SHED_POWER: 3.0, CONF_STALE_AFTER: MINUTES})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_MAX_SHED_POWER: 3.0, CONF_STALE_AFTER: MINUTES}


async def test_reporting(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """The telemetry sensors and the default cadence."""
    result = await open_menu(hass, entry, "reporting")
    assert suggested(result, CONF_TELEMETRY_INTERVAL) == {"hours": 0, "minutes": 5, "seconds": 0}
    result = await submit(
        hass,
        result,
        {"grid_import_power": GRID_POWER, CONF_TELEMETRY_INTERVAL: {"hours": 2}},
    )
    assert result["errors"] == {CONF_TELEMETRY_INTERVAL: "out_of_range"}
    result = await submit(
        hass,
        result,
        {
            "grid_import_power": GRID_POWER,
            "grid_import_energy": GRID_ENERGY,
            "pv_power": PV_POWER,
            CONF_TELEMETRY_INTERVAL: MINUTES,
        },
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {
        CONF_TELEMETRY: {
            "grid_import_power": GRID_POWER,
            "grid_import_energy": GRID_ENERGY,
            "pv_power": PV_POWER,
        },
        CONF_TELEMETRY_INTERVAL: MINUTES,
    }
    result = await open_menu(hass, entry, "reporting")
    assert suggested(result, "pv_power") == PV_POWER


async def test_prices(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """The cheapest window's length, within a day."""
    result = await open_menu(hass, entry, "prices")
    assert suggested(result, CONF_CHEAPEST_WINDOW) == {"hours": 2, "minutes": 0, "seconds": 0}
    result = await submit(hass, result, {CONF_CHEAPEST_WINDOW: {"minutes": 5}})
    assert result["errors"] == {CONF_CHEAPEST_WINDOW: "out_of_range"}
    result = await submit(hass, result, {CONF_CHEAPEST_WINDOW: {"hours": 3}})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_CHEAPEST_WINDOW: {"hours": 3}}
