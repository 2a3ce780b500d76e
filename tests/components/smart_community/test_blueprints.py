"""The automation blueprints: read by Home Assistant's own blueprint code, then run.

Each blueprint is checked twice: loaded and validated the way Home Assistant loads it from its
blueprints folder (and imported from its source URL the way "Import blueprint" does), and used by
an automation whose effect on the home is asserted while the fake bridge drives the integration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from datetime import datetime, timedelta
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
from homeassistant.const import (
    EVENT_HOMEASSISTANT_STARTED,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
)
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
from custom_components.smart_community.const import (
    CONF_ENTITY_ID,
    CONF_LOADS,
    CONF_NOMINAL_POWER,
    DOMAIN,
)
from custom_components.smart_community.protocol import Operation

from .conftest import (
    ALERT,
    CALENDAR,
    DEMAND_RESPONSE,
    DR_EVENT,
    LEVEL,
    NOW,
    PRICE,
    REJECTED,
    async_move_to,
    async_reconnect_attempt,
    async_setup_integration,
    wait_for_state,
)
from .fake_bridge import (
    FakeBridge,
    FakeGrid,
    community_event,
    dr_event,
    notification,
    price_event,
)

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
LIVING_ROOM = "climate.living_room"
PARTICIPATION = "switch.home_h1_demand_response_participation"


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


async def async_walk_to(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    freezer: FrozenDateTimeFactory,
    moment: datetime,
    step: timedelta = 5 * MINUTE,
) -> None:
    """Move the clock to ``moment`` in steps: calendar triggers look only 15 minutes ahead."""
    while (now := dt_util.utcnow()) < moment:
        await async_move_to(hass, entry, freezer, min(now + step, moment))
    # What the last step scheduled for this very moment (a calendar trigger's alarm) runs too.
    async_fire_time_changed(hass)
    await hass.async_block_till_done()


def _thermostat(hass: HomeAssistant) -> tuple[list[ServiceCall], list[ServiceCall]]:
    """A cooling thermostat at 26 degrees, and the calls that set it."""
    set_temperature = async_mock_service(hass, "climate", "set_temperature")
    set_hvac_mode = async_mock_service(hass, "climate", "set_hvac_mode")
    hass.states.async_set(LIVING_ROOM, "cool", {"temperature": 26, "hvac_modes": ["off", "cool"]})
    return set_temperature, set_hvac_mode


PRECONDITION = {
    "calendar": CALENDAR,
    "thermostats": [LIVING_ROOM],
    "lead_time": "-00:30:00",
    "precondition_temperature": 23,
    "event_temperature": 28,
}


@pytest.mark.usefixtures("installed_blueprints")
async def test_precondition_before_demand_response(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Pre-cool the lead time ahead, let it drift during the event, restore the thermostat."""
    set_temperature, set_hvac_mode = _thermostat(hass)
    assert await async_setup_component(hass, "scene", {})
    bridge.serve(grid.sign(dr_event("peak", start=NOW + HOUR, duration="PT1H")))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(hass, "demand_response_precondition.yaml", PRECONDITION)

    def temperatures() -> list[float]:
        return [call.data["temperature"] for call in set_temperature]

    await async_walk_to(hass, mock_config_entry, frozen_now, NOW + 29 * MINUTE)
    assert temperatures() == []

    # The calendar's trigger, half an hour before the start.
    await async_walk_to(hass, mock_config_entry, frozen_now, NOW + 30 * MINUTE)
    assert temperatures() == [23]
    assert set_temperature[0].data["entity_id"] == [LIVING_ROOM]

    # Off again after unavailable, while preconditioning, is no end: the thermostat stays.
    await async_walk_to(hass, mock_config_entry, frozen_now, NOW + 35 * MINUTE)
    await bridge.disconnect()
    await wait_for_state(hass, CALENDAR, lambda state: state.state == STATE_UNAVAILABLE)
    await async_reconnect_attempt(mock_config_entry, bridge)
    await wait_for_state(hass, CALENDAR, lambda state: state.state == STATE_OFF)
    await hass.async_block_till_done()
    assert temperatures() == [23]
    assert _snapshot_scenes(hass) == ["scene.demand_response_precondition_before_demand_response"]

    await async_walk_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert _state(hass, CALENDAR) == STATE_ON
    assert temperatures() == [23, 28]

    await async_walk_to(hass, mock_config_entry, frozen_now, NOW + 2 * HOUR)
    # The thermostat's own settings from before, not a guess.
    assert temperatures() == [23, 28, 26]
    assert [call.data["hvac_mode"] for call in set_hvac_mode] == ["cool"]
    assert _snapshot_scenes(hass) == []


@pytest.mark.usefixtures("installed_blueprints")
async def test_precondition_short_notice_and_cancelled(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """An event too close for preconditioning gets its event temperature; a cancellation ends it."""
    set_temperature, _ = _thermostat(hass)
    assert await async_setup_component(hass, "scene", {})
    peak = dr_event("peak", start=NOW + 10 * MINUTE, duration="PT1H")
    bridge.serve(grid.sign(peak))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(hass, "demand_response_precondition.yaml", PRECONDITION)

    await async_walk_to(hass, mock_config_entry, frozen_now, NOW + 10 * MINUTE)
    assert [call.data["temperature"] for call in set_temperature] == [28]

    await async_walk_to(hass, mock_config_entry, frozen_now, NOW + 20 * MINUTE)
    seq = await bridge.publish(grid.sign(peak, operation=Operation.DELETE), Operation.DELETE)
    await bridge.wait_for_ack(seq)
    await hass.async_block_till_done()
    assert _state(hass, CALENDAR) == STATE_OFF
    assert [call.data["temperature"] for call in set_temperature] == [28, 26]
    assert _snapshot_scenes(hass) == []


@pytest.mark.usefixtures("installed_blueprints")
async def test_run_appliance_while_cheap(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The appliance runs while the price level is one of those chosen, and only then."""
    await async_setup_switches(hass, dishwasher=False)
    # Today's average is 0.7: 0.3 is very cheap, 0.6 cheap, 0.9 expensive.
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=[0.9, 0.3, 0.6, 0.9, 0.8])))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass, "cheap_power_appliance.yaml", {"price_level": LEVEL, "appliances": [DISHWASHER]}
    )
    assert _state(hass, LEVEL) == "expensive"
    assert _state(hass, DISHWASHER) == STATE_OFF

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    assert _state(hass, LEVEL) == "very_cheap"
    assert _state(hass, DISHWASHER) == STATE_ON

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 2 * HOUR)
    assert _state(hass, LEVEL) == "cheap"
    assert _state(hass, DISHWASHER) == STATE_ON

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 3 * HOUR)
    assert _state(hass, LEVEL) == "expensive"
    assert _state(hass, DISHWASHER) == STATE_OFF

    # Without prices the level is unknown: the appliance is left as it is.
    await async_move_to(hass, mock_config_entry, frozen_now, NOW + 5 * HOUR)
    assert _state(hass, LEVEL) == STATE_UNKNOWN
    assert _state(hass, DISHWASHER) == STATE_OFF


def _messages(calls: list[ServiceCall]) -> list[str]:
    return [call.data["message"] for call in calls]


def _local(moment: datetime) -> str:
    return f"{dt_util.as_local(moment):%Y-%m-%d %H:%M}"


def _opt_out_action(event_id: str) -> str:
    return f"SMART_COMMUNITY_OPT_OUT|automation.price_and_event_notifications|{event_id}"


@pytest.mark.usefixtures("installed_blueprints")
async def test_notify_price_spike_and_events(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A new, a changed and a cancelled event and a price spike each reach every channel once."""
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
            "demand_response_event": DR_EVENT,
            "notify_entities": ["notify.living_room_speaker"],
            "notify_action": "notify.family_phones",
        },
    )

    start = NOW + 2 * HOUR
    peak = dr_event("peak", start=start, duration="PT1H")
    await bridge.wait_for_ack(await bridge.publish(grid.sign(peak)))
    await hass.async_block_till_done()
    announced = (
        f"Demand-response event Evening peak, from {_local(start)} to {_local(start + HOUR)}."
    )
    assert _messages(persistent) == [announced]
    assert _messages(entities) == [announced]
    assert entities[0].data["entity_id"] == ["notify.living_room_speaker"]
    assert _messages(phones) == [announced]
    assert phones[0].data["title"] == "Smart Community"
    assert phones[0].data["data"] == {
        "tag": _opt_out_action("peak"),
        "actions": [{"action": _opt_out_action("peak"), "title": "Opt out"}],
    }

    await async_move_to(hass, mock_config_entry, frozen_now, NOW + HOUR)
    spike = "The electricity price has risen to 1.2 CNY/kWh."
    assert _messages(persistent) == [announced, spike]
    assert _messages(phones)[-1] == spike
    assert phones[-1].data["data"] == {}  # nothing to opt out of

    # Back from unavailable, the same event and price are no news.
    await bridge.disconnect()
    await wait_for_state(hass, DR_EVENT, lambda state: state.state == STATE_UNAVAILABLE)
    await async_reconnect_attempt(mock_config_entry, bridge)
    await wait_for_state(hass, DR_EVENT, lambda state: state.state != STATE_UNAVAILABLE)
    await hass.async_block_till_done()
    assert _state(hass, PRICE) == "1.2"
    assert len(persistent) == 2

    later = {**peak, "intervalPeriod": {**peak["intervalPeriod"], "duration": "PT2H"}}
    await bridge.wait_for_ack(await bridge.publish(grid.sign(later)))
    await hass.async_block_till_done()
    changed = (
        "The demand-response event Evening peak has changed: "
        f"now from {_local(start)} to {_local(start + 2 * HOUR)}."
    )
    assert _messages(persistent)[-1] == changed
    assert phones[-1].data["data"]["actions"][0]["action"] == _opt_out_action("peak")

    seq = await bridge.publish(grid.sign(later, operation=Operation.DELETE), Operation.DELETE)
    await bridge.wait_for_ack(seq)
    await hass.async_block_till_done()
    assert _messages(persistent)[-1] == "The demand-response event Evening peak was cancelled."
    assert _messages(entities) == _messages(persistent)
    assert phones[-1].data["data"] == {}
    assert len(persistent) == 4


@pytest.mark.usefixtures("installed_blueprints")
async def test_one_tap_opt_out(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """Tapping the button opts the home out of that event: the grid is told, the home confirms."""
    phones = async_mock_service(hass, "notify", "mobile_app_phone")
    await async_setup_switches(hass, water_heater=True)
    home = MockConfigEntry(
        domain=DOMAIN,
        title=mock_config_entry.title,
        unique_id=mock_config_entry.unique_id,
        data=dict(mock_config_entry.data),
        options={CONF_LOADS: [{CONF_ENTITY_ID: WATER_HEATER, CONF_NOMINAL_POWER: 2.0}]},
    )
    await async_setup_integration(hass, home)
    await async_use_blueprint(
        hass,
        "price_and_event_notifications.yaml",
        {
            "price": PRICE,
            "demand_response_event": DR_EVENT,
            "persistent_notification": False,
            "notify_action": "notify.mobile_app_phone",
            "opt_out_title": "Not today",
        },
    )
    await bridge.wait_for_ack(await bridge.publish(grid.sign(dr_event("peak", start=NOW + HOUR))))
    await hass.async_block_till_done()
    (offer,) = phones
    assert offer.data["data"]["actions"] == [
        {"action": _opt_out_action("peak"), "title": "Not today"}
    ]
    assert _state(hass, PARTICIPATION) == STATE_ON

    # Another event's button, another automation's, or another app's action change nothing.
    for action in (
        _opt_out_action("other"),
        "SMART_COMMUNITY_OPT_OUT|automation.another_home|peak",
        "OPEN_GARAGE",
    ):
        hass.bus.async_fire("mobile_app_notification_action", {"action": action})
    hass.bus.async_fire("mobile_app_notification_action", {})
    await hass.async_block_till_done()
    assert _state(hass, PARTICIPATION) == STATE_ON
    assert len(phones) == 1

    hass.bus.async_fire("mobile_app_notification_action", {"action": _opt_out_action("peak")})
    await hass.async_block_till_done()
    assert _state(hass, PARTICIPATION) == STATE_OFF
    assert _messages(phones)[-1] == "Your home has opted out of Evening peak."
    await bridge.wait_for_reports(2)
    states = [
        payload["values"][0]
        for report in bridge.reports_on("peak")
        for interval in report["resources"][0]["intervals"]
        for payload in interval["payloads"]
        if payload["type"] == "OPERATING_STATE"
    ]
    assert states == ["RUNNING_CURTAILED", "RUNNING_OPTED_OUT"]


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
        {"price": PRICE, "demand_response_event": DR_EVENT},
    )

    seq = await bridge.publish(grid.sign(dr_event("peak", start=NOW + HOUR)))
    await bridge.wait_for_ack(seq)
    await hass.async_block_till_done()

    assert len(persistent) == 1
    assert entities == []


EV_CHARGING = {
    "price": PRICE,
    "chargers": [CHARGER],
    "charging_time": {"hours": 2, "minutes": 0, "seconds": 0},
}
# The cheapest prices come after the departure (8 hours on), where they do not count.
EV_PRICES = [0.9, 0.8, 0.4, 0.2, 0.3, 0.9, 0.9, 0.9, 0.1, 0.1]


def _time_of_day(moment: datetime) -> str:
    return f"{dt_util.as_local(moment):%H:%M:%S}"


async def async_tick(hass: HomeAssistant, freezer: FrozenDateTimeFactory, moment: datetime) -> None:
    """Move the clock while an automation run waits, which keeps Home Assistant from idling."""
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    for _ in range(100):
        await asyncio.sleep(0)


async def async_charges_in_window(
    hass: HomeAssistant, freezer: FrozenDateTimeFactory, start: datetime, end: datetime
) -> None:
    """The charger is off until ``start``, on until ``end``, off then."""
    await async_tick(hass, freezer, start - MINUTE)
    assert _state(hass, CHARGER) == STATE_OFF
    await async_tick(hass, freezer, start)
    await wait_for_state(hass, CHARGER, lambda state: state.state == STATE_ON)
    await async_tick(hass, freezer, end - MINUTE)
    assert _state(hass, CHARGER) == STATE_ON
    await async_tick(hass, freezer, end)
    await wait_for_state(hass, CHARGER, lambda state: state.state == STATE_OFF)


@pytest.mark.usefixtures("installed_blueprints")
async def test_charge_ev_in_the_cheapest_window(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """Planned at the planning time, charging runs in the cheapest stretch before departure."""
    await async_setup_switches(hass, charger=False)
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=EV_PRICES)))
    await async_setup_integration(hass, mock_config_entry)
    plan_at = NOW + HOUR / 2
    await async_use_blueprint(
        hass,
        "ev_charging_cheapest_window.yaml",
        {
            **EV_CHARGING,
            "plan_at": _time_of_day(plan_at),
            "departure": _time_of_day(NOW + 8 * HOUR),
        },
    )

    await async_tick(hass, frozen_now, plan_at)
    # 0.2 and 0.3: the cheapest two hours that end by the departure.
    await async_charges_in_window(hass, frozen_now, NOW + 3 * HOUR, NOW + 5 * HOUR)


@pytest.mark.usefixtures("installed_blueprints")
async def test_charge_ev_at_once_without_prices(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """With no prices to choose from, the car charges at once for the charging time."""
    await async_setup_switches(hass, charger=False)
    await async_setup_integration(hass, mock_config_entry)
    plan_at = NOW + HOUR / 2
    await async_use_blueprint(
        hass,
        "ev_charging_cheapest_window.yaml",
        {**EV_CHARGING, "plan_at": _time_of_day(plan_at)},
    )

    await async_tick(hass, frozen_now, plan_at)
    await wait_for_state(hass, CHARGER, lambda state: state.state == STATE_ON)
    await async_tick(hass, frozen_now, plan_at + 2 * HOUR - MINUTE)
    assert _state(hass, CHARGER) == STATE_ON
    await async_tick(hass, frozen_now, plan_at + 2 * HOUR)
    await wait_for_state(hass, CHARGER, lambda state: state.state == STATE_OFF)


@pytest.mark.usefixtures("installed_blueprints")
@pytest.mark.parametrize(("departure", "plans"), [(8 * HOUR, True), (-15 * MINUTE, False)])
async def test_charge_ev_plans_again_after_a_restart(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    *,
    frozen_now: FrozenDateTimeFactory,
    departure: timedelta,
    plans: bool,
) -> None:
    """Started after the planning time, it plans again unless the car has left since."""
    await async_setup_switches(hass, charger=False)
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=EV_PRICES)))
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass,
        "ev_charging_cheapest_window.yaml",
        {
            **EV_CHARGING,
            "plan_at": _time_of_day(NOW - HOUR / 2),
            "departure": _time_of_day(NOW + departure),
        },
    )
    # As when Home Assistant has started again: the trigger armed before fires.
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)

    if plans:
        await async_charges_in_window(hass, frozen_now, NOW + 3 * HOUR, NOW + 5 * HOUR)
    else:
        await async_tick(hass, frozen_now, NOW + 6 * HOUR)
        assert _state(hass, CHARGER) == STATE_OFF


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


@pytest.mark.usefixtures("installed_blueprints")
async def test_notify_of_grid_alerts(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A planned outage announced two hours ahead is told at once, and again as it begins."""
    persistent = async_mock_service(hass, "persistent_notification", "create")
    phones = async_mock_service(hass, "notify", "family_phones")
    await async_setup_integration(hass, mock_config_entry)
    await async_use_blueprint(
        hass,
        "grid_alert_notifications.yaml",
        {"alert": ALERT, "notify_action": "notify.family_phones"},
    )

    start = NOW + 2 * HOUR
    outage = community_event(
        "works",
        "ALERT_POSSIBLE_OUTAGE",
        "Planned works on feeder f1",
        start=start,
        duration="PT2H",
        units=None,
        program_id="grid-alerts",
    )
    await bridge.wait_for_ack(await bridge.publish(grid.sign(outage)))
    await hass.async_block_till_done()
    announced = f"Possible outage announced from {_local(start)}: Planned works on feeder f1"
    assert _messages(persistent) == [announced]
    assert _messages(phones) == [announced]
    assert phones[0].data["title"] == "Smart Community"

    await async_move_to(hass, mock_config_entry, frozen_now, start)
    begun = "Possible outage now: Planned works on feeder f1"
    assert _messages(persistent) == [announced, begun]
    assert _messages(phones) == [announced, begun]

    # Its end, and a return from unavailable, are no news.
    await async_move_to(hass, mock_config_entry, frozen_now, start + 2 * HOUR)
    assert _state(hass, ALERT) == "none"
    await bridge.disconnect()
    await wait_for_state(hass, ALERT, lambda state: state.state == STATE_UNAVAILABLE)
    await async_reconnect_attempt(mock_config_entry, bridge)
    await wait_for_state(hass, ALERT, lambda state: state.state != STATE_UNAVAILABLE)
    await hass.async_block_till_done()
    assert len(persistent) == 2
