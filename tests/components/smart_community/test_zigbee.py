"""ZigBee loads through Home Assistant's own ZHA, on a zigpy network with a fake radio.

ZHA runs for real on a zigpy ControllerApplication whose radio methods do nothing (the way
zigpy's and ZHA's own tests fake a radio); the devices are real zigpy devices with zigpy's
cluster classes, joined through ZHA's gateway, so ZHA creates their entities. Attribute reports
arrive as zigpy applies them to a cluster.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.zha.helpers import get_zha_gateway
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from zigpy.application import ControllerApplication
import zigpy.config
import zigpy.device
from zigpy.profiles import zha as zha_profile
import zigpy.state
import zigpy.types
from zigpy.zcl.clusters.general import Basic, Groups, OnOff
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.smartenergy import Metering
from zigpy.zcl.foundation import Status
import zigpy.zdo.types as zdo_t

from custom_components.smart_community.const import (
    ACTION_SPACING,
    CONF_ENTITY_ID,
    CONF_LOADS,
    CONF_MAX_SHED_POWER,
    CONF_NOMINAL_POWER,
    DOMAIN,
)
from custom_components.smart_community.diagnostics import async_get_config_entry_diagnostics
from custom_components.smart_community.zha_loads import (
    async_zigbee_diagnostics,
    async_zigbee_load,
    async_zigbee_loads,
)
from custom_components.smart_community.zigbee import DriveRefusal, has_on_off, measured_power

from .conftest import NOW, async_move_to, async_setup_integration
from .fake_bridge import FakeBridge, FakeGrid, dr_event

PLUG = "00:0d:6f:00:0a:90:69:e7"
SENSOR = "00:0d:6f:00:0a:90:69:e8"
METERED = "00:0d:6f:00:0a:90:69:e9"
COORDINATOR = "00:15:8d:00:02:32:4f:32"


class FakeRadioApp(ControllerApplication):
    """A zigpy application whose radio does nothing: packets sent go nowhere."""

    async def add_endpoint(self, descriptor: zdo_t.SimpleDescriptor) -> None:
        """No radio to register endpoints with."""

    async def connect(self) -> None:
        """No radio to connect to."""

    async def disconnect(self) -> None:
        """No radio to disconnect from."""

    async def force_remove(self, dev: zigpy.device.Device) -> None:
        """No radio to remove a device from."""

    async def load_network_info(self, *, load_devices: bool = False) -> None:
        """The network state is set up by the fixture."""

    async def permit_ncp(self, time_s: int = 60) -> None:
        """No radio to open for joining."""

    async def permit_with_link_key(
        self, node: zigpy.types.EUI64, link_key: zigpy.types.KeyData, time_s: int = 60
    ) -> None:
        """No radio to open for joining."""

    async def reset_network_info(self) -> None:
        """No radio to reset."""

    async def send_packet(self, packet: zigpy.types.ZigbeePacket) -> None:
        """No radio to send with."""

    async def start_network(self) -> None:
        """No radio to start."""

    async def write_network_info(
        self, *, network_info: zigpy.state.NetworkInfo, node_info: zigpy.state.NodeInfo
    ) -> None:
        """No radio to write to."""

    async def move_network_to_channel(self, new_channel: int, *, num_broadcasts: int = 5) -> None:
        """No radio to move."""


@pytest.fixture
def zigpy_app() -> Generator[FakeRadioApp]:
    """A zigpy network with its coordinator, on a fake radio."""
    app = FakeRadioApp(
        {
            zigpy.config.CONF_DATABASE: None,
            zigpy.config.CONF_DEVICE: {zigpy.config.CONF_DEVICE_PATH: "/dev/null"},
            zigpy.config.CONF_NWK_BACKUP_ENABLED: False,
            zigpy.config.CONF_TOPO_SCAN_ENABLED: False,
            zigpy.config.CONF_OTA: {zigpy.config.CONF_OTA_ENABLED: False},
        }
    )
    app.state.node_info.nwk = zigpy.types.NWK(0x0000)
    app.state.node_info.ieee = zigpy.types.EUI64.convert(COORDINATOR)
    app.state.network_info.pan_id = zigpy.types.PanId(0x1234)
    app.state.network_info.extended_pan_id = app.state.node_info.ieee
    app.state.network_info.channel = 15
    app.state.network_info.network_key.key = zigpy.types.KeyData(range(16))
    coordinator = app.add_device(nwk=app.state.node_info.nwk, ieee=app.state.node_info.ieee)
    coordinator.node_desc = zdo_t.NodeDescriptor(logical_type=zdo_t.LogicalType.Coordinator)
    coordinator.manufacturer = "Coordinator Manufacturer"
    coordinator.model = "Coordinator Model"
    endpoint = coordinator.add_endpoint(1)
    endpoint.profile_id = zha_profile.PROFILE_ID
    endpoint.add_input_cluster(Basic.cluster_id)
    endpoint.add_input_cluster(Groups.cluster_id)
    # Nothing answers on a fake radio: every request to a device succeeds at once.
    with patch("zigpy.device.Device.request", return_value=[Status.SUCCESS]):
        yield app


@pytest.fixture
async def zha(hass: HomeAssistant, zigpy_app: FakeRadioApp) -> AsyncGenerator[MockConfigEntry]:
    """Home Assistant's ZHA, set up on the fake radio."""
    entry = MockConfigEntry(
        domain="zha",
        version=5,
        minor_version=2,
        data={
            zigpy.config.CONF_DEVICE: {
                zigpy.config.CONF_DEVICE_PATH: "/dev/ttyUSB0",
                zigpy.config.CONF_DEVICE_BAUDRATE: 115200,
                zigpy.config.CONF_DEVICE_FLOW_CONTROL: None,
            },
            "radio_type": "ezsp",
        },
    )
    entry.add_to_hass(hass)
    with (
        patch("bellows.zigbee.application.ControllerApplication.new", return_value=zigpy_app),
        patch("homeassistant.components.zha.radio_manager.CONNECT_DELAY_S", 0),
    ):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.LOADED
        yield entry
        if entry.state is ConfigEntryState.LOADED:
            assert await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_block_till_done()


type Join = Callable[..., Coroutine[Any, Any, zigpy.device.Device]]

MAINS_ROUTER = zdo_t.NodeDescriptor(
    logical_type=zdo_t.LogicalType.Router,
    mac_capability_flags=zdo_t.NodeDescriptor.MACCapabilityFlags.MainsPowered
    | zdo_t.NodeDescriptor.MACCapabilityFlags.RxOnWhenIdle
    | zdo_t.NodeDescriptor.MACCapabilityFlags.AllocateAddress,
    manufacturer_code=0x1234,
    maximum_buffer_size=82,
    maximum_incoming_transfer_size=82,
    server_mask=0,
    maximum_outgoing_transfer_size=82,
)
BATTERY_END_DEVICE = zdo_t.NodeDescriptor(
    logical_type=zdo_t.LogicalType.EndDevice,
    mac_capability_flags=zdo_t.NodeDescriptor.MACCapabilityFlags.AllocateAddress,
    manufacturer_code=0x1234,
    maximum_buffer_size=82,
    maximum_incoming_transfer_size=82,
    server_mask=0,
    maximum_outgoing_transfer_size=82,
)


@pytest.fixture
def join(hass: HomeAssistant, zigpy_app: FakeRadioApp, zha: MockConfigEntry) -> Join:
    """Join a real zigpy device with the given server clusters, through ZHA's gateway."""

    async def _join(
        ieee: str,
        clusters: list[int],
        *,
        node_desc: zdo_t.NodeDescriptor = MAINS_ROUTER,
        model: str = "Smart plug",
        nwk: int = 0x1000,
        device_type: int = zha_profile.DeviceType.SMART_PLUG,
    ) -> zigpy.device.Device:
        device = zigpy_app.add_device(ieee=zigpy.types.EUI64.convert(ieee), nwk=nwk)
        device.node_desc = node_desc
        device.manufacturer = "Acme"
        device.model = model
        endpoint = device.add_endpoint(1)
        endpoint.profile_id = zha_profile.PROFILE_ID
        endpoint.device_type = device_type
        for cluster_id in (Basic.cluster_id, *clusters):
            endpoint.add_input_cluster(cluster_id)
        device.status = zigpy.device.Status.ENDPOINTS_INIT
        await get_zha_gateway(hass).async_device_initialized(device)
        await hass.async_block_till_done()
        return device

    return _join


def _entity(hass: HomeAssistant, domain: str, unique_id: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(domain, "zha", unique_id)
    assert entity_id is not None, unique_id
    return entity_id


async def test_plug_with_power_measurement(hass: HomeAssistant, join: Join) -> None:
    """A mains-powered plug is a load that may be driven; its power comes from its reports."""
    plug = await join(PLUG, [OnOff.cluster_id, ElectricalMeasurement.cluster_id])
    switch = _entity(hass, "switch", f"{PLUG}-1")
    power_sensor = _entity(hass, "sensor", f"{PLUG}-1-2820")

    measurement = plug.endpoints[1].in_clusters[ElectricalMeasurement.cluster_id]
    attributes = ElectricalMeasurement.AttributeDefs
    measurement.update_attribute(attributes.ac_power_multiplier.id, 1)
    measurement.update_attribute(attributes.ac_power_divisor.id, 10)
    measurement.update_attribute(attributes.active_power.id, 15234)  # 1523.4 W
    await hass.async_block_till_done()

    load = async_zigbee_load(hass, switch)
    assert load is not None
    assert load.switch_entity_ids == (switch,)
    assert load.power_entity_id == power_sensor
    assert load.power == pytest.approx(1523.4)
    assert load.available
    assert load.mains_powered
    assert load.refusal is None
    # ZHA's own sensor shows the same reading.
    state = hass.states.get(power_sensor)
    assert state is not None
    assert float(state.state) == pytest.approx(1523.4)

    # The sensor entity leads to the same load; an entity of another integration to none.
    assert async_zigbee_load(hass, power_sensor) == load
    assert async_zigbee_load(hass, "switch.not_zigbee") is None

    # ZHA lost it: not to be driven, since a command would be lost.
    zha_device = get_zha_gateway(hass).get_device(plug.ieee)
    assert zha_device is not None
    zha_device.update_available(False)
    await hass.async_block_till_done()
    load = async_zigbee_load(hass, switch)
    assert load is not None
    assert load.refusal is DriveRefusal.UNAVAILABLE
    assert hass.states.get(switch).state == "unavailable"  # type: ignore[union-attr]


async def test_metering_plug_battery_device_and_no_switch(hass: HomeAssistant, join: Join) -> None:
    """Metering demand in kW counts; a battery device is refused; a sensor is no load."""
    metered = await join(
        METERED, [OnOff.cluster_id, Metering.cluster_id], nwk=0x1001, model="Metered plug"
    )
    metering = metered.endpoints[1].in_clusters[Metering.cluster_id]
    attributes = Metering.AttributeDefs
    metering.update_attribute(attributes.unit_of_measure.id, 0)  # kW
    metering.update_attribute(attributes.multiplier.id, 1)
    metering.update_attribute(attributes.divisor.id, 1000)
    metering.update_attribute(attributes.instantaneous_demand.id, 2150)  # 2.15 kW
    assert measured_power(metered) == pytest.approx(2150)

    await join(
        SENSOR,
        [OnOff.cluster_id],
        node_desc=BATTERY_END_DEVICE,
        nwk=0x1002,
        model="Battery relay",
    )
    loads = {load.name: load for load in async_zigbee_loads(hass)}
    assert set(loads) == {"Acme Metered plug", "Acme Battery relay"}
    assert loads["Acme Metered plug"].refusal is None
    assert loads["Acme Metered plug"].power == pytest.approx(2150)
    battery = loads["Acme Battery relay"]
    assert battery.refusal is DriveRefusal.NOT_MAINS_POWERED
    assert battery.power is None
    assert not battery.mains_powered

    diagnostics = {item["name"]: item for item in async_zigbee_diagnostics(hass)}
    assert diagnostics["Acme Metered plug"]["power"] == pytest.approx(2150)
    assert diagnostics["Acme Battery relay"]["refusal"] == "not_mains_powered"
    # No addresses in diagnostics.
    assert METERED not in str(diagnostics)

    # A device that reports a zero divisor reports nothing usable.
    metering.update_attribute(attributes.divisor.id, 0)
    assert measured_power(metered) is None

    # Metering in another unit than kW is not a power the load draws.
    metering.update_attribute(attributes.unit_of_measure.id, 1)  # m³
    assert measured_power(metered) is None


async def test_devices_without_on_off(hass: HomeAssistant, join: Join) -> None:
    """A device with nothing to switch is not a load, whatever it measures."""
    meter = await join(
        SENSOR,
        [ElectricalMeasurement.cluster_id],
        model="Meter",
        device_type=zha_profile.DeviceType.METER_INTERFACE,
    )
    assert not has_on_off(meter)
    assert async_zigbee_loads(hass) == []
    sensor = _entity(hass, "sensor", f"{SENSOR}-1-2820")
    load = async_zigbee_load(hass, sensor)
    assert load is not None
    assert load.refusal is DriveRefusal.NO_ON_OFF


async def test_on_off_without_a_switch(hass: HomeAssistant, join: Join) -> None:
    """An On/Off light is a light to ZHA, not a switch: not a load to shed."""
    await join(PLUG, [OnOff.cluster_id], device_type=zha_profile.DeviceType.ON_OFF_LIGHT)
    light = _entity(hass, "light", f"{PLUG}-1")
    load = async_zigbee_load(hass, light)
    assert load is not None
    assert load.switch_entity_ids == ()
    assert load.refusal is DriveRefusal.NO_ON_OFF
    assert async_zigbee_loads(hass) == []


async def test_no_zha(hass: HomeAssistant, zha: MockConfigEntry, join: Join) -> None:
    """Without ZHA running there are no ZigBee loads."""
    await join(PLUG, [OnOff.cluster_id])
    switch = _entity(hass, "switch", f"{PLUG}-1")
    assert len(async_zigbee_loads(hass)) == 1
    assert await hass.config_entries.async_unload(zha.entry_id)
    await hass.async_block_till_done()
    assert async_zigbee_loads(hass) == []
    # Its entity stays registered, but there is no device behind it to drive now.
    assert async_zigbee_load(hass, switch) is None
    assert async_zigbee_diagnostics(hass) == []


async def test_zha_not_set_up(hass: HomeAssistant) -> None:
    """Without ZHA at all there are no ZigBee loads."""
    assert async_zigbee_loads(hass) == []


async def test_engine_sheds_only_the_zigbee_loads_it_may_drive(
    hass: HomeAssistant,
    join: Join,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    *,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A battery relay is passed over; a mains plug is shed, counted at what it reports drawing."""
    plug = await join(PLUG, [OnOff.cluster_id, ElectricalMeasurement.cluster_id])
    relay = await join(
        SENSOR, [OnOff.cluster_id], node_desc=BATTERY_END_DEVICE, nwk=0x1002, model="Battery relay"
    )
    measurement = plug.endpoints[1].in_clusters[ElectricalMeasurement.cluster_id]
    measurement.update_attribute(ElectricalMeasurement.AttributeDefs.active_power.id, 1200)  # W
    for device in (plug, relay):
        device.endpoints[1].in_clusters[OnOff.cluster_id].update_attribute(
            OnOff.AttributeDefs.on_off.id, 1
        )
    await hass.async_block_till_done()
    plug_switch = _entity(hass, "switch", f"{PLUG}-1")
    relay_switch = _entity(hass, "switch", f"{SENSOR}-1")
    # The relay comes first: shed first, were it fit to be driven.
    home = MockConfigEntry(
        domain=DOMAIN,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data=dict(mock_config_entry.data),
        options={
            CONF_LOADS: [
                {CONF_ENTITY_ID: relay_switch, CONF_NOMINAL_POWER: 1.0},
                {CONF_ENTITY_ID: plug_switch, CONF_NOMINAL_POWER: 3.0},
            ],
            CONF_MAX_SHED_POWER: 10.0,
        },
    )
    await async_setup_integration(hass, home)
    assert hass.states.get(plug_switch).state == STATE_ON  # type: ignore[union-attr]

    event = dr_event("peak", start=NOW, level=1)
    # ZHA's default response to the off command: command id and status.
    with patch(
        "zigpy.device.Device.request",
        return_value=[OnOff.ServerCommandDefs.off.id, Status.SUCCESS],
    ):
        await bridge.wait_for_ack(await bridge.publish(grid.sign(event)))
        await async_move_to(hass, home, frozen_now, NOW + ACTION_SPACING)

    assert hass.states.get(plug_switch).state == STATE_OFF  # type: ignore[union-attr]
    assert hass.states.get(relay_switch).state == STATE_ON  # type: ignore[union-attr]
    # What the plug reported drawing, not its nominal load.
    assert hass.states.get("sensor.home_h1_load_shed").state == "1.2"  # type: ignore[union-attr]
    diagnostics = await async_get_config_entry_diagnostics(hass, home)
    refusals = {load["name"]: load["refusal"] for load in diagnostics["zigbee_loads"]}
    assert refusals == {"Acme Smart plug": None, "Acme Battery relay": "not_mains_powered"}
