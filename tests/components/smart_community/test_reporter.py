"""What the home reports, through Home Assistant and the fake bridge: telemetry, responses,
reductions, faults and grid connection requests, kept until the bridge has stored them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.const import (
    CONF_LOADS,
    CONF_STALE_AFTER,
    CONF_TELEMETRY,
    CONF_TELEMETRY_INTERVAL,
    DOMAIN,
)
from custom_components.smart_community.protocol import format_datetime
from custom_components.smart_community.reporter import read_quantity
from custom_components.smart_community.uplink import Quantity

from .conftest import NOW, async_move_to, async_setup_integration
from .fake_bridge import FakeBridge, FakeGrid, dr_event
from .home_devices import (
    GRID_ENERGY,
    GRID_POWER,
    HEATER,
    PV_POWER,
    Devices,
    async_set_up_devices,
    set_power,
)
from .test_responder import entry_with, publish

REDUCTION = "sensor.home_h1_reduction_in_last_event"
# Minute after minute of frozen time makes the push channel's heartbeat time out now and then
# (the bridge's answer has no time to arrive); these tests are not about a stale signal.
LONG = {"hours": 3, "minutes": 0, "seconds": 0}
MINUTE = timedelta(minutes=1)
TELEMETRY = {
    CONF_TELEMETRY: {
        "grid_import_power": GRID_POWER,
        "grid_import_energy": GRID_ENERGY,
        "pv_power": PV_POWER,
    },
    CONF_TELEMETRY_INTERVAL: {"hours": 0, "minutes": 5, "seconds": 0},
}


@pytest.fixture
async def devices(hass: HomeAssistant) -> Devices:
    """The home's devices and meters."""
    return await async_set_up_devices(hass)


@pytest.fixture
def options() -> dict[str, Any]:
    """The entry's options; tests change them through this fixture."""
    return {**TELEMETRY, CONF_LOADS: [{"entity_id": HEATER, "nominal_power": 2.0}]}


@pytest.fixture
async def home(
    hass: HomeAssistant,
    devices: Devices,
    grid: FakeGrid,
    bridge: FakeBridge,
    options: dict[str, Any],
) -> MockConfigEntry:
    """The integration, reporting the home's meters."""
    entry = entry_with(grid, bridge.url, options)
    await async_setup_integration(hass, entry)
    return entry


async def minutes_on(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    first: int,
    last: int,
) -> None:
    """Let the clock run minute by minute, as sampling does."""
    for minute in range(first, last + 1):
        await async_move_to(hass, entry, freezer, NOW + minute * MINUTE)


def values(report: dict[str, Any], interval: int = 0) -> dict[str, Any]:
    found = report["resources"][0]["intervals"][interval]["payloads"]
    return {p["type"]: p["values"][0] for p in found}


async def test_telemetry_at_the_default_cadence(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Every 5 minutes, aligned, the meters' readings in kW and kWh as X_TELEMETRY."""
    await minutes_on(hass, home, frozen_now, 1, 4)
    assert bridge.reports_on("X_TELEMETRY") == []  # the first interval was not watched whole
    await minutes_on(hass, home, frozen_now, 5, 6)
    hass.states.async_set(GRID_ENERGY, "1000.5", {"unit_of_measurement": "kWh"})
    await minutes_on(hass, home, frozen_now, 7, 10)

    first, second = bridge.reports_on("X_TELEMETRY")
    assert first["clientName"] == "h1"
    period = first["resources"][0]["intervals"][0]["intervalPeriod"]
    assert period == {"start": format_datetime(NOW), "duration": "PT5M"}
    assert values(first)["DEMAND"] == 4.0
    assert values(first)["READING"] == 1000.0
    assert values(first)["X_PV_POWER"] == 0.0
    assert values(second)["USAGE"] == pytest.approx(0.5)
    assert values(second)["READING"] == 1000.5


@pytest.mark.parametrize(
    "options",
    [{**TELEMETRY, CONF_TELEMETRY_INTERVAL: {"hours": 0, "minutes": 1, "seconds": 0}}],
)
async def test_an_event_asks_for_its_own_telemetry(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """An event's report descriptor is answered interval by interval, instead of the default."""
    event = dr_event("metered", start=NOW + 5 * MINUTE, duration="PT5M")
    event["intervals"].append({"id": 1, "payloads": [{"type": "SIMPLE", "values": [0]}]})
    event["reportDescriptors"] = [
        {"payloadType": "DEMAND", "frequency": 1, "repeat": -1, "units": "KW"}
    ]
    await publish(hass, bridge, grid, event)
    await minutes_on(hass, home, frozen_now, 1, 4)
    before = len(bridge.reports_on("X_TELEMETRY"))
    set_power(hass, GRID_POWER, 2500)
    await minutes_on(hass, home, frozen_now, 5, 16)

    reports = bridge.reports_on("metered")
    telemetry = [r for r in reports if "DEMAND" in values(r)]
    assert [values(r)["DEMAND"] for r in telemetry] == [2.5, 2.5]
    assert [r["resources"][0]["intervals"][0]["intervalPeriod"]["start"] for r in telemetry] == [
        format_datetime(NOW + 5 * MINUTE),
        format_datetime(NOW + 10 * MINUTE),
    ]
    assert telemetry[0]["programID"] == "peak-saver"
    # No default telemetry while the event asked for its own, and again after it.
    default = bridge.reports_on("X_TELEMETRY")[before:]
    starts = [r["resources"][0]["intervals"][0]["intervalPeriod"]["start"] for r in default]
    assert starts == [format_datetime(NOW + minute * MINUTE) for minute in (4, 15)]


async def test_reports_wait_for_the_bridge_and_survive_a_restart(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A report the bridge has not stored is kept, across a restart, and sent when it can be."""
    bridge.report_status = 503
    await hass.services.async_call(
        DOMAIN, "report_fault", {"code": "loss_of_supply", "detail": "no power"}, blocking=True
    )
    await hass.async_block_till_done()
    assert bridge.reports == []

    assert await hass.config_entries.async_reload(home.entry_id)
    await hass.async_block_till_done()
    assert bridge.reports == []
    bridge.report_status = 201
    await async_move_to(hass, home, frozen_now, NOW + MINUTE)
    [fault] = bridge.reports_on("X_FAULT")
    assert values(fault) == {
        "OPERATING_STATE": "ERROR",
        "X_FAULT_CODE": "LOSS_OF_SUPPLY",
        "X_FAULT_DETAIL": "no power",
    }
    await async_move_to(hass, home, frozen_now, NOW + 2 * MINUTE)
    assert len(bridge.reports_on("X_FAULT")) == 1  # stored once: not sent again


async def test_a_refused_report_is_dropped(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A report the bridge refuses as malformed is not sent again and again."""
    bridge.report_status = 400
    await hass.services.async_call(DOMAIN, "report_fault", {"code": "other"}, blocking=True)
    await hass.async_block_till_done()
    bridge.report_status = 201
    await async_move_to(hass, home, frozen_now, NOW + MINUTE)
    assert bridge.reports_on("X_FAULT") == []


async def test_fault_description_too_long(hass: HomeAssistant, home: MockConfigEntry) -> None:
    """A description beyond 500 characters is refused, saying so."""
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            DOMAIN, "report_fault", {"code": "device_fault", "detail": "x" * 501}, blocking=True
        )
    assert raised.value.translation_key == "detail_too_long"
    assert raised.value.translation_placeholders == {"maximum": "500", "length": "501"}


@pytest.mark.parametrize(
    "options",
    [
        {
            CONF_TELEMETRY: {"grid_import_power": GRID_POWER},
            CONF_LOADS: [{"entity_id": HEATER, "nominal_power": 2.0}],
            CONF_STALE_AFTER: LONG,
        }
    ],
)
async def test_reduction_against_the_prior_hour(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """4 kW in the hour before, 2 kW during the event: 2 kWh less than the baseline."""
    entry = home
    start = NOW + timedelta(hours=1)
    await publish(hass, bridge, grid, dr_event("peak", start=start, duration="PT1H", level=3))
    await minutes_on(hass, entry, frozen_now, 1, 59)
    set_power(hass, GRID_POWER, 2000)
    await minutes_on(hass, entry, frozen_now, 60, 121)

    reduction = hass.states.get(REDUCTION)
    assert reduction is not None
    assert float(reduction.state) == pytest.approx(2.0)
    assert reduction.attributes["baseline"] == pytest.approx(4.0)
    assert reduction.attributes["measured"] == pytest.approx(2.0)
    assert reduction.attributes["method"] == "prior_hour"
    assert reduction.attributes["event_id"] == "peak"
    [report] = [r for r in bridge.reports_on("peak") if "DELTA_USAGE" in values(r)]
    assert values(report) == {"BASELINE": 4.0, "DELTA_USAGE": -2.0}
    period = report["resources"][0]["intervals"][0]["intervalPeriod"]
    assert period == {"start": format_datetime(start), "duration": "PT1H"}

    # The last reduction is kept across a restart.
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert float(hass.states.get(REDUCTION).state) == pytest.approx(2.0)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "options",
    [{CONF_LOADS: [{"entity_id": HEATER, "nominal_power": 2.0}], CONF_STALE_AFTER: LONG}],
)
async def test_reduction_estimated_from_the_devices(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Without grid sensors: the heater's 2 kW held shed for an hour is 2 kWh."""
    start = NOW + timedelta(hours=1)
    await publish(hass, bridge, grid, dr_event("peak", start=start, duration="PT1H", level=3))
    await minutes_on(hass, home, frozen_now, 59, 121)
    reduction = hass.states.get(REDUCTION)
    assert reduction is not None
    assert float(reduction.state) == pytest.approx(2.0)
    assert reduction.attributes["method"] == "device_estimate"
    assert reduction.attributes["baseline"] is None
    assert bridge.reports_on("X_TELEMETRY") == []  # no sensors: no telemetry
    [report] = [r for r in bridge.reports_on("peak") if "DELTA_USAGE" in values(r)]
    assert values(report) == {"DELTA_USAGE": -2.0}


CONNECTION = {
    "capacity": 6,
    "inverter_make": "Acme",
    "inverter_model": "S6",
    "inverter_serial": "SN1",
}


async def test_request_grid_connection(
    hass: HomeAssistant, home: MockConfigEntry, bridge: FakeBridge
) -> None:
    """The request goes to the bridge as a resource; asking again returns the open request."""
    response = await hass.services.async_call(
        DOMAIN, "request_grid_connection", CONNECTION, blocking=True, return_response=True
    )
    assert response == {
        "resource_id": "resource-1",
        "name": "PV SN1",
        "status": "REQUESTED",
        "capacity": 6.0,
        "requested": True,
    }
    [resource] = bridge.resources
    assert resource["attributes"] == [
        {"type": "MAX_POWER_EXPORT", "values": [6.0]},
        {"type": "X_INVERTER", "values": ["Acme", "S6", "SN1"]},
    ]
    again = await hass.services.async_call(
        DOMAIN,
        "request_grid_connection",
        {**CONNECTION, "name": "Roof"},
        blocking=True,
        return_response=True,
    )
    assert again is not None
    assert again["resource_id"] == "resource-1"
    assert again["requested"] is False
    assert len(bridge.resources) == 1


async def test_grid_connection_refused_or_unreachable(
    hass: HomeAssistant, home: MockConfigEntry, bridge: FakeBridge
) -> None:
    """A refusal says why; an unreachable bridge is an error to try again later."""
    bridge.resource_status = 400
    with pytest.raises(ServiceValidationError) as refused:
        await hass.services.async_call(
            DOMAIN, "request_grid_connection", CONNECTION, blocking=True, return_response=True
        )
    assert refused.value.translation_key == "request_refused"
    assert "hosting capacity" in refused.value.translation_placeholders["error"]

    bridge.available = False
    with pytest.raises(HomeAssistantError) as unreachable:
        await hass.services.async_call(
            DOMAIN, "request_grid_connection", CONNECTION, blocking=True, return_response=True
        )
    assert unreachable.value.translation_key == "communication_error"


@pytest.mark.parametrize(
    ("quantity", "value", "unit", "expected"),
    [
        (Quantity.GRID_IMPORT_POWER, "1500", "W", 1.5),
        (Quantity.GRID_IMPORT_POWER, "1.5", "MW", 1500.0),
        (Quantity.GRID_IMPORT_POWER, "1500", None, 1.5),
        (Quantity.PV_POWER, "2", "A", None),
        (Quantity.GRID_IMPORT_ENERGY, "2500", "Wh", 2.5),
        (Quantity.GRID_EXPORT_ENERGY, "3", "L", None),
        (Quantity.BATTERY_LEVEL, "81", "%", 81.0),
        (Quantity.BATTERY_LEVEL, "81", "V", None),
        (Quantity.EV_POWER, "unavailable", "W", None),
        (Quantity.EV_POWER, "lots", "W", None),
        (Quantity.EV_POWER, "nan", "W", None),
    ],
)
def test_readings_in_the_units_reported(
    quantity: Quantity, value: str, unit: str | None, expected: float | None
) -> None:
    """Power in kW, energy in kWh, charge in percent; anything else is no reading."""
    attributes = {"unit_of_measurement": unit} if unit else {}
    reading = read_quantity(quantity, State("sensor.meter", value, attributes))
    assert reading == (pytest.approx(expected) if expected is not None else None)
    assert read_quantity(quantity, None) is None


async def test_a_full_queue_lets_the_oldest_telemetry_go(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Bounded: when full, telemetry goes first, then the oldest of anything."""
    bridge.report_status = 503
    with patch("custom_components.smart_community.reporter.MAX_QUEUED_REPORTS", 3):
        await minutes_on(hass, home, frozen_now, 1, 10)  # two telemetry reports wait
        for code in ("loss_of_supply", "device_fault", "other"):
            await hass.services.async_call(DOMAIN, "report_fault", {"code": code}, blocking=True)
        await hass.async_block_till_done()
    bridge.report_status = 201
    await async_move_to(hass, home, frozen_now, NOW + 11 * MINUTE)
    codes = [values(r)["X_FAULT_CODE"] for r in bridge.reports_on("X_FAULT")]
    assert codes == ["LOSS_OF_SUPPLY", "DEVICE_FAULT", "OTHER"]
