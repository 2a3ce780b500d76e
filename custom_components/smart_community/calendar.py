"""Calendar of the Smart Community integration: the home's demand-response events.

Past events (kept for a while, across restarts), the current one and the announced ones, so that
automations can trigger on an event's start or end with an offset. An event "until further
notice" is shown up to the end of the horizon the home looks ahead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import override

from homeassistant.components.calendar import (
    CalendarEntity,
    CalendarEntityDescription,
    CalendarEvent,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .coordinator import SignalState, SmartCommunityConfigEntry
from .entity import SmartCommunityEntity, SmartCommunityEntityDescription
from .signals import HORIZON, DemandResponsePeriod

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class SmartCommunityCalendarEntityDescription(
    CalendarEntityDescription, SmartCommunityEntityDescription
):
    """Describes a Smart Community calendar."""

    periods_fn: Callable[[SignalState], tuple[DemandResponsePeriod, ...]]


DEMAND_RESPONSE_EVENTS = SmartCommunityCalendarEntityDescription(
    key="demand_response_events",
    translation_key="demand_response_events",
    periods_fn=lambda state: state.calendar,
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartCommunityConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the demand-response calendar of a home."""
    async_add_entities([SmartCommunityCalendar(entry, DEMAND_RESPONSE_EVENTS)])


class SmartCommunityCalendar(SmartCommunityEntity, CalendarEntity):
    """The demand-response events the grid announced to the home."""

    entity_description: SmartCommunityCalendarEntityDescription

    def _events(self) -> list[CalendarEvent]:
        state = self.coordinator.data
        return [
            _calendar_event(period, state.outlook.at)
            for period in self.entity_description.periods_fn(state)
        ]

    @property
    @override
    def event(self) -> CalendarEvent | None:
        """The current event, else the next one."""
        now = dt_util.utcnow()
        return next((event for event in self._events() if event.end > now), None)

    @override
    async def async_get_events(
        self, hass: HomeAssistant, start_date: datetime, end_date: datetime
    ) -> list[CalendarEvent]:
        """The events that overlap the range."""
        return [
            event for event in self._events() if event.start < end_date and event.end > start_date
        ]


def _calendar_event(period: DemandResponsePeriod, evaluated_at: datetime) -> CalendarEvent:
    return CalendarEvent(
        start=period.start,
        end=period.end or max(evaluated_at, period.start) + HORIZON,
        summary=period.event_name or period.event_id,
        uid=f"{period.event_id}@{period.start.isoformat()}",
    )
