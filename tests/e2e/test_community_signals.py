"""End to end, the community's own signals in the home, under the grid's delegation.

The real mock grid delegates EV charging shares and fault notices to the real bridge. When the
home's EV would overload its transformer, the bridge's charging manager signs the home's share
and the home's charger current follows it, until the share is withdrawn; when two homes of the
transformer lose supply, the bridge's fault response signs a notice that the home shows; and a
community signal beyond the delegation, relayed by a bridge that oversteps, is refused in the
home and counted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
import json
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import UnitOfElectricCurrent
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import setup_test_component_platform

from custom_components.smart_community.const import DOMAIN
from custom_components.smart_community.uplink import fault_report
from smart_community_bridge import homes
from smart_community_bridge.state import AUTHORITY, CHARGING, INTAKE, LEDGER, RELAY
from smart_community_protocol import Operation, Placement, RejectReason, format_datetime
from tests.components.smart_community.home_devices import Setting

from .stack import Stack, add_home, configure, setup_home, state, wait_for

CHARGER = "number.ev_charger_current"
NEIGHBOUR = Placement(community="c1", feeder="f1", transformer="t1", home="h2")


@pytest.fixture
def grid_settings() -> dict[str, Any]:
    """The grid delegates EV charging shares (1.4 to 22 kW) and fault notices for an hour."""
    return {
        "delegation": {
            "lifetime": 3600,
            "grants": {
                "X_EV_CHARGING_LIMIT": {"min": 1.4, "max": 22},
                "ALERT_OTHER": {"text": True},
            },
        }
    }


@pytest.fixture
def bridge_settings() -> dict[str, Any]:
    """Transformer t1 is rated 10 kW; allocation rounds run when the test asks for them."""
    return {
        "ev_charging": {"transformer_kw": {"t1": 10}, "interval": 3600},
        "fusion": {"bucket_seconds": 10, "bucket_grace": 0, "batch_seconds": 0.05},
    }


async def enrol_charger(hass: HomeAssistant, stack: Stack) -> tuple[ConfigEntry, dict[str, str]]:
    """Home h1 through the config flow, its 32 A single-phase charger through the options."""
    setup_test_component_platform(
        hass, "number", [Setting(CHARGER, 32, UnitOfElectricCurrent.AMPERE, 32)]
    )
    assert await async_setup_component(hass, "number", {"number": {"platform": "test"}})
    entry = await add_home(hass, stack)
    await configure(
        hass,
        entry,
        "devices",
        {"loads": [CHARGER]},
        {"nominal_power": 7.4, "minimum_value": 6, "phases": 1, "voltage": 230},
    )
    ids = {
        e.translation_key: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    return entry, ids


async def telemetry(stack: Stack, credential: str, demand_kw: float, ev_kw: float) -> None:
    """What the home's meters report: its demand, and what its EV draws of it."""
    body = {
        "eventID": "X_TELEMETRY",
        "clientName": "h1",
        "resources": [
            {
                "resourceName": "h1",
                "intervalPeriod": {
                    "start": format_datetime(datetime.now(UTC)),
                    "duration": "PT10S",
                },
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [
                            {"type": "DEMAND", "values": [demand_kw]},
                            {"type": "X_EV_POWER", "values": [ev_kw]},
                        ],
                    }
                ],
            }
        ],
    }
    headers = {"Authorization": f"Bearer {credential}"}
    async with stack.session.post(
        f"{stack.bridge_url}/reports", json=body, headers=headers
    ) as response:
        assert response.status == 201, await response.text()


async def allocate(stack: Stack) -> dict[str, float]:
    """One round of the bridge's EV charging allocation; the limits it keeps."""
    charging = stack.bridge[CHARGING]
    await charging.allocate(await stack.bridge[LEDGER].homes())
    return charging.limits


def value(hass: HomeAssistant, entity_id: str) -> float:
    return float(state(hass, entity_id))


async def test_the_ev_charger_follows_the_communitys_share(
    hass: HomeAssistant, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine spaces its writes 10 s apart; on the real clock a second is spacing enough.
    monkeypatch.setattr(
        "custom_components.smart_community.responder.ACTION_SPACING", timedelta(seconds=1)
    )
    entry, ids = await enrol_charger(hass, stack)
    authority = stack.bridge[AUTHORITY]
    await wait_for(lambda: authority.current is not None, "the grid's delegation to the bridge")
    credential = entry.data["api_token"]

    # 14 kW, 11 of them the EV: t1 is planned to 9 kW, so 6 kW are left for the charger.
    await telemetry(stack, credential, 14, 11)
    assert await allocate(stack) == {"h1": 6.0}
    await wait_for(lambda: state(hass, ids["ev_charging_limit"]) == "6.0", "the share's sensor")
    await wait_for(lambda: value(hass, CHARGER) == 26, "the charger held to 6 kW at 230 V")
    assert state(hass, ids["demand_response_active"]) == "off"
    assert state(hass, ids["rejected_signals"]) == "0"

    # The car is nearly full: the bucket's EV power falls to 5.5 kW, which fits.
    await telemetry(stack, credential, 3, 0)
    assert await allocate(stack) == {}
    await wait_for(lambda: value(hass, CHARGER) == 32, "the charger's current given back")
    assert state(hass, ids["ev_charging_limit"]) == "unknown"
    log = await hass.services.async_call(
        DOMAIN, "export_audit_log", {}, blocking=True, return_response=True
    )
    assert log is not None
    assert [line.split(",")[1:6] for line in str(log["csv"]).splitlines()[1:]] == [
        ["ev-limit-h1", CHARGER, "limit", "32", "26"],
        ["ev-limit-h1", CHARGER, "restore", "26", "32"],
    ]


async def test_a_share_beyond_the_delegation_is_refused(hass: HomeAssistant, stack: Stack) -> None:
    _, ids = await enrol_charger(hass, stack)
    authority = stack.bridge[AUTHORITY]
    await wait_for(lambda: authority.current is not None, "the grid's delegation to the bridge")
    now = datetime.now(UTC)
    event = {
        "id": "ev-limit-h1",
        "objectType": "EVENT",
        "createdDateTime": format_datetime(now),
        "modificationDateTime": format_datetime(now),
        "programID": "X_COMMUNITY",
        "targets": ["home:c1/h1"],
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "X_EV_CHARGING_LIMIT",
                "units": "KW",
            }
        ],
        "intervalPeriod": {"start": format_datetime(now), "duration": "PT15M"},
        "intervals": [{"id": 0, "payloads": [{"type": "X_EV_CHARGING_LIMIT", "values": [50]}]}],
    }
    signed = authority.sign_event(event, audience=["home:c1/h1"], operation=Operation.CREATE)
    # The bridge's own intake refuses it; a bridge that oversteps relays it all the same.
    intake = stack.bridge[INTAKE]
    assert await intake.accept(signed, Operation.CREATE) is None
    assert intake.rejected[RejectReason.BEYOND_DELEGATION] == 1
    stored = await stack.bridge[LEDGER].append_signal(
        object_type="EVENT",
        object_id="ev-limit-h1",
        operation="CREATE",
        issuer=authority.key.issuer,
        version=1,
        audience=["home:c1/h1"],
        expires=int(now.timestamp()) + 900,
        body=json.dumps(signed),
    )
    assert stored is not None
    assert await stack.bridge[RELAY].publish(stored) == 1

    await wait_for(lambda: state(hass, ids["rejected_signals"]) == "1", "the home refuses it")
    rejected = hass.states.get(ids["rejected_signals"])
    assert rejected is not None
    assert rejected.attributes["last_reason"] == "beyond_delegation"
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    notice = ir.async_get(hass).async_get_issue(DOMAIN, f"invalid_signature_{entry.entry_id}")
    assert notice is not None
    assert notice.translation_key == "community_overstepped"
    assert value(hass, CHARGER) == 32
    assert state(hass, ids["ev_charging_limit"]) == "unknown"


async def test_a_fault_at_the_transformer_is_noticed_in_the_home(
    hass: HomeAssistant, stack: Stack
) -> None:
    await setup_home(hass, stack)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    ids = {
        e.translation_key: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    authority = stack.bridge[AUTHORITY]
    await wait_for(lambda: authority.current is not None, "the grid's delegation to the bridge")

    # The resident reports the loss of supply; so does the neighbour on the same transformer.
    await hass.services.async_call(
        DOMAIN, "report_fault", {"code": "loss_of_supply"}, blocking=True
    )
    neighbour = await homes.add_home(stack.bridge[LEDGER], NEIGHBOUR)
    body = fault_report(home="h2", code="LOSS_OF_SUPPLY", detail=None, at=datetime.now(UTC))
    async with stack.session.post(
        f"{stack.bridge_url}/reports", json=body, headers={"Authorization": f"Bearer {neighbour}"}
    ) as response:
        assert response.status == 201, await response.text()

    await wait_for(lambda: state(hass, ids["alert"]) == "other", "the community's fault notice")
    alert = hass.states.get(ids["alert"])
    assert alert is not None
    assert alert.attributes["event_id"] == "fault-transformer-t1"
    assert alert.attributes["issuer"] == "community:c1"
    assert str(alert.attributes["message"]).startswith("Supply lost at transformer t1 since ")
    notice = ir.async_get(hass).async_get_issue(
        DOMAIN, f"alert_{entry.entry_id}_fault-transformer-t1_other"
    )
    assert notice is not None
    assert notice.translation_key == "community_alert"
    assert state(hass, ids["demand_response_active"]) == "off"
    assert state(hass, ids["rejected_signals"]) == "0"
