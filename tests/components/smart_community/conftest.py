"""Fixtures of the Smart Community integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import asdict
from datetime import UTC, datetime
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigSubentryData
from homeassistant.const import CONF_API_TOKEN, CONF_HOST, CONF_PORT, CONF_URL
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
)

from custom_components.smart_community.const import (
    CONF_KEYS,
    CONF_MANUFACTURER,
    CONF_MODEL,
    CONF_PLACEMENT,
    CONF_POWER_LIMIT,
    CONF_SERIAL,
    CONF_UNIT_ID,
    CONF_VERSION,
    DOMAIN,
    RECONNECT_MAXIMUM,
    SUBENTRY_INVERTER,
)
from custom_components.smart_community.protocol import Grant, Placement, jwks

from .fake_bridge import FakeBridge, FakeCommunity, FakeGrid
from .sunspec_inverter import SunSpecInverter

PLACEMENT = Placement(community="c1", feeder="f1", transformer="t1", home="h1")
CREDENTIAL = "home-h1-credential"
NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)

PRICE = "sensor.home_h1_current_price"
NEXT_CHANGE = "sensor.home_h1_next_price_change"
DEMAND_RESPONSE = "binary_sensor.home_h1_demand_response"
REJECTED = "sensor.community_c1_rejected_signals"
NEXT_PRICE = "sensor.home_h1_next_price"
LOWEST = "sensor.home_h1_today_s_lowest_price"
HIGHEST = "sensor.home_h1_today_s_highest_price"
AVERAGE = "sensor.home_h1_today_s_average_price"
LEVEL = "sensor.home_h1_price_level"
CHEAPEST = "sensor.home_h1_next_cheapest_window"
EXPORT_PRICE = "sensor.home_h1_export_price"
IMPORT_LIMIT = "sensor.home_h1_import_limit"
EXPORT_LIMIT = "sensor.home_h1_export_limit"
LAST_CONTACT = "sensor.community_c1_last_contact"
CONNECTION = "binary_sensor.community_c1_bridge_connection"
CALENDAR = "calendar.home_h1_demand_response_events"
DR_EVENT = "event.home_h1_demand_response_event"
ALERT = "sensor.home_h1_alert"
EV_SHARE = "sensor.home_h1_ev_charging_share"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load the integration from custom_components/."""


@pytest.fixture
def frozen_now(freezer: FrozenDateTimeFactory) -> FrozenDateTimeFactory:
    """Freeze time at NOW; tests move it with freezer and async_fire_time_changed."""
    freezer.move_to(NOW)
    return freezer


@pytest.fixture
def grid() -> FakeGrid:
    """The grid that signs programs and events."""
    return FakeGrid(PLACEMENT.community)


@pytest.fixture
def community(grid: FakeGrid, frozen_now: FrozenDateTimeFactory) -> FakeCommunity:
    """The community's key, delegated grid connections, EV charging shares and fault notices."""
    return FakeCommunity(
        grid,
        [
            Grant("EXPORT_CAPACITY_LIMIT", 0, 10),
            Grant("X_EV_CHARGING_LIMIT", 1.4, 22),
            Grant("ALERT_OTHER", text=True),
        ],
    )


@pytest.fixture
async def bridge(
    hass: HomeAssistant, socket_enabled: None, frozen_now: FrozenDateTimeFactory, grid: FakeGrid
) -> AsyncGenerator[FakeBridge]:
    """A fake bridge on 127.0.0.1 that trusts the grid's key."""
    fake = FakeBridge(PLACEMENT, CREDENTIAL, [grid.public_key])
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def bridge_url(bridge: FakeBridge) -> str:
    """Where the config entry finds its bridge."""
    return bridge.url


@pytest.fixture
def mock_config_entry(grid: FakeGrid, bridge_url: str) -> MockConfigEntry:
    """A config entry of home h1 that pinned the grid's key."""
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
    )


@pytest.fixture
def mock_setup_entry() -> Generator[None]:
    """Keep the config flow tests from setting the entry up."""
    with patch("custom_components.smart_community.async_setup_entry", return_value=True):
        yield


@pytest.fixture
async def init_integration(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, bridge: FakeBridge
) -> MockConfigEntry:
    """Set the integration up against the fake bridge, with its push channel open."""
    await async_setup_integration(hass, mock_config_entry)
    return mock_config_entry


async def async_setup_integration(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Add and set up the entry, and wait until its push channel is open."""
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_connected(entry)


async def async_spin_until(predicate: Callable[[], bool]) -> None:
    """Yield to the event loop, which reads the sockets, until the predicate holds.

    The clock is frozen, so this spins a bounded number of times instead of sleeping.
    """
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def async_wait_connected(entry: MockConfigEntry) -> None:
    """Wait until the home has read the bridge's welcome on its push channel."""
    coordinator = entry.runtime_data.coordinator
    await async_spin_until(lambda: coordinator.connected)


async def async_reconnect_attempt(entry: MockConfigEntry, bridge: FakeBridge) -> None:
    """Run out the home's reconnect delay; wait until the bridge sees the attempt."""
    attempts = bridge.requests.count("/ws")
    async_fire_time_changed(
        entry.runtime_data.coordinator.hass, dt_util.utcnow() + RECONNECT_MAXIMUM
    )
    await bridge.wait_for_requests("/ws", attempts + 1)


async def async_failed_attempt(entry: MockConfigEntry, bridge: FakeBridge) -> None:
    """A reconnect attempt that fails: wait until the home is back to waiting."""
    coordinator = entry.runtime_data.coordinator
    before = coordinator.last_exception
    await async_reconnect_attempt(entry, bridge)
    # The failure is recorded right before the next delay starts.
    await async_spin_until(lambda: coordinator.last_exception is not before)


async def async_settle(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Let a resync that moving the clock started finish: it runs as a background task."""
    coordinator = entry.runtime_data.coordinator
    async with coordinator._debounced_refresh.async_lock():
        pass
    await hass.async_block_till_done()


async def async_move_to(
    hass: HomeAssistant, entry: MockConfigEntry, freezer: FrozenDateTimeFactory, moment: datetime
) -> None:
    """Move the clock to ``moment`` and run what was due by then."""
    freezer.move_to(moment)
    async_fire_time_changed(hass)
    await async_settle(hass, entry)


async def wait_for_state(
    hass: HomeAssistant, entity_id: str, predicate: Callable[[State], bool]
) -> State:
    """Wait, driven by state changes rather than the (frozen) clock, until the state matches."""
    state = hass.states.get(entity_id)
    if state is not None and predicate(state):
        return state
    matched: asyncio.Future[State] = hass.loop.create_future()

    @callback
    def _changed(event: Event[EventStateChangedData]) -> None:
        new_state = event.data["new_state"]
        if new_state is not None and predicate(new_state) and not matched.done():
            matched.set_result(new_state)

    unsubscribe = async_track_state_change_event(hass, entity_id, _changed)
    try:
        return await matched
    finally:
        unsubscribe()


@pytest.fixture
async def inverter(socket_enabled: None) -> AsyncGenerator[SunSpecInverter]:
    """A SunSpec inverter served by pymodbus on 127.0.0.1."""
    device = SunSpecInverter()
    await device.start()
    yield device
    await device.stop()


def inverter_subentry(inverter: SunSpecInverter) -> ConfigSubentryData:
    """The subentry that adding ``inverter`` through its flow creates."""
    return ConfigSubentryData(
        data={
            CONF_HOST: inverter.host,
            CONF_PORT: inverter.port,
            CONF_UNIT_ID: inverter.unit_id,
            CONF_MANUFACTURER: "Fronius",
            CONF_MODEL: "Symo 8.2-3-M",
            CONF_SERIAL: "28176543",
            CONF_VERSION: "3.14.1-2",
            CONF_POWER_LIMIT: inverter.controls_at is not None,
        },
        subentry_type=SUBENTRY_INVERTER,
        title="Fronius Symo 8.2-3-M",
        unique_id="fronius_28176543",
    )
