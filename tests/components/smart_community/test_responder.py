"""The load response through Home Assistant: real entities shed, held, overridden and restored."""

from __future__ import annotations

import csv
from dataclasses import asdict
from datetime import datetime, timedelta
import functools
import io
from pathlib import Path
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.const import (
    ATTR_ENTITY_ID,
    ATTR_TEMPERATURE,
    CONF_API_TOKEN,
    CONF_URL,
    STATE_OFF,
    STATE_ON,
    STATE_UNKNOWN,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ServiceValidationError
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.smart_community.const import (
    CONF_INVERTERS,
    CONF_KEYS,
    CONF_LOADS,
    CONF_MAX_SHED_POWER,
    CONF_PLACEMENT,
    CONF_STALE_AFTER,
    CONF_TELEMETRY,
    DOMAIN,
)
from custom_components.smart_community.load_response import Setting
from custom_components.smart_community.protocol import Operation, format_datetime, jwks
from custom_components.smart_community.responder import service_call

from .conftest import (
    CREDENTIAL,
    EV_SHARE,
    NOW,
    PLACEMENT,
    async_move_to,
    async_reconnect_attempt,
    async_setup_integration,
    async_spin_until,
)
from .fake_bridge import FakeBridge, FakeCommunity, FakeGrid, community_event, dr_event
from .home_devices import (
    CHARGER,
    GRID_POWER,
    HEATER,
    HEATER_POWER,
    INVERTER,
    THERMOSTAT,
    WATER_HEATER,
    Devices,
    async_set_up_devices,
)

START = NOW + timedelta(hours=1)
END = START + timedelta(hours=1)
SPACING = timedelta(seconds=10)
PARTICIPATION = "switch.home_h1_demand_response_participation"
SHED = "sensor.home_h1_load_shed"

OPTIONS: dict[str, Any] = {
    CONF_LOADS: [
        {"entity_id": HEATER, "nominal_power": 2.0, "power_sensor": HEATER_POWER},
        {"entity_id": THERMOSTAT, "nominal_power": 1.5, "temperature_offset": 2.0},
        {"entity_id": CHARGER, "nominal_power": 8.0, "minimum_value": 6.0},
    ],
    CONF_INVERTERS: [{"entity_id": INVERTER, "rated_power": 5.0}],
    CONF_MAX_SHED_POWER: 10.0,
    CONF_STALE_AFTER: {"hours": 0, "minutes": 5, "seconds": 0},
    CONF_TELEMETRY: {"grid_import_power": GRID_POWER},
}


def entry_with(grid: FakeGrid, bridge_url: str, options: dict[str, Any]) -> MockConfigEntry:
    """Home h1, with load-response options."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="h1 (c1)",
        unique_id="c1/h1",
        data={
            CONF_URL: bridge_url,
            CONF_API_TOKEN: CREDENTIAL,
            CONF_PLACEMENT: asdict(PLACEMENT),
            CONF_KEYS: jwks([grid.public_key]),
        },
        options=options,
    )


@pytest.fixture
async def devices(hass: HomeAssistant) -> Devices:
    """The home's devices, set up before the integration."""
    return await async_set_up_devices(hass)


@pytest.fixture
async def home(
    hass: HomeAssistant, devices: Devices, grid: FakeGrid, bridge: FakeBridge
) -> MockConfigEntry:
    """The integration, set up with the devices enrolled."""
    entry = entry_with(grid, bridge.url, OPTIONS)
    await async_setup_integration(hass, entry)
    return entry


def event(
    event_id: str = "peak",
    payload: tuple[str, float] = ("SIMPLE", 3),
    *,
    start: datetime = START,
    duration: str = "PT1H",
    randomize: str | None = None,
) -> dict[str, Any]:
    """A demand-response event of one interval."""
    body = dr_event(event_id, start=start, duration=duration)
    body["intervals"][0]["payloads"] = [{"type": payload[0], "values": [payload[1]]}]
    if randomize:
        body["intervalPeriod"]["randomizeStart"] = randomize
    return body


async def publish(
    hass: HomeAssistant, bridge: FakeBridge, grid: FakeGrid, body: dict[str, Any], **kwargs: Any
) -> None:
    """The grid publishes an event; the home applies it."""
    await bridge.wait_for_ack(await bridge.publish(grid.sign(body, **kwargs)))
    await hass.async_block_till_done()


def state(hass: HomeAssistant, entity_id: str) -> str:
    found = hass.states.get(entity_id)
    assert found is not None
    return found.state


def value(hass: HomeAssistant, entity_id: str) -> float:
    return float(state(hass, entity_id))


def temperature(hass: HomeAssistant, entity_id: str = THERMOSTAT) -> float:
    found = hass.states.get(entity_id)
    assert found is not None
    return float(found.attributes[ATTR_TEMPERATURE])


async def audit(hass: HomeAssistant) -> list[dict[str, str]]:
    """The audit log, as the export action gives it."""
    response = await hass.services.async_call(
        DOMAIN, "export_audit_log", {}, blocking=True, return_response=True
    )
    assert response is not None
    return list(csv.DictReader(io.StringIO(str(response["csv"]))))


def operating_states(bridge: FakeBridge, event_id: str) -> list[str]:
    """The participation the home reported for an event, in order."""
    return [
        payload["values"][0]
        for report in bridge.reports_on(event_id)
        for interval in report["resources"][0]["intervals"]
        for payload in interval["payloads"]
        if payload["type"] == "OPERATING_STATE"
    ]


async def test_event_sheds_in_priority_order_and_restores_at_the_end(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """One device at a time, in priority order, at the start; back in reverse at the end."""
    await publish(hass, bridge, grid, event())
    participation = hass.states.get(PARTICIPATION)
    assert participation is not None
    assert participation.state == STATE_ON
    assert participation.attributes["event_id"] == "peak"
    assert participation.attributes["start"] == START
    assert operating_states(bridge, "peak") == ["RUNNING_CURTAILED"]  # acknowledged

    await async_move_to(hass, home, frozen_now, START - timedelta(seconds=1))
    assert state(hass, HEATER) == STATE_ON
    await async_move_to(hass, home, frozen_now, START)
    assert state(hass, HEATER) == STATE_OFF
    assert temperature(hass) == 24  # the next device waits its turn
    await async_move_to(hass, home, frozen_now, START + SPACING)
    assert temperature(hass) == 26
    assert value(hass, CHARGER) == 16
    await async_move_to(hass, home, frozen_now, START + 2 * SPACING)
    assert value(hass, CHARGER) == 6
    # The heater's meter says 1.8 kW; the others count their nominal load.
    assert float(state(hass, SHED)) == pytest.approx(1.8 + 1.5 + 8 * 10 / 16)

    await async_move_to(hass, home, frozen_now, START + timedelta(minutes=30))
    assert [e["action"] for e in await audit(hass)] == ["shed", "shed", "shed"]

    await async_move_to(hass, home, frozen_now, END)
    assert value(hass, CHARGER) == 16
    assert temperature(hass) == 26
    await async_move_to(hass, home, frozen_now, END + SPACING)
    assert temperature(hass) == 24
    await async_move_to(hass, home, frozen_now, END + 2 * SPACING)
    assert state(hass, HEATER) == STATE_ON
    assert float(state(hass, SHED)) == 0

    log = await audit(hass)
    assert [(e["action"], e["entity"], e["before"], e["after"], e["outcome"]) for e in log] == [
        ("shed", HEATER, "on", "off", "done"),
        ("shed", THERMOSTAT, "24", "26", "done"),
        ("shed", CHARGER, "16", "6", "done"),
        ("restore", CHARGER, "6", "16", "done"),
        ("restore", THERMOSTAT, "26", "24", "done"),
        ("restore", HEATER, "off", "on", "done"),
    ]
    assert {e["event"] for e in log} == {"peak"}
    assert log[0]["time"] == format_datetime(START)


async def test_a_resident_change_is_an_override(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A device the resident changes during the event is left as set, and the grid told."""
    await publish(hass, bridge, grid, event())
    for step in range(3):
        await async_move_to(hass, home, frozen_now, START + step * SPACING)
    await hass.services.async_call(
        "climate",
        "set_temperature",
        {ATTR_ENTITY_ID: THERMOSTAT, ATTR_TEMPERATURE: 22},
        blocking=True,
    )
    await hass.async_block_till_done()
    assert operating_states(bridge, "peak") == ["RUNNING_CURTAILED", "RUNNING_OPTED_OUT"]

    for step in range(3):
        await async_move_to(hass, home, frozen_now, END + step * SPACING)
    assert temperature(hass) == 22
    assert state(hass, HEATER) == STATE_ON
    assert value(hass, CHARGER) == 16
    override = next(e for e in await audit(hass) if e["action"] == "override")
    assert (override["entity"], override["before"], override["after"]) == (THERMOSTAT, "26", "22")
    assert override["outcome"] == "left alone"


async def test_restart_mid_event(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Reloaded mid-event the home carries on where it was: no device written twice."""
    await publish(hass, bridge, grid, event())
    await async_move_to(hass, home, frozen_now, START)
    await async_move_to(hass, home, frozen_now, START + SPACING)
    assert temperature(hass) == 26

    assert await hass.config_entries.async_reload(home.entry_id)
    await hass.async_block_till_done()
    await async_move_to(hass, home, frozen_now, START + 3 * SPACING)
    await async_move_to(hass, home, frozen_now, START + 5 * SPACING)
    assert value(hass, CHARGER) == 6
    assert [e["entity"] for e in await audit(hass)] == [HEATER, THERMOSTAT, CHARGER]

    for step in range(3):
        await async_move_to(hass, home, frozen_now, END + step * SPACING)
    assert (state(hass, HEATER), temperature(hass), value(hass, CHARGER)) == (STATE_ON, 24, 16)


async def test_stale_signal_reverts_everything(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """With the bridge gone for longer than allowed, every device reverts until it is back."""
    await publish(hass, bridge, grid, event(duration="PT2H"))
    for step in range(3):
        await async_move_to(hass, home, frozen_now, START + step * SPACING)
    assert state(hass, HEATER) == STATE_OFF

    bridge.available = False
    await bridge.disconnect()
    coordinator = home.runtime_data.coordinator
    await async_spin_until(lambda: not coordinator.last_update_success)
    lost = START + 2 * SPACING
    await async_move_to(hass, home, frozen_now, lost + timedelta(minutes=4))
    assert state(hass, HEATER) == STATE_OFF  # not stale yet
    stale = lost + timedelta(minutes=5, seconds=1)
    for step in range(3):
        await async_move_to(hass, home, frozen_now, stale + step * SPACING)
    assert (state(hass, HEATER), temperature(hass), value(hass, CHARGER)) == (STATE_ON, 24, 16)
    assert [e["action"] for e in await audit(hass)][-3:] == ["revert", "revert", "revert"]

    bridge.available = True
    await async_reconnect_attempt(home, bridge)
    await async_spin_until(lambda: coordinator.last_update_success)
    await async_move_to(hass, home, frozen_now, stale + 3 * SPACING)
    assert state(hass, HEATER) == STATE_OFF  # signals flow again: the event is answered anew


async def test_import_limit_sheds_what_the_meter_says(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """4 kW imported against a 2.5 kW limit: the first device (2 kW) is enough."""
    await publish(hass, bridge, grid, event(payload=("IMPORT_CAPACITY_LIMIT", 2.5)))
    for step in range(3):
        await async_move_to(hass, home, frozen_now, START + step * SPACING)
    assert state(hass, HEATER) == STATE_OFF
    assert temperature(hass) == 24
    assert value(hass, CHARGER) == 16


async def test_export_limit_is_applied_to_the_inverter(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A grant's export limit for the home sets the inverter's limit, and ends with it."""
    grant = event("grant", ("EXPORT_CAPACITY_LIMIT", 2.5))
    await publish(hass, bridge, grid, grant, audience=["home:c1/h1"])
    await async_move_to(hass, home, frozen_now, START)
    assert value(hass, INVERTER) == 50
    assert state(hass, HEATER) == STATE_ON  # a limit sheds no load
    await async_move_to(hass, home, frozen_now, END)
    assert value(hass, INVERTER) == 100


async def test_water_heater(
    hass: HomeAssistant,
    devices: Devices,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A water heater's setpoint goes down by its offset, and back."""
    options = {CONF_LOADS: [{"entity_id": WATER_HEATER, "nominal_power": 3.0}]}
    entry = entry_with(grid, bridge.url, options)
    await async_setup_integration(hass, entry)
    await publish(hass, bridge, grid, event())
    await async_move_to(hass, entry, frozen_now, START)
    assert temperature(hass, WATER_HEATER) == 50
    await async_move_to(hass, entry, frozen_now, END)
    assert temperature(hass, WATER_HEATER) == 60


@pytest.fixture
def refusing_charger(devices: Devices) -> None:
    """The charger does not answer."""
    devices.charger.refuse = True


@pytest.mark.usefixtures("refusing_charger")
async def test_a_failed_write_is_logged_and_not_repeated(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A device that does not answer is logged as failed, once."""
    await publish(hass, bridge, grid, event())
    for step in range(6):
        await async_move_to(hass, home, frozen_now, START + step * SPACING)
    assert value(hass, CHARGER) == 16
    charger = [e for e in await audit(hass) if e["entity"] == CHARGER]
    assert [(e["action"], e["outcome"]) for e in charger] == [
        ("shed", "failed: the device did not answer")
    ]


async def test_participation_switch_and_actions(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Opting out gives the devices back and tells the grid; opting in again sheds again."""
    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(
            "switch", "turn_off", {ATTR_ENTITY_ID: PARTICIPATION}, blocking=True
        )
    assert raised.value.translation_key == "no_event"
    assert state(hass, PARTICIPATION) == STATE_ON

    await publish(hass, bridge, grid, event())
    await async_move_to(hass, home, frozen_now, START)
    assert state(hass, HEATER) == STATE_OFF
    await hass.services.async_call(
        "switch", "turn_off", {ATTR_ENTITY_ID: PARTICIPATION}, blocking=True
    )
    await hass.async_block_till_done()
    assert state(hass, PARTICIPATION) == STATE_OFF
    assert operating_states(bridge, "peak")[-1] == "RUNNING_OPTED_OUT"
    await async_move_to(hass, home, frozen_now, START + SPACING)  # one write at a time
    assert state(hass, HEATER) == STATE_ON

    await hass.services.async_call(DOMAIN, "opt_in", {"event_id": "peak"}, blocking=True)
    await hass.async_block_till_done()
    assert state(hass, PARTICIPATION) == STATE_ON
    assert operating_states(bridge, "peak")[-1] == "RUNNING_CURTAILED"
    await async_move_to(hass, home, frozen_now, START + 2 * SPACING)
    assert state(hass, HEATER) == STATE_OFF

    await hass.services.async_call(
        DOMAIN, "opt_out", {"config_entry": home.entry_id}, blocking=True
    )
    await async_move_to(hass, home, frozen_now, START + 3 * SPACING)
    assert state(hass, HEATER) == STATE_ON
    await hass.services.async_call(
        "switch", "turn_on", {ATTR_ENTITY_ID: PARTICIPATION}, blocking=True
    )
    assert [e["action"] for e in await audit(hass) if e["entity"] == ""] == [
        "opt_out",
        "opt_in",
        "opt_out",
        "opt_in",
    ]

    with pytest.raises(ServiceValidationError) as raised:
        await hass.services.async_call(DOMAIN, "opt_out", {"event_id": "nope"}, blocking=True)
    assert raised.value.translation_key == "unknown_event"
    assert raised.value.translation_placeholders == {"event": "nope"}


async def test_export_audit_log_to_a_file(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The log can be saved as CSV in the configuration folder."""
    await publish(hass, bridge, grid, event())
    await async_move_to(hass, home, frozen_now, START)
    response = await hass.services.async_call(
        DOMAIN, "export_audit_log", {"save_file": True}, blocking=True, return_response=True
    )
    assert response is not None
    path = Path(str(response["path"]))
    assert path == Path(hass.config.path(DOMAIN, "audit_c1_h1.csv"))
    written = await hass.async_add_executor_job(
        functools.partial(path.read_text, encoding="utf-8", newline="")
    )
    assert written == response["csv"]
    assert response["entries"] == 1
    rows = list(csv.reader(io.StringIO(written)))
    assert rows[1][2:4] == [HEATER, "shed"]


async def test_a_randomized_start_within_the_bound(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The home sheds at its own start, within randomizeStart of the event's."""
    await publish(hass, bridge, grid, event(randomize="PT10M"))
    participation = hass.states.get(PARTICIPATION)
    assert participation is not None
    own_start = participation.attributes["start"]
    assert abs(own_start - START) <= timedelta(minutes=10)
    await async_move_to(hass, home, frozen_now, own_start - timedelta(seconds=1))
    assert state(hass, HEATER) == STATE_ON
    await async_move_to(hass, home, frozen_now, own_start)
    assert state(hass, HEATER) == STATE_OFF


def test_service_calls() -> None:
    """Each setting maps to the service of its entity's domain."""
    assert service_call(HEATER, Setting(on=False)) == (
        "input_boolean",
        "turn_off",
        {"entity_id": HEATER},
    )
    assert service_call(CHARGER, Setting(value=6)) == (
        "number",
        "set_value",
        {"entity_id": CHARGER, "value": 6},
    )
    assert service_call(THERMOSTAT, Setting(low=19, high=26)) == (
        "climate",
        "set_temperature",
        {"entity_id": THERMOSTAT, "target_temp_low": 19, "target_temp_high": 26},
    )
    assert service_call(WATER_HEATER, Setting(value=50)) == (
        "water_heater",
        "set_temperature",
        {"entity_id": WATER_HEATER, "temperature": 50},
    )


async def test_removing_the_entry_forgets_the_stores(
    hass: HomeAssistant, home: MockConfigEntry, hass_storage: dict[str, Any]
) -> None:
    """The engine's state, the audit log, queued reports: gone with the entry."""
    keys = [f"{DOMAIN}.{home.entry_id}.response", f"{DOMAIN}.{home.entry_id}.uplink"]
    await hass.config_entries.async_unload(home.entry_id)
    assert all(key in hass_storage for key in keys)
    await hass.config_entries.async_remove(home.entry_id)
    await hass.async_block_till_done()
    assert not any(key in hass_storage for key in keys)


async def test_diagnostics_show_the_load_response(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    *,
    frozen_now: FrozenDateTimeFactory,
    hass_client: ClientSessionGenerator,
) -> None:
    """What the home enrolled, takes part in and holds, the latest audit entries and reports."""
    # Under way at once: the clock stays where the diagnostics' access token is valid.
    await publish(hass, bridge, grid, event(start=NOW))
    await async_move_to(hass, home, frozen_now, NOW)
    bridge.report_status = 503  # reports wait for the bridge

    await hass.services.async_call(DOMAIN, "opt_out", {}, blocking=True)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, home)

    response = diagnostics["load_response"]
    assert response["enrolled"] == [HEATER, THERMOSTAT, CHARGER, INVERTER]
    (session,) = response["engine"]["sessions"]
    assert session["event_id"] == "peak"
    assert session["opted_out"] is True
    assert [held["entity_id"] for held in response["engine"]["held"]] == [HEATER]
    assert response["shed_power"] == pytest.approx(1.8)
    assert [(e["action"], e["entity"]) for e in response["audit_tail"]] == [
        ("shed", HEATER),
        ("opt_out", ""),
    ]
    assert response["audit_entries"] == 2
    # The opt-out waits for the bridge to store it.
    assert diagnostics["uplink"] == {"queued": {"response": 1}, "last_reduction": None}


async def test_ev_charging_share_holds_the_charger(
    hass: HomeAssistant,
    home: MockConfigEntry,
    bridge: FakeBridge,
    *,
    community: FakeCommunity,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The community's share, in amperes on 230 V, as it is renewed; back once withdrawn."""

    async def send(kilowatts: float, operation: Operation) -> None:
        body = community_event(
            "ev-limit-h1",
            "X_EV_CHARGING_LIMIT",
            kilowatts,
            start=dt_util.utcnow(),
            duration="PT15M",
        )
        signed = community.sign(body, audience=["home:c1/h1"], operation=operation)
        await bridge.wait_for_ack(await bridge.publish(signed, operation))
        await hass.async_block_till_done()

    await send(2.3, Operation.CREATE)
    assert value(hass, CHARGER) == 10
    assert state(hass, EV_SHARE) == "2.3"
    assert (state(hass, HEATER), temperature(hass)) == (STATE_ON, 24)  # no demand response
    participation = hass.states.get(PARTICIPATION)
    assert participation is not None
    assert participation.attributes["event_id"] is None
    with pytest.raises(ServiceValidationError) as refused:
        await hass.services.async_call(
            DOMAIN, "opt_out", {"event_id": "ev-limit-h1"}, blocking=True
        )
    assert refused.value.translation_key == "not_demand_response"

    await async_move_to(hass, home, frozen_now, NOW + timedelta(minutes=7))
    await send(3.45, Operation.UPDATE)  # renewed, with more headroom: 15 A
    assert value(hass, CHARGER) == 15
    await async_move_to(hass, home, frozen_now, NOW + timedelta(minutes=10))
    await send(3.45, Operation.DELETE)  # the transformer has room again
    assert value(hass, CHARGER) == 16
    assert state(hass, EV_SHARE) == STATE_UNKNOWN

    log = await audit(hass)
    assert [(e["event"], e["action"], e["entity"], e["before"], e["after"]) for e in log] == [
        ("ev-limit-h1", "limit", CHARGER, "16", "10"),
        ("ev-limit-h1", "limit", CHARGER, "10", "15"),
        ("ev-limit-h1", "restore", CHARGER, "15", "16"),
    ]
    assert operating_states(bridge, "ev-limit-h1") == ["RUNNING_CURTAILED"]
