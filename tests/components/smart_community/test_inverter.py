"""SunSpec inverters through Home Assistant, against a pymodbus server simulating one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.number import ATTR_VALUE, SERVICE_SET_VALUE
from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigEntryState
from homeassistant.const import ATTR_ENTITY_ID, CONF_HOST, CONF_PORT, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.smart_community.const import (
    CONF_POWER_LIMIT,
    CONF_SERIAL,
    CONF_UNIT_ID,
    DOMAIN,
    INVERTER_LIMIT_MIN_INTERVAL,
    INVERTER_LIMIT_REFRESH,
    INVERTER_LIMIT_REVERT,
    INVERTER_POLL_INTERVAL,
    SUBENTRY_INVERTER,
)
from custom_components.smart_community.diagnostics import async_get_config_entry_diagnostics
from custom_components.smart_community.modbus_device import TIMEOUT
from tests.loopback import free_port

from .conftest import async_setup_integration, inverter_subentry
from .fake_bridge import FakeBridge
from .sunspec_inverter import ENA, RVRTTMS, WMAXLIMPCT, SunSpecInverter, Write

UNIQUE = "sunspec_fronius_28176543"
REVERT = int(INVERTER_LIMIT_REVERT.total_seconds())
# The coordinator spreads its polls within a second past the interval.
POLL = INVERTER_POLL_INTERVAL + timedelta(seconds=1)


def _entity(hass: HomeAssistant, platform: str, key: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{UNIQUE}_{key}")
    assert entity_id is not None, key
    return entity_id


def _state(hass: HomeAssistant, platform: str, key: str) -> str:
    state = hass.states.get(_entity(hass, platform, key))
    assert state is not None
    return state.state


async def _set_limit(hass: HomeAssistant, value: float) -> None:
    await hass.services.async_call(
        "number",
        SERVICE_SET_VALUE,
        {ATTR_ENTITY_ID: _entity(hass, "number", "active_power_limit"), ATTR_VALUE: value},
        blocking=True,
    )


async def _tick(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, delta: timedelta, *, settle: bool = True
) -> None:
    """Move the clock; with ``settle``, wait for the polls it started (background tasks).

    Without, only let the loop run a little: a request that waits for a timeout stays pending.
    """
    freezer.tick(delta)
    async_fire_time_changed(hass)
    if not settle:
        for _ in range(100):
            await asyncio.sleep(0)
        return
    await hass.async_block_till_done()
    for entry in hass.config_entries.async_entries(DOMAIN):
        for coordinator in entry.runtime_data.inverters.values():
            async with coordinator._debounced_refresh.async_lock():
                pass
    await hass.async_block_till_done()


def _hold(percent: int) -> Write:
    """The write of a limit in the simulated inverter's tenths of a percent."""
    return Write(WMAXLIMPCT, (percent * 10, 0, REVERT, 10, 1))


RELEASE = Write(ENA, (0,))


@pytest.fixture
async def with_inverter(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    inverter: SunSpecInverter,
) -> MockConfigEntry:
    """The home set up with the simulated inverter as a subentry."""
    entry = MockConfigEntry(
        domain=mock_config_entry.domain,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data=dict(mock_config_entry.data),
        subentries_data=[inverter_subentry(inverter)],
    )
    await async_setup_integration(hass, entry)
    return entry


async def _start_flow(hass: HomeAssistant, entry: MockConfigEntry) -> str:
    result = await hass.config_entries.subentries.async_init(
        (entry.entry_id, SUBENTRY_INVERTER), context={"source": SOURCE_USER}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return result["flow_id"]


def _address(inverter: SunSpecInverter) -> dict[str, object]:
    return {CONF_HOST: inverter.host, CONF_PORT: inverter.port, CONF_UNIT_ID: inverter.unit_id}


async def test_add_inverter(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    inverter: SunSpecInverter,
    device_registry: dr.DeviceRegistry,
) -> None:
    """Adding an inverter discovers its SunSpec map and brings up its entities."""
    flow_id = await _start_flow(hass, init_integration)
    result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Fronius Symo 8.2-3-M"
    await hass.async_block_till_done()

    (subentry,) = init_integration.subentries.values()
    assert subentry.unique_id == "fronius_28176543"
    assert dict(subentry.data) == dict(inverter_subentry(inverter)["data"])
    assert init_integration.state is ConfigEntryState.LOADED

    # Scale factors applied: W_SF 0, WH_SF 3 (kWh counters), shown in kWh.
    assert _state(hass, "sensor", "ac_power") == "4200.0"
    assert _state(hass, "sensor", "lifetime_energy") == "12345.0"
    assert _state(hass, "sensor", "status") == "mppt"
    assert _state(hass, "number", "active_power_limit") == "100.0"

    device = device_registry.async_get_device_by_identifier(
        (DOMAIN, UNIQUE), init_integration.entry_id
    )
    assert device is not None
    assert (device.manufacturer, device.model, device.serial_number, device.sw_version) == (
        "Fronius",
        "Symo 8.2-3-M",
        "28176543",
        "3.14.1-2",
    )
    assert device.config_subentry_id == subentry.subentry_id
    # Diagnostic extras stay off until the resident wants them.
    registry = er.async_get(hass)
    dc_power = registry.async_get(_entity(hass, "sensor", "dc_power"))
    assert dc_power is not None
    assert dc_power.disabled_by is er.RegistryEntryDisabler.INTEGRATION

    # The same inverter again is refused.
    flow_id = await _start_flow(hass, init_integration)
    result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert not inverter.writes


async def test_add_inverter_errors(
    hass: HomeAssistant, init_integration: MockConfigEntry, inverter: SunSpecInverter
) -> None:
    """Each failure is named on the form, which keeps the input; fixing it adds the inverter."""
    flow_id = await _start_flow(hass, init_integration)

    nothing_there = {**_address(inverter), CONF_PORT: free_port()}
    result = await hass.config_entries.subentries.async_configure(flow_id, nothing_there)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_HOST: "cannot_connect"}
    suggested = {
        str(key): key.description["suggested_value"] for key in result["data_schema"].schema
    }
    assert suggested == nothing_there

    saved = list(inverter.registers)
    inverter.registers[0] = 0  # no "SunS" anywhere
    result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result["errors"] == {CONF_UNIT_ID: "not_sunspec"}

    # The marker, then a chain of empty models that never ends.
    inverter.registers[:] = [0x5375, 0x6E53] + [2, 0] * ((len(saved) - 2) // 2)
    result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result["errors"] == {CONF_UNIT_ID: "invalid_response"}
    inverter.registers[:] = saved

    with patch(
        "custom_components.smart_community.config_flow.SunSpecClient.discover",
        side_effect=RuntimeError("boom"),
    ):
        result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result["errors"] == {"base": "unknown"}

    result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result.get("errors") is None
    assert result["type"] is FlowResultType.CREATE_ENTRY


def _without_common(inverter: SunSpecInverter) -> None:
    inverter.registers[2] = 2  # model 1 renumbered: no common model in the chain


def _float_inverter(inverter: SunSpecInverter) -> None:
    inverter.registers[inverter.inverter_at - 2] = 113  # the floating-point three-phase model


@pytest.mark.parametrize("damage", [_without_common, _float_inverter])
async def test_add_inverter_without_the_models_it_needs(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    inverter: SunSpecInverter,
    damage: Callable[[SunSpecInverter], None],
) -> None:
    """A SunSpec map without the common model or an integer inverter model is refused."""
    damage(inverter)
    flow_id = await _start_flow(hass, init_integration)
    result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result["errors"] == {CONF_UNIT_ID: "not_sunspec"}


async def test_add_inverter_with_a_short_controls_model(
    hass: HomeAssistant, init_integration: MockConfigEntry, inverter: SunSpecInverter
) -> None:
    """A model 123 shorter than SunSpec's is not used: the inverter comes without a limit."""
    assert inverter.controls_at is not None
    # 22 registers: the last two then read as an empty model (id 0, length 0).
    inverter.registers[inverter.controls_at - 1] = 22
    inverter.registers[inverter.controls_at + 22 : inverter.controls_at + 24] = [0, 0]
    flow_id = await _start_flow(hass, init_integration)
    result = await hass.config_entries.subentries.async_configure(flow_id, _address(inverter))
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_POWER_LIMIT] is False


async def test_inverter_without_serial_or_controls(
    hass: HomeAssistant, init_integration: MockConfigEntry, socket_enabled: None
) -> None:
    """No serial number: the address identifies it. No model 123: no power limit entity."""
    plain = SunSpecInverter(serial="", controls=False, inverter_model=101, base=0)
    await plain.start()
    try:
        flow_id = await _start_flow(hass, init_integration)
        result = await hass.config_entries.subentries.async_configure(flow_id, _address(plain))
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()
        (subentry,) = init_integration.subentries.values()
        assert subentry.unique_id == f"127.0.0.1:{plain.port}/1"
        assert subentry.data[CONF_POWER_LIMIT] is False
        registry = er.async_get(hass)
        prefix = f"sunspec_{subentry.unique_id}"
        assert registry.async_get_entity_id("sensor", DOMAIN, f"{prefix}_ac_power")
        assert not registry.async_get_entity_id("number", DOMAIN, f"{prefix}_active_power_limit")
    finally:
        await plain.stop()


async def test_reconfigure_inverter(
    hass: HomeAssistant, with_inverter: MockConfigEntry, inverter: SunSpecInverter
) -> None:
    """A new address is accepted only for the same inverter, and the home reloads with it."""
    (subentry,) = with_inverter.subentries.values()

    async def reconfigure(user_input: dict[str, object]) -> dict[str, object]:
        result = await hass.config_entries.subentries.async_init(
            (with_inverter.entry_id, SUBENTRY_INVERTER),
            context={"source": SOURCE_RECONFIGURE, "subentry_id": subentry.subentry_id},
        )
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "reconfigure"
        assert result["description_placeholders"] == {"inverter": "Fronius Symo 8.2-3-M"}
        return dict(
            await hass.config_entries.subentries.async_configure(result["flow_id"], user_input)
        )

    result = await reconfigure({**_address(inverter), CONF_PORT: free_port()})
    assert result["errors"] == {CONF_HOST: "cannot_connect"}

    other = SunSpecInverter(serial="99999999")
    await other.start()
    try:
        result = await reconfigure(_address(other))
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "wrong_inverter"
    finally:
        await other.stop()

    await inverter.stop()
    inverter.port = free_port()
    await inverter.start()
    assert _state(hass, "sensor", "ac_power") == "4200.0"
    result = await reconfigure(_address(inverter))
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert with_inverter.subentries[subentry.subentry_id].data[CONF_PORT] == inverter.port
    assert with_inverter.state is ConfigEntryState.LOADED
    inverter.set_inverter(12, 1500)
    await hass.async_block_till_done()
    coordinator = with_inverter.runtime_data.inverters[subentry.subentry_id]
    await coordinator.async_refresh()
    assert coordinator.last_exception is None
    assert _state(hass, "sensor", "ac_power") == "1500.0"


async def test_power_limit_hold_refresh_release(
    hass: HomeAssistant,
    with_inverter: MockConfigEntry,
    inverter: SunSpecInverter,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Every limit carries the revert timer, is refreshed before it lapses, and 100 lifts it."""
    await _set_limit(hass, 60)
    assert inverter.control_writes() == [_hold(60)]
    assert inverter.control(RVRTTMS) == REVERT
    assert inverter.control(ENA) == 1
    assert _state(hass, "number", "active_power_limit") == "60.0"

    # The same limit again, and polls while it is fresh, write nothing.
    await _set_limit(hass, 60)
    await _tick(hass, frozen_now, POLL)
    await _tick(hass, frozen_now, POLL)
    assert inverter.control_writes() == [_hold(60)]

    # Halfway through the revert timer the limit goes out again, with the timer.
    await _tick(hass, frozen_now, INVERTER_LIMIT_REFRESH - 2 * POLL)
    assert inverter.control_writes() == [_hold(60), _hold(60)]
    assert INVERTER_LIMIT_REFRESH < INVERTER_LIMIT_REVERT

    await _tick(hass, frozen_now, INVERTER_LIMIT_MIN_INTERVAL)
    await _set_limit(hass, 100)
    assert inverter.control_writes() == [_hold(60), _hold(60), RELEASE]
    assert _state(hass, "number", "active_power_limit") == "100.0"

    # Released: no refresh any more, and 100 again writes nothing.
    await _tick(hass, frozen_now, INVERTER_LIMIT_REVERT)
    await _set_limit(hass, 100)
    assert inverter.control_writes() == [_hold(60), _hold(60), RELEASE]

    (diagnostics,) = (await async_get_config_entry_diagnostics(hass, with_inverter))["inverters"]
    assert diagnostics["requested_limit"] == 100
    assert diagnostics["power_limit"]["enabled"] is False
    assert diagnostics["reading"]["ac_power"] == 4200
    assert diagnostics["models"] == {"base": 40000, "inverter": 103, "controls": True}
    assert CONF_SERIAL not in diagnostics
    assert CONF_HOST not in diagnostics


async def test_power_limit_rate_limited(
    hass: HomeAssistant,
    with_inverter: MockConfigEntry,
    inverter: SunSpecInverter,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Requests closer than the minimum interval wait; the latest one is written."""
    await _set_limit(hass, 60)
    await _set_limit(hass, 50)
    await _set_limit(hass, 40)
    assert inverter.control_writes() == [_hold(60)]
    assert _state(hass, "number", "active_power_limit") == "60.0"

    await _tick(hass, frozen_now, INVERTER_LIMIT_MIN_INTERVAL)
    assert inverter.control_writes() == [_hold(60), _hold(40)]
    assert _state(hass, "number", "active_power_limit") == "40.0"


async def test_inverter_stops_answering(
    hass: HomeAssistant,
    with_inverter: MockConfigEntry,
    inverter: SunSpecInverter,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Unavailable once it stops answering; back, its lapsed limit is written again."""
    await _set_limit(hass, 50)
    inverter.answering.clear()
    # The poll's requests go unanswered until the client's timeouts run out.
    await _tick(hass, frozen_now, POLL, settle=False)
    for _ in range(3):
        await _tick(hass, frozen_now, timedelta(seconds=TIMEOUT + 1), settle=False)
    await _tick(hass, frozen_now, timedelta(0))
    assert _state(hass, "sensor", "ac_power") == STATE_UNAVAILABLE
    assert _state(hass, "number", "active_power_limit") == STATE_UNAVAILABLE

    # Back, it had restarted and so dropped the limit: the client reconnects and writes it again.
    inverter.set_control(ENA, 0)
    inverter.set_inverter(12, 3100)
    inverter.answering.set()
    await _tick(hass, frozen_now, POLL)
    assert _state(hass, "sensor", "ac_power") == "3100.0"
    assert inverter.control_writes() == [_hold(50), _hold(50)]
    assert _state(hass, "number", "active_power_limit") == "50.0"


async def test_limit_for_a_switched_off_inverter(
    hass: HomeAssistant,
    with_inverter: MockConfigEntry,
    inverter: SunSpecInverter,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A limit for an inverter that went away fails; it stands for when the inverter is back."""
    await inverter.stop()
    # The client finds the connection gone when it writes, and gives up after its timeout.
    request = asyncio.create_task(_set_limit(hass, 40))
    for _ in range(3):
        await _tick(hass, frozen_now, timedelta(seconds=TIMEOUT + 1), settle=False)
    with pytest.raises(HomeAssistantError) as raised:
        await request
    assert raised.value.translation_key == "inverter_unreachable"
    assert _state(hass, "number", "active_power_limit") == "100.0"

    await inverter.start()
    await _tick(hass, frozen_now, POLL)
    assert inverter.control_writes() == [_hold(40)]
    assert _state(hass, "number", "active_power_limit") == "40.0"


async def test_inverter_refuses_the_limit(
    hass: HomeAssistant, with_inverter: MockConfigEntry, inverter: SunSpecInverter
) -> None:
    """A Modbus exception to the write is a translated error; the inverter keeps full power."""
    inverter.refuse_writes = True
    with pytest.raises(HomeAssistantError) as raised:
        await _set_limit(hass, 30)
    assert raised.value.translation_key == "inverter_limit_refused"
    assert _state(hass, "number", "active_power_limit") == "100.0"


async def test_inverter_answers_nonsense(
    hass: HomeAssistant,
    with_inverter: MockConfigEntry,
    inverter: SunSpecInverter,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Registers that cannot be what the model says make the inverter unavailable."""
    inverter.set_inverter(13, 42)  # W_SF beyond SunSpec's -10..10
    await _tick(hass, frozen_now, POLL)
    assert _state(hass, "sensor", "ac_power") == STATE_UNAVAILABLE
    (coordinator,) = with_inverter.runtime_data.inverters.values()
    assert coordinator.last_exception is not None
    assert coordinator.last_exception.translation_key == "inverter_invalid_response"

    inverter.set_inverter(13, 0)
    await _tick(hass, frozen_now, POLL)
    assert _state(hass, "sensor", "ac_power") == "4200.0"


async def test_refresh_refused(
    hass: HomeAssistant,
    with_inverter: MockConfigEntry,
    inverter: SunSpecInverter,
    frozen_now: FrozenDateTimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A poll whose limit write is refused still shows the readings, and says so in the log."""
    await _set_limit(hass, 70)
    inverter.set_control(ENA, 0)  # the inverter dropped the limit...
    inverter.refuse_writes = True  # ...and refuses it now
    await _tick(hass, frozen_now, POLL)
    assert "refused its power limit" in caplog.text
    assert _state(hass, "sensor", "ac_power") == "4200.0"
    assert _state(hass, "number", "active_power_limit") == "100.0"
    assert inverter.control_writes() == [_hold(70)]


async def test_inverter_lost_its_controls(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
    socket_enabled: None,
) -> None:
    """Model 123 gone since the inverter was added (new firmware): the limit is refused."""
    plain = SunSpecInverter(controls=False)
    await plain.start()
    try:
        subentry = inverter_subentry(plain)
        subentry["data"] = {**subentry["data"], CONF_POWER_LIMIT: True}
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=mock_config_entry.title,
            unique_id=mock_config_entry.unique_id,
            data=dict(mock_config_entry.data),
            subentries_data=[subentry],
        )
        await async_setup_integration(hass, entry)
        assert _state(hass, "number", "active_power_limit") == "unknown"
        with pytest.raises(HomeAssistantError) as raised:
            await _set_limit(hass, 50)
        assert raised.value.translation_key == "inverter_limit_refused"
        assert not plain.writes
    finally:
        await plain.stop()


async def test_inverter_off_at_setup(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    inverter: SunSpecInverter,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """An inverter asleep at night does not hold up the home; it shows up when it wakes."""
    await inverter.stop()
    entry = MockConfigEntry(
        domain=DOMAIN,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data=dict(mock_config_entry.data),
        subentries_data=[inverter_subentry(inverter)],
    )
    await async_setup_integration(hass, entry)
    assert entry.state is ConfigEntryState.LOADED
    assert _state(hass, "sensor", "ac_power") == STATE_UNAVAILABLE
    assert _state(hass, "number", "active_power_limit") == STATE_UNAVAILABLE
    (diagnostics,) = (await async_get_config_entry_diagnostics(hass, entry))["inverters"]
    assert diagnostics["available"] is False
    assert diagnostics["models"] is None

    await inverter.start()
    await _tick(hass, frozen_now, POLL)
    assert _state(hass, "sensor", "ac_power") == "4200.0"
    assert _state(hass, "sensor", "status") == "mppt"


async def test_removing_the_inverter(
    hass: HomeAssistant, with_inverter: MockConfigEntry, inverter: SunSpecInverter
) -> None:
    """Removing the subentry reloads the home without it and removes its entities."""
    (subentry,) = with_inverter.subentries.values()
    assert hass.config_entries.async_remove_subentry(with_inverter, subentry.subentry_id)
    await hass.async_block_till_done()
    assert with_inverter.state is ConfigEntryState.LOADED
    assert not with_inverter.runtime_data.inverters
    registry = er.async_get(hass)
    assert not registry.async_get_entity_id("sensor", DOMAIN, f"{UNIQUE}_ac_power")
    devices = dr.async_get(hass)
    assert devices.async_get_device_by_identifier((DOMAIN, UNIQUE), with_inverter.entry_id) is None
