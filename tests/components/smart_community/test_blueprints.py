"""The automation blueprints: read by Home Assistant's own blueprint code, then run.

Each blueprint is checked twice: loaded and validated the way Home Assistant loads it from its
blueprints folder (and imported from its source URL the way "Import blueprint" does), and used by
an automation whose effect on the home is asserted while the fake bridge drives the integration.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from pathlib import Path
import shutil
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.components.automation.config import AUTOMATION_BLUEPRINT_SCHEMA
from homeassistant.components.automation.helpers import async_get_blueprints
from homeassistant.components.blueprint import Blueprint, importer
from homeassistant.components.blueprint.const import BLUEPRINT_FOLDER
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, ServiceCall
from homeassistant.helpers import selector
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util, yaml as yaml_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_mock_service,
)
from pytest_homeassistant_custom_component.test_util.aiohttp import AiohttpClientMocker

from custom_components.smart_community import PLATFORMS
from custom_components.smart_community.const import DOMAIN

from .conftest import (
    DEMAND_RESPONSE,
    NOW,
    PRICE,
    REJECTED,
    async_move_to,
    async_reconnect_attempt,
    async_setup_integration,
    wait_for_state,
)
from .fake_bridge import FakeBridge, FakeGrid, dr_event, notification, price_event

REPOSITORY = Path(__file__).resolve().parents[3]
BLUEPRINTS = REPOSITORY / "blueprints" / AUTOMATION_DOMAIN / DOMAIN
NAMES = sorted(path.name for path in BLUEPRINTS.glob("*.yaml"))
SOURCE_URL = "https://github.com/smart-community/smart-community/blob/main/{}"
RAW_URL = "https://raw.githubusercontent.com/smart-community/smart-community/main/{}"
MIN_VERSION = "2026.3.0"

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)


def _load(name: str) -> Blueprint:
    """A blueprint file as Home Assistant's automation integration validates it."""
    return Blueprint(
        yaml_util.load_yaml_dict(BLUEPRINTS / name),
        path=name,
        expected_domain=AUTOMATION_DOMAIN,
        schema=AUTOMATION_BLUEPRINT_SCHEMA,
    )


def _entity_filters(blueprint_input: dict[str, Any]) -> list[dict[str, Any]]:
    """The filters of an input's entity selector; empty for other selectors."""
    entity = (blueprint_input.get("selector") or {}).get("entity")
    if entity is None:
        return []
    filters = entity.get("filter", [])
    return filters if isinstance(filters, list) else [filters]


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """A configuration directory of this test's own, to install blueprints into."""
    return hass_tmp_config_dir


@pytest.fixture
def installed_blueprints(hass: HomeAssistant) -> Path:
    """The blueprints in the configuration directory, where Home Assistant looks for them."""
    target = Path(hass.config.path(BLUEPRINT_FOLDER, AUTOMATION_DOMAIN, DOMAIN))
    shutil.copytree(BLUEPRINTS, target)
    return target


def test_at_least_five_blueprints() -> None:
    """The folder holds the blueprints; an empty one would leave the tests below with nothing."""
    assert len(NAMES) >= 5


@pytest.mark.usefixtures("installed_blueprints")
async def test_home_assistant_loads_every_blueprint(hass: HomeAssistant) -> None:
    """Home Assistant finds and accepts every file, and this version meets each minimum."""
    everything = await async_get_blueprints(hass).async_get_blueprints()
    # Home Assistant may add its own example blueprints beside ours; only ours are checked.
    found = {path: bp for path, bp in everything.items() if path.startswith(f"{DOMAIN}/")}

    assert sorted(found) == [f"{DOMAIN}/{name}" for name in NAMES]
    for path, blueprint in found.items():
        assert isinstance(blueprint, Blueprint), f"{path}: {blueprint}"
        assert blueprint.validate() is None, path


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name: str) -> None:
    """Where the blueprint comes from and which Home Assistant it needs."""
    metadata = _load(name).metadata

    assert metadata["source_url"] == SOURCE_URL.format(BLUEPRINTS.relative_to(REPOSITORY) / name)
    assert metadata["homeassistant"]["min_version"] == MIN_VERSION
    assert metadata["description"]


@pytest.mark.parametrize("name", NAMES)
def test_inputs_explained_and_defaults_valid(name: str) -> None:
    """Every input has a name, a description and a selector that accepts its default."""
    for key, blueprint_input in _load(name).inputs.items():
        assert blueprint_input["name"], key
        assert blueprint_input["description"], key
        assert "selector" in blueprint_input, key
        if "default" in blueprint_input:
            selector.selector(blueprint_input["selector"])(blueprint_input["default"])


# Domains of devices a blueprint controls, which the integration also has platforms of (its
# participation switch, an inverter's power limit).
CONTROLLED_DOMAINS = {"switch", "number"}


@pytest.mark.parametrize("name", NAMES)
def test_selectors_pick_this_integrations_entities(name: str) -> None:
    """An input that picks one of the integration's entities offers only the integration's.

    Only the integration's own platforms are filtered to it; inputs picking the devices to
    control (switches, thermostats) offer any integration's, even where the integration has a
    platform of that domain too (its participation switch). The integration's numbers are
    devices to control too (an inverter's power limit), so a number input may offer any.
    """
    own = 0
    signal_platforms = set(PLATFORMS) - CONTROLLED_DOMAINS
    for key, blueprint_input in _load(name).inputs.items():
        for entity_filter in _entity_filters(blueprint_input):
            domains = entity_filter.get("domain", [])
            domains = domains if isinstance(domains, list) else [domains]
            if "integration" in entity_filter:
                assert entity_filter["integration"] == DOMAIN, key
                assert domains, f"{key}: filter the integration's entities by domain"
                assert set(domains) <= set(PLATFORMS), key
                own += 1
            else:
                assert not set(domains) & signal_platforms, f"{key}: filter to {DOMAIN}"
    assert own, "a Smart Community blueprint reads at least one of the integration's entities"


@pytest.mark.parametrize("name", NAMES)
async def test_importable_from_source_url(
    hass: HomeAssistant, aioclient_mock: AiohttpClientMocker, name: str
) -> None:
    """Importing the blueprint from its source URL fetches this very file from GitHub."""
    relative = BLUEPRINTS.relative_to(REPOSITORY) / name
    aioclient_mock.get(RAW_URL.format(relative), text=(BLUEPRINTS / name).read_text())

    imported = await importer.fetch_blueprint_from_url(hass, SOURCE_URL.format(relative))

    assert imported.suggested_filename == f"smart-community/{Path(name).stem}"
    assert imported.blueprint.inputs == _load(name).inputs


# Running the blueprints.

WATER_HEATER = "switch.water_heater"
POOL_PUMP = "switch.pool_pump"
DISHWASHER = "switch.dishwasher"
CHARGER = "switch.charger"
CHARGING_CURRENT = "number.charger_current"
LIVING_ROOM = "climate.living_room"


@pytest.fixture(autouse=True)
def steady_push_channel() -> Generator[None]:
    """A heartbeat longer than the clock moves, which would otherwise time the channel out.

    Moving the frozen clock by an hour fires the push channel's heartbeat timeout before the
    bridge can answer; the home reconnects and the entities pass through unavailable. The
    heartbeat has tests of its own; here it would only blur what the blueprints do.
    """
    with patch(
        "custom_components.smart_community.bridge_client.HEARTBEAT",
        timedelta(days=1).total_seconds(),
    ):
        yield


async def async_use_blueprint(hass: HomeAssistant, name: str, inputs: dict[str, Any]) -> str:
    """Set up an automation that uses the blueprint; the automation's entity id."""
    alias = Path(name).stem
    config = {"alias": alias, "use_blueprint": {"path": f"{DOMAIN}/{name}", "input": inputs}}
    assert await async_setup_component(hass, AUTOMATION_DOMAIN, {AUTOMATION_DOMAIN: [config]})
    await hass.async_block_till_done()
    entity_id = f"{AUTOMATION_DOMAIN}.{alias}"
    state = hass.states.get(entity_id)
    assert state is not None, f"{name} did not make an automation"
    assert state.state == STATE_ON
    return entity_id


async def async_setup_switches(hass: HomeAssistant, **initial: bool) -> None:
    """Template switches, each backed by an input boolean that holds whether it is on."""
    assert await async_setup_component(
        hass,
        "input_boolean",
        {"input_boolean": {key: {"initial": on} for key, on in initial.items()}},
    )
    switches = [
        {
            "name": key.replace("_", " ").capitalize(),
            "state": f"{{{{ is_state('input_boolean.{key}', 'on') }}}}",
            "turn_on": {
                "action": "input_boolean.turn_on",
                "target": {"entity_id": f"input_boolean.{key}"},
            },
            "turn_off": {
                "action": "input_boolean.turn_off",
                "target": {"entity_id": f"input_boolean.{key}"},
            },
        }
        for key in initial
    ]
    assert await async_setup_component(hass, "template", {"template": [{"switch": switches}]})
    await hass.async_block_till_done()


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None, entity_id
    return state.state


def _snapshot_scenes(hass: HomeAssistant) -> list[str]:
    return hass.states.async_entity_ids("scene")


@pytest.mark.usefixtures("installed_blueprints")
async def test_switch_off_during_demand_response(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Devices go off when the event starts and back to how they were, spread, after it."""
    await async_setup_switches(hass, water_heater=True, pool_pump=False)
    assert await async_setup_component(hass, "scene", {})
    bridge.serve(grid.sign(dr_event("peak", start=NOW + HOUR, duration="PT1H")))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass,
        "demand_response_switch_off.yaml",
        {
            "demand_response": DEMAND_RESPONSE,
            "devices": [WATER_HEATER, POOL_PUMP],
            "restore_spread": 10,
        },
    )

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert _state(hass, DEMAND_RESPONSE) == STATE_ON
    assert _state(hass, WATER_HEATER) == STATE_OFF
    assert _state(hass, POOL_PUMP) == STATE_OFF
    assert _snapshot_scenes(hass) == ["scene.demand_response_switch_off_before_demand_response"]

    # Switching back on now waits in a delay: move the clock without waiting for idle.
    frozen_now.move_to(NOW + 2 * HOUR)
    async_fire_time_changed(hass)
    await wait_for_state(hass, DEMAND_RESPONSE, lambda state: state.state == STATE_OFF)
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 2 * HOUR + 10 * MINUTE + SECOND)
    # Back as before: the heater on again, the pump, off before the event, still off.
    assert _state(hass, WATER_HEATER) == STATE_ON
    assert _state(hass, POOL_PUMP) == STATE_OFF
    assert _snapshot_scenes(hass) == []


@pytest.mark.usefixtures("installed_blueprints")
async def test_switch_on_after_an_event_it_did_not_see_start(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Set up during an event (as after a restart), it switches the devices on at its end."""
    await async_setup_switches(hass, water_heater=False)
    assert await async_setup_component(hass, "scene", {})
    bridge.serve(grid.sign(dr_event("peak", start=NOW - HOUR / 2, duration="PT1H")))
    await async_setup_integration(hass, mock_config_entry)
    assert _state(hass, DEMAND_RESPONSE) == STATE_ON
    await async_use_blueprint(
        hass,
        "demand_response_switch_off.yaml",
        {"demand_response": DEMAND_RESPONSE, "devices": [WATER_HEATER], "restore_spread": 0},
    )

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR / 2)
    assert _state(hass, DEMAND_RESPONSE) == STATE_OFF
    assert _state(hass, WATER_HEATER) == STATE_ON


@pytest.mark.usefixtures("installed_blueprints")
async def test_precondition_before_demand_response(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Pre-cool the lead time ahead, let it drift during the event, restore the thermostat."""
    set_temperature = async_mock_service(hass, "climate", "set_temperature")
    set_hvac_mode = async_mock_service(hass, "climate", "set_hvac_mode")
    hass.states.async_set(LIVING_ROOM, "cool", {"temperature": 26, "hvac_modes": ["off", "cool"]})
    assert await async_setup_component(hass, "scene", {})
    bridge.serve(grid.sign(dr_event("peak", start=NOW + HOUR, duration="PT1H")))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass,
        "demand_response_precondition.yaml",
        {
            "demand_response": DEMAND_RESPONSE,
            "thermostats": [LIVING_ROOM],
            "lead_time": 30,
            "precondition_temperature": 23,
            "event_temperature": 28,
        },
    )

    def temperatures() -> list[float]:
        return [call.data["temperature"] for call in set_temperature]

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 29 * MINUTE)
    assert temperatures() == []

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 30 * MINUTE)
    assert temperatures() == [23]
    assert set_temperature[0].data["entity_id"] == [LIVING_ROOM]

    # Off again after unavailable, before the event, is no end: pre-cooling may be applied
    # again, but the thermostat is not put back.
    await bridge.disconnect()
    await wait_for_state(hass, DEMAND_RESPONSE, lambda state: state.state == STATE_UNAVAILABLE)
    await async_reconnect_attempt(mock_config_entry, bridge)
    await wait_for_state(hass, DEMAND_RESPONSE, lambda state: state.state == STATE_OFF)
    await hass.async_block_till_done()
    assert set(temperatures()) == {23}
    assert _snapshot_scenes(hass) == ["scene.demand_response_precondition_before_demand_response"]

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert temperatures()[-1] == 28

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 2 * HOUR)
    # The thermostat's own settings from before, not a guess.
    assert temperatures()[-1] == 26
    assert [call.data["hvac_mode"] for call in set_hvac_mode] == ["cool"]
    assert _snapshot_scenes(hass) == []


@pytest.mark.usefixtures("installed_blueprints")
async def test_run_appliance_while_cheap(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The appliance runs while the price is below the threshold, and only then."""
    await async_setup_switches(hass, dishwasher=False)
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.9, 0.3, 0.9])))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass,
        "cheap_power_appliance.yaml",
        {"price": PRICE, "threshold": 0.5, "appliances": [DISHWASHER]},
    )
    assert _state(hass, DISHWASHER) == STATE_OFF

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert _state(hass, PRICE) == "0.3"
    assert _state(hass, DISHWASHER) == STATE_ON

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 2 * HOUR)
    assert _state(hass, PRICE) == "0.9"
    assert _state(hass, DISHWASHER) == STATE_OFF


@pytest.mark.usefixtures("installed_blueprints")
async def test_notify_price_spike_and_announced_event(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A new event and a price spike each reach every chosen notification channel once."""
    persistent = async_mock_service(hass, "persistent_notification", "create")
    entities = async_mock_service(hass, "notify", "send_message")
    phones = async_mock_service(hass, "notify", "family_phones")
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.5, 1.2])))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass,
        "price_and_event_notifications.yaml",
        {
            "price": PRICE,
            "spike_threshold": 1.0,
            "demand_response": DEMAND_RESPONSE,
            "notify_entities": ["notify.living_room_speaker"],
            "notify_action": "notify.family_phones",
        },
    )

    def messages(calls: list[ServiceCall]) -> list[str]:
        return [call.data["message"] for call in calls]

    start = NOW + 2 * HOUR
    seq = await bridge.publish(grid.sign(dr_event("peak", start=start)))
    await bridge.wait_for_ack(seq)
    await hass.async_block_till_done()
    announced = f"A demand-response event starts at {dt_util.as_local(start):%Y-%m-%d %H:%M}."
    assert messages(persistent) == [announced]
    assert messages(entities) == [announced]
    assert entities[0].data["entity_id"] == ["notify.living_room_speaker"]
    assert messages(phones) == [announced]
    assert phones[0].data["title"] == "Smart Community"

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    spike = "The electricity price has risen to 1.2 CNY/kWh."
    assert messages(persistent) == [announced, spike]
    assert messages(entities) == [announced, spike]
    assert messages(phones) == [announced, spike]

    # Back from unavailable, the same event and price are no news.
    await bridge.disconnect()
    await wait_for_state(hass, DEMAND_RESPONSE, lambda state: state.state == STATE_UNAVAILABLE)
    await async_reconnect_attempt(mock_config_entry, bridge)
    await wait_for_state(hass, DEMAND_RESPONSE, lambda state: state.state == STATE_OFF)
    await hass.async_block_till_done()
    assert _state(hass, PRICE) == "1.2"
    assert len(persistent) == 2

    # The event starting empties next_start: no news, no notification.
    await async_move_to(hass, mock_config_entry, frozen_now, start)
    assert _state(hass, DEMAND_RESPONSE) == STATE_ON
    assert len(persistent) == 2


@pytest.mark.usefixtures("installed_blueprints")
async def test_notify_only_persistent_by_default(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """Without notify entities or an action, the defaults, only the persistent one is made."""
    persistent = async_mock_service(hass, "persistent_notification", "create")
    entities = async_mock_service(hass, "notify", "send_message")
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass,
        "price_and_event_notifications.yaml",
        {"price": PRICE, "demand_response": DEMAND_RESPONSE},
    )

    seq = await bridge.publish(grid.sign(dr_event("peak", start=NOW + HOUR)))
    await bridge.wait_for_ack(seq)
    await hass.async_block_till_done()

    assert len(persistent) == 1
    assert entities == []


@pytest.mark.usefixtures("installed_blueprints")
async def test_charge_ev_on_cheap_power_outside_demand_response(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Charging follows the price limit, and demand response overrides a cheap price."""
    await async_setup_switches(hass, charger=False)
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.9, 0.3, 0.3, 0.9])))
    bridge.serve(grid.sign(dr_event("peak", start=NOW + 1.5 * HOUR, duration="PT15M")))
    await async_setup_integration(hass, mock_config_entry)
    # After the integration's own number platform has loaded the real service.
    set_value = async_mock_service(hass, "number", "set_value")
    await async_use_blueprint(
        hass,
        "ev_charging.yaml",
        {
            "price": PRICE,
            "demand_response": DEMAND_RESPONSE,
            "max_price": 0.3,
            "charger_switches": [CHARGER],
            "current_numbers": [CHARGING_CURRENT],
        },
    )

    def currents() -> list[float]:
        return [call.data["value"] for call in set_value]

    # At the limit counts as cheap enough.
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert _state(hass, CHARGER) == STATE_ON
    assert currents() == [16]
    assert set_value[0].data["entity_id"] == [CHARGING_CURRENT]

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 1.5 * HOUR)
    assert _state(hass, DEMAND_RESPONSE) == STATE_ON
    assert _state(hass, CHARGER) == STATE_OFF
    assert currents() == [16, 0]

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 1.75 * HOUR)
    assert _state(hass, DEMAND_RESPONSE) == STATE_OFF
    assert _state(hass, CHARGER) == STATE_ON
    assert currents() == [16, 0, 16]

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 3 * HOUR)
    assert _state(hass, CHARGER) == STATE_OFF
    assert currents() == [16, 0, 16, 0]


@pytest.mark.usefixtures("installed_blueprints")
async def test_alert_on_rejected_signal(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """A signal signed by a key the home never pinned raises an alert naming the reason."""
    persistent = async_mock_service(hass, "persistent_notification", "create")
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(hass, "rejected_signal_alert.yaml", {"rejected_signals": REJECTED})

    impostor = FakeGrid(grid.community, issuer=grid.signer.issuer)
    seq = await bridge.push(
        notification(impostor.sign(price_event("tou", start=NOW, prices=[0.01])))
    )
    await bridge.wait_for_ack(seq)
    await hass.async_block_till_done()

    assert _state(hass, REJECTED) == "1"
    assert len(persistent) == 1
    message = persistent[0].data["message"]
    assert message.startswith("Rejected EVENT tou: unknown_key (")
    assert message.endswith("). 1 rejected so far.")
