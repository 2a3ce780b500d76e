"""Signals the community signs itself, under the grid's delegation, as the home shows them.

A grid connection's grant and an EV charging share are limits, not demand response; fault
notices and the grid's alerts are shown and noticed while they hold; a community signal beyond
the delegation is refused, counted and noticed like a forged one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
import json
from typing import Any

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.calendar import DOMAIN as CALENDAR_DOMAIN
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_OFF, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.smart_community.const import DOMAIN
from custom_components.smart_community.protocol import Grant, Operation

from .conftest import (
    ALERT,
    CALENDAR,
    DEMAND_RESPONSE,
    DR_EVENT,
    EV_SHARE,
    EXPORT_LIMIT,
    NOW,
    REJECTED,
    async_move_to,
    async_wait_connected,
)
from .fake_bridge import FakeBridge, FakeCommunity, FakeGrid, Signed, community_event

HOUR = timedelta(hours=1)
HOME = ["home:c1/h1"]
TRANSFORMER = ["transformer:c1/t1", "feeder:c1/f1"]
FAULT_TEXT = "Supply lost at transformer t1 since 2026-06-01T07:59:00Z; the grid is told."


async def _publish(
    hass: HomeAssistant, bridge: FakeBridge, signed: Signed, operation: Operation
) -> None:
    await bridge.wait_for_ack(await bridge.publish(signed, operation))
    await hass.async_block_till_done()


def _state(hass: HomeAssistant, entity_id: str) -> str:
    state = hass.states.get(entity_id)
    assert state is not None
    return state.state


def _attributes(hass: HomeAssistant, entity_id: str) -> dict[str, Any]:
    state = hass.states.get(entity_id)
    assert state is not None
    return dict(state.attributes)


async def _calendar(hass: HomeAssistant, start: datetime, end: datetime) -> list[Any]:
    response: Any = await hass.services.async_call(
        CALENDAR_DOMAIN,
        "get_events",
        {"entity_id": CALENDAR, "start_date_time": start, "end_date_time": end},
        blocking=True,
        return_response=True,
    )
    return list(response[CALENDAR]["events"])


def _alert_issue(hass: HomeAssistant, entry: MockConfigEntry, suffix: str) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"alert_{entry.entry_id}_{suffix}")


def _grant() -> dict[str, Any]:
    return community_event(
        "grant-r1",
        "EXPORT_CAPACITY_LIMIT",
        5,
        start=NOW,
        duration="P9999Y",
        name="grid connection of PV SN-1",
    )


def _share(value: float) -> dict[str, Any]:
    return community_event(
        "ev-limit-h1",
        "X_EV_CHARGING_LIMIT",
        value,
        start=NOW,
        duration="PT15M",
        name="EV charging share of the transformer",
    )


def _fault() -> dict[str, Any]:
    return community_event(
        "fault-transformer-t1",
        "ALERT_OTHER",
        FAULT_TEXT,
        start=NOW,
        duration="P9999Y",
        units=None,
        name=FAULT_TEXT,
    )


async def test_grants_and_shares_are_limits_not_demand_response(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    community: FakeCommunity,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """The community's grant and EV charging share set their sensors and nothing else."""
    await _publish(
        hass,
        bridge,
        community.sign(_grant(), audience=HOME, operation=Operation.CREATE),
        Operation.CREATE,
    )
    await _publish(
        hass,
        bridge,
        community.sign(_share(7.4), audience=HOME, operation=Operation.CREATE),
        Operation.CREATE,
    )
    assert _state(hass, EXPORT_LIMIT) == "5.0"
    assert _state(hass, EV_SHARE) == "7.4"
    assert _state(hass, REJECTED) == "0"
    # No demand response: not on, none announced, nothing on the calendar or fired.
    assert _state(hass, DEMAND_RESPONSE) == STATE_OFF
    assert _attributes(hass, DEMAND_RESPONSE)["next_start"] is None
    assert await _calendar(hass, NOW - HOUR, NOW + 24 * HOUR) == []
    assert _state(hass, DR_EVENT) == STATE_UNKNOWN

    # The share lapses unless renewed; the grant holds until further notice.
    await async_move_to(hass, init_integration, frozen_now, NOW + timedelta(minutes=15))
    assert _state(hass, EV_SHARE) == STATE_UNKNOWN
    assert _state(hass, EXPORT_LIMIT) == "5.0"
    await _publish(
        hass,
        bridge,
        community.sign(_grant(), audience=HOME, operation=Operation.DELETE),
        Operation.DELETE,
    )
    assert _state(hass, EXPORT_LIMIT) == STATE_UNKNOWN
    assert _state(hass, DR_EVENT) == STATE_UNKNOWN


async def test_alerts_are_shown_and_noticed_while_they_hold(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    *,
    community: FakeCommunity,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A fault notice of the community and a grid emergency: the most urgent one shows."""
    assert _state(hass, ALERT) == "none"
    fault = community.sign(_fault(), audience=TRANSFORMER, operation=Operation.CREATE)
    await _publish(hass, bridge, fault, Operation.CREATE)
    assert _state(hass, ALERT) == "other"
    assert _attributes(hass, ALERT) | {"friendly_name": None} == {
        "friendly_name": None,
        "device_class": "enum",
        "options": _attributes(hass, ALERT)["options"],
        "message": FAULT_TEXT,
        "event_id": "fault-transformer-t1",
        "issuer": "community:c1",
        "start": NOW,
        "end": None,
        "alerts": 1,
        "next_alert": None,
        "next_alert_start": None,
        "next_alert_message": None,
    }
    assert _state(hass, DEMAND_RESPONSE) == STATE_OFF
    notice = _alert_issue(hass, init_integration, "fault-transformer-t1_other")
    assert notice is not None
    assert notice.translation_key == "community_alert"
    assert notice.severity is ir.IssueSeverity.WARNING
    assert notice.translation_placeholders == {
        "home": init_integration.title,
        "community": "c1",
        "message": FAULT_TEXT,
        "start": dt_util.as_local(NOW).strftime("%Y-%m-%d %H:%M:%S"),
    }

    emergency = community_event(
        "emergency",
        "ALERT_GRID_EMERGENCY",
        "Rolling outages tonight",
        start=NOW + HOUR,
        duration="PT2H",
        units=None,
        program_id="grid-alerts",
    )
    await _publish(hass, bridge, grid.sign(emergency, operation=Operation.CREATE), Operation.CREATE)
    # Announced for an hour from now: the sensor tells what comes, the notice is there at once.
    assert _state(hass, ALERT) == "other"
    assert _attributes(hass, ALERT)["next_alert"] == "grid_emergency"
    assert _attributes(hass, ALERT)["next_alert_start"] == NOW + HOUR
    assert _attributes(hass, ALERT)["next_alert_message"] == "Rolling outages tonight"
    assert _attributes(hass, ALERT)["alerts"] == 1
    announced = _alert_issue(hass, init_integration, "emergency_grid_emergency")
    assert announced is not None
    assert announced.translation_placeholders is not None
    assert announced.translation_placeholders["start"] == dt_util.as_local(NOW + HOUR).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    await async_move_to(hass, init_integration, frozen_now, NOW + HOUR)
    assert _attributes(hass, ALERT)["next_alert"] is None
    assert _state(hass, ALERT) == "grid_emergency"
    assert _attributes(hass, ALERT)["message"] == "Rolling outages tonight"
    assert _attributes(hass, ALERT)["issuer"] == "demo-grid"
    assert _attributes(hass, ALERT)["alerts"] == 2
    notice = _alert_issue(hass, init_integration, "emergency_grid_emergency")
    assert notice is not None
    assert notice.translation_key == "grid_alert"
    assert notice.severity is ir.IssueSeverity.ERROR
    assert notice.translation_placeholders is not None
    assert notice.translation_placeholders["grid"] == "demo-grid"

    # The community withdraws its notice once the fault is over; the grid's ends on time.
    withdrawn = community.sign(_fault(), audience=TRANSFORMER, operation=Operation.DELETE)
    await _publish(hass, bridge, withdrawn, Operation.DELETE)
    assert _alert_issue(hass, init_integration, "fault-transformer-t1_other") is None
    assert _attributes(hass, ALERT)["alerts"] == 1
    await async_move_to(hass, init_integration, frozen_now, NOW + 3 * HOUR)
    assert _state(hass, ALERT) == "none"
    assert _alert_issue(hass, init_integration, "emergency_grid_emergency") is None


async def test_alert_notices_go_with_the_entry(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    community: FakeCommunity,
) -> None:
    """An unloaded home observes nothing, so its alert notices go, and come back with it."""
    fault = community.sign(_fault(), audience=TRANSFORMER, operation=Operation.CREATE)
    await _publish(hass, bridge, fault, Operation.CREATE)
    assert _alert_issue(hass, init_integration, "fault-transformer-t1_other") is not None

    assert await hass.config_entries.async_unload(init_integration.entry_id)
    assert init_integration.state is ConfigEntryState.NOT_LOADED
    assert _alert_issue(hass, init_integration, "fault-transformer-t1_other") is None

    assert await hass.config_entries.async_setup(init_integration.entry_id)
    await hass.async_block_till_done()
    await async_wait_connected(init_integration)
    assert _alert_issue(hass, init_integration, "fault-transformer-t1_other") is not None
    assert _state(hass, ALERT) == "other"


async def test_signals_beyond_the_delegation_are_refused_and_noticed(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    community: FakeCommunity,
) -> None:
    """Values outside a grant, types not granted, a delegation no pinned key signed."""
    too_much = community.sign(_share(50), audience=HOME, operation=Operation.CREATE)
    await _publish(hass, bridge, too_much, Operation.CREATE)
    assert _state(hass, REJECTED) == "1"
    assert _attributes(hass, REJECTED)["last_reason"] == "beyond_delegation"
    assert _attributes(hass, REJECTED)["last_object"] == "EVENT ev-limit-h1"
    assert _state(hass, EV_SHARE) == STATE_UNKNOWN
    notice = ir.async_get(hass).async_get_issue(
        DOMAIN, f"invalid_signature_{init_integration.entry_id}"
    )
    assert notice is not None
    assert notice.translation_key == "community_overstepped"
    assert notice.is_fixable
    assert notice.translation_placeholders is not None
    assert notice.translation_placeholders["object"] == "EVENT ev-limit-h1"
    assert "outside its grant" in notice.translation_placeholders["why"]

    demand = community_event("peak", "SIMPLE", 3, start=NOW, duration="PT1H", units=None)
    await _publish(
        hass,
        bridge,
        community.sign(demand, audience=HOME, operation=Operation.CREATE),
        Operation.CREATE,
    )
    assert _state(hass, REJECTED) == "2"
    assert _attributes(hass, REJECTED)["last_reason"] == "beyond_delegation"
    assert _state(hass, DEMAND_RESPONSE) == STATE_OFF

    # A delegation from a grid the home never pinned vouches for nothing.
    stranger = FakeCommunity(FakeGrid("c1", issuer="other-grid"), [Grant("X_EV_CHARGING_LIMIT")])
    forged = stranger.sign(_share(7), audience=HOME, operation=Operation.CREATE)
    await _publish(hass, bridge, forged, Operation.CREATE)
    assert _state(hass, REJECTED) == "3"
    assert _attributes(hass, REJECTED)["last_reason"] == "invalid_delegation"
    assert _state(hass, EV_SHARE) == STATE_UNKNOWN


async def test_diagnostics_show_the_delegation(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    *,
    community: FakeCommunity,
    hass_client: ClientSessionGenerator,
) -> None:
    """For community-signed objects: grid, delegate, key, grants and validity, no token."""
    await _publish(
        hass,
        bridge,
        community.sign(_grant(), audience=HOME, operation=Operation.CREATE),
        Operation.CREATE,
    )
    emergency = community_event(
        "emergency", "ALERT_GRID_EMERGENCY", "Rolling outages", start=NOW, duration="PT1H"
    )
    await _publish(hass, bridge, grid.sign(emergency, operation=Operation.CREATE), Operation.CREATE)
    expected = {
        "grid": "demo-grid",
        "delegate": "community:c1",
        "community": "c1",
        "key": community.signer.public_key.kid,
        "grants": {
            "EXPORT_CAPACITY_LIMIT": {"min": 0, "max": 10},
            "X_EV_CHARGING_LIMIT": {"min": 1.4, "max": 22},
            "ALERT_OTHER": {"text": True},
        },
        "hosting_kw": {},
        "valid_from": community.issued_at,
        "expires": community.expires,
    }
    for _ in range(2):  # as applied, and as restored after a restart
        diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
        applied = {item["id"]: item for item in diagnostics["signals"]["applied"]}
        assert applied["grant-r1"]["issuer"] == "community:c1"
        assert applied["grant-r1"]["delegation"] == expected
        assert "delegation" not in applied["emergency"]
        assert str(community.signer.delegation) not in json.dumps(diagnostics)
        assert await hass.config_entries.async_reload(init_integration.entry_id)
        await hass.async_block_till_done()
        await async_wait_connected(init_integration)
