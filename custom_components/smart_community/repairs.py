"""Repair issues of the Smart Community integration, and the flows that fix them.

The coordinator derives most issues from what it sees (the bridge unreachable for long, clocks
apart, grid keys that differ from the pinned ones) and clears them once that no longer holds.
A signal with an invalid signature is an incident: its issue stays until the resident
acknowledges it, and so does a community-signed signal beyond the grid's delegation (a relay or
community that oversteps is as suspect as a forger). A changed grid key is fixed only by
enrolling again, never by pinning silently. Each alert (``ALERT_*``, from the grid or the
community) is a notice of its own, from when it is announced until it ends or is withdrawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow, RepairsFlowResult
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_URL
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import probatio

from .const import DOMAIN
from .signals import URGENT_ALERTS, Alert

_ENTRY_ID = "entry_id"


class Issue(StrEnum):
    """The repair issues a home can have; each entry has its own of each."""

    BRIDGE_UNREACHABLE = "bridge_unreachable"
    INVALID_SIGNATURE = "invalid_signature"
    CLOCK_SKEW = "clock_skew"
    GRID_KEY_CHANGED = "grid_key_changed"


# Issues that hold only while a condition does; an unloaded entry observes nothing.
DERIVED: frozenset[Issue] = frozenset(
    {Issue.BRIDGE_UNREACHABLE, Issue.CLOCK_SKEW, Issue.GRID_KEY_CHANGED}
)


def issue_id(issue: Issue, entry_id: str) -> str:
    """The issue registry id of an entry's issue."""
    return f"{issue}_{entry_id}"


def _moment(moment: datetime) -> str:
    return dt_util.as_local(moment).strftime("%Y-%m-%d %H:%M:%S")


@callback
def async_raise_bridge_unreachable(
    hass: HomeAssistant, entry: ConfigEntry, last_contact: datetime
) -> None:
    """The home has not heard from its bridge since ``last_contact``."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(Issue.BRIDGE_UNREACHABLE, entry.entry_id),
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key="bridge_unreachable",
        translation_placeholders={
            "home": entry.title,
            "url": entry.data[CONF_URL],
            "since": _moment(last_contact),
        },
        data={_ENTRY_ID: entry.entry_id},
    )


@callback
def async_raise_invalid_signature(
    hass: HomeAssistant, entry: ConfigEntry, object_ref: str, at: datetime
) -> None:
    """The bridge relayed a signal whose grid signature does not hold."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(Issue.INVALID_SIGNATURE, entry.entry_id),
        is_fixable=True,
        severity=ir.IssueSeverity.WARNING,
        translation_key="invalid_signature",
        translation_placeholders={"home": entry.title, "object": object_ref, "at": _moment(at)},
        data={_ENTRY_ID: entry.entry_id},
    )


@callback
def async_raise_community_overstepped(
    hass: HomeAssistant, entry: ConfigEntry, object_ref: str, at: datetime, why: str
) -> None:
    """The bridge relayed a community-signed signal the grid's delegation does not cover."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(Issue.INVALID_SIGNATURE, entry.entry_id),
        is_fixable=True,
        severity=ir.IssueSeverity.WARNING,
        translation_key="community_overstepped",
        translation_placeholders={
            "home": entry.title,
            "object": object_ref,
            "at": _moment(at),
            "why": why,
        },
        data={_ENTRY_ID: entry.entry_id},
    )


@callback
def async_raise_bridge_clock_skew(
    hass: HomeAssistant, entry: ConfigEntry, offset: timedelta
) -> None:
    """The bridge's clock is far from this home's."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(Issue.CLOCK_SKEW, entry.entry_id),
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key="clock_skew",
        translation_placeholders={
            "home": entry.title,
            "seconds": str(round(abs(offset.total_seconds()))),
        },
        data={_ENTRY_ID: entry.entry_id},
    )


@callback
def async_raise_signal_clock_skew(hass: HomeAssistant, entry: ConfigEntry, object_ref: str) -> None:
    """A signal was refused as issued in the future or not yet valid: a clock is off."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(Issue.CLOCK_SKEW, entry.entry_id),
        is_fixable=False,
        severity=ir.IssueSeverity.WARNING,
        translation_key="signal_clock_skew",
        translation_placeholders={"home": entry.title, "object": object_ref},
        data={_ENTRY_ID: entry.entry_id},
    )


@callback
def async_raise_grid_key_changed(
    hass: HomeAssistant, entry: ConfigEntry, pinned: Iterable[str], offered: Iterable[str]
) -> None:
    """The bridge offers grid keys other than the ones the home pinned."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(Issue.GRID_KEY_CHANGED, entry.entry_id),
        is_fixable=True,
        severity=ir.IssueSeverity.ERROR,
        translation_key="grid_key_changed",
        translation_placeholders={
            "home": entry.title,
            "pinned": ", ".join(sorted(pinned)),
            "offered": ", ".join(sorted(offered)) or "-",
        },
        data={_ENTRY_ID: entry.entry_id},
    )


@callback
def async_clear(hass: HomeAssistant, entry_id: str, issues: Iterable[Issue]) -> None:
    """Delete an entry's issues (those not raised are left alone)."""
    for issue in issues:
        ir.async_delete_issue(hass, DOMAIN, issue_id(issue, entry_id))


def _alert_prefix(entry_id: str) -> str:
    return f"alert_{entry_id}_"


def alert_issue_id(entry_id: str, alert: Alert) -> str:
    """The issue registry id of one alert of an entry."""
    return f"{_alert_prefix(entry_id)}{alert.event_id}_{alert.kind}"


@callback
def async_show_alerts(
    hass: HomeAssistant, entry: ConfigEntry, alerts: Mapping[Alert, str | None]
) -> None:
    """A notice for each alert in force or announced, and none for the others.

    ``alerts`` maps each alert to the community that signed it, or to None for the grid's.
    """
    shown = set()
    for alert, community in alerts.items():
        shown.add(alert_issue_id(entry.entry_id, alert))
        _async_raise_alert(hass, entry, alert, community)
    async_clear_alerts(hass, entry.entry_id, keep=shown)


@callback
def _async_raise_alert(
    hass: HomeAssistant, entry: ConfigEntry, alert: Alert, community: str | None
) -> None:
    severity = ir.IssueSeverity.ERROR if alert.kind in URGENT_ALERTS else ir.IssueSeverity.WARNING
    data: dict[str, str | int | float | None] = {_ENTRY_ID: entry.entry_id}
    if community is not None:
        ir.async_create_issue(
            hass,
            DOMAIN,
            alert_issue_id(entry.entry_id, alert),
            is_fixable=False,
            severity=severity,
            translation_key="community_alert",
            translation_placeholders={
                "home": entry.title,
                "community": community,
                "message": alert.message,
                "start": _moment(alert.start),
            },
            data=data,
        )
    else:
        ir.async_create_issue(
            hass,
            DOMAIN,
            alert_issue_id(entry.entry_id, alert),
            is_fixable=False,
            severity=severity,
            translation_key="grid_alert",
            translation_placeholders={
                "home": entry.title,
                "grid": alert.issuer or "-",
                "message": alert.message,
                "start": _moment(alert.start),
            },
            data=data,
        )


@callback
def async_clear_alerts(hass: HomeAssistant, entry_id: str, *, keep: Iterable[str] = ()) -> None:
    """Delete an entry's alert notices, but those in ``keep``."""
    kept = set(keep)
    prefix = _alert_prefix(entry_id)
    for domain, found in list(ir.async_get(hass).issues):
        if domain == DOMAIN and found.startswith(prefix) and found not in kept:
            ir.async_delete_issue(hass, DOMAIN, found)


class GridKeyChangedRepairFlow(RepairsFlow):
    """Explain the new grid keys, then enrol the home again to pin them."""

    def __init__(self, entry_id: str) -> None:
        """Fix the issue of one config entry."""
        self._entry_id = entry_id

    async def async_step_init(self, user_input: dict[str, str] | None = None) -> RepairsFlowResult:
        """Start with the explanation."""
        return await self.async_step_confirm()

    async def async_step_confirm(
        self, user_input: dict[str, str] | None = None
    ) -> RepairsFlowResult:
        """On confirmation, start the reauthentication that pins the keys the bridge offers."""
        if (entry := self.hass.config_entries.async_get_entry(self._entry_id)) is None:
            return self.async_abort(reason="entry_removed")
        if user_input is not None:
            entry.async_start_reauth(self.hass)
            return self.async_create_entry(data={})
        issue = ir.async_get(self.hass).async_get_issue(DOMAIN, self.issue_id)
        return self.async_show_form(
            step_id="confirm",
            data_schema=probatio.Schema({}),
            description_placeholders=issue.translation_placeholders if issue else None,
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """The flow that fixes a fixable issue."""
    if data is not None and issue_id.startswith(Issue.GRID_KEY_CHANGED):
        return GridKeyChangedRepairFlow(str(data[_ENTRY_ID]))
    return ConfirmRepairFlow()
