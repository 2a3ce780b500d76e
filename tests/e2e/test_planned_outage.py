"""End to end: a planned outage, from the utility to the residents it concerns.

The utility publishes a planned outage (OpenADR ``ALERT_POSSIBLE_OUTAGE``, its text the notice)
for one feeder at a time, an hour ahead. The home on feeder f1 tells its resident of the one for
f1 at once (a repair notice; the Alert sensor's next alert), not of the one for f2; neither is
demand response. When the utility withdraws it, the home lets it go.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, issue_registry as ir

from custom_components.smart_community.const import DOMAIN

from .stack import Stack, add_home, state, wait_for

NOTICE = "Planned work on feeder f1: no supply from 09:00 to 11:00."


def next_alert(hass: HomeAssistant, entity_id: str) -> str | None:
    current = hass.states.get(entity_id)
    assert current is not None
    return current.attributes.get("next_alert")


async def publish_outage(stack: Stack, feeder: str, start: datetime, text: str) -> str:
    """The utility announces a planned outage of two hours for a feeder."""
    event = await stack.publish(
        start,
        "PT2H",
        eventName=f"planned outage {feeder}",
        targets=[f"feeder:c1/{feeder}"],
        intervals=[{"id": 0, "payloads": [{"type": "ALERT_POSSIBLE_OUTAGE", "values": [text]}]}],
    )
    return str(event["id"])


async def test_a_planned_outage_reaches_the_homes_of_its_feeder_until_withdrawn(
    hass: HomeAssistant, stack: Stack
) -> None:
    entry = await add_home(hass, stack)
    ids = {
        e.translation_key: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    elsewhere = await publish_outage(stack, "f2", start, "Planned work on feeder f2.")
    outage = await publish_outage(stack, "f1", start, NOTICE)

    # Announced an hour ahead: the home tells the resident now, and the sensor what comes.
    await wait_for(lambda: next_alert(hass, ids["alert"]) == "possible_outage", "the notice")
    alert = hass.states.get(ids["alert"])
    assert alert is not None
    assert alert.state == "none"  # nothing in force yet
    assert alert.attributes["next_alert_start"] == start
    assert alert.attributes["next_alert_message"] == NOTICE
    assert alert.attributes["alerts"] == 0
    notice_id = f"alert_{entry.entry_id}_{outage}_possible_outage"
    notice = ir.async_get(hass).async_get_issue(DOMAIN, notice_id)
    assert notice is not None
    assert notice.translation_key == "grid_alert"
    assert notice.severity is ir.IssueSeverity.ERROR
    assert notice.translation_placeholders is not None
    assert notice.translation_placeholders["message"] == NOTICE
    assert notice.translation_placeholders["grid"] == "e2e-grid"
    # The other feeder's outage, published and relayed first, is not this home's.
    assert not [
        issue_id for (domain, issue_id) in ir.async_get(hass).issues if elsewhere in issue_id
    ]
    assert state(hass, ids["demand_response_active"]) == "off"
    assert state(hass, ids["demand_response_events"]) == "off"

    await stack.withdraw(outage)
    await wait_for(lambda: next_alert(hass, ids["alert"]) is None, "the notice withdrawn")
    assert ir.async_get(hass).async_get_issue(DOMAIN, notice_id) is None
    assert state(hass, ids["rejected_signals"]) == "0"
