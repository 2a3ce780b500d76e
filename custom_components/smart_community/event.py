"""Event entity of the Smart Community integration: demand-response events announced, changed,
cancelled.

It fires ``new`` when the grid announces an event, ``modified`` when it publishes a new version
of one, and ``cancelled`` when it withdraws one, with the event's id, name, start, end and
level (the highest SIMPLE level it asks for) in the event data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import override

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartCommunityConfigEntry
from .entity import SmartCommunityEntity, SmartCommunityEntityDescription
from .signals import ChangeKind, DemandResponseChange

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class SmartCommunityEventEntityDescription(EventEntityDescription, SmartCommunityEntityDescription):
    """Describes a Smart Community event entity."""


DEMAND_RESPONSE_EVENT = SmartCommunityEventEntityDescription(
    key="demand_response_event",
    translation_key="demand_response_event",
    event_types=[str(kind) for kind in ChangeKind],
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartCommunityConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the demand-response event entity of a home."""
    async_add_entities([SmartCommunityEventEntity(entry, DEMAND_RESPONSE_EVENT)])


class SmartCommunityEventEntity(SmartCommunityEntity, EventEntity):
    """Fires for every demand-response event the grid announces, changes or cancels."""

    entity_description: SmartCommunityEventEntityDescription

    @override
    async def async_added_to_hass(self) -> None:
        """Listen for changes to demand-response events."""
        await super().async_added_to_hass()
        self.async_on_remove(self.coordinator.async_add_change_listener(self._async_changed))

    @callback
    def _async_changed(self, change: DemandResponseChange) -> None:
        event = change.event
        self._trigger_event(
            change.kind,
            {
                "event_id": event.event_id,
                "event_name": event.event_name,
                # Text rather than datetimes: the data survives a restart in the same form.
                "start": event.start.isoformat(),
                "end": event.end.isoformat() if event.end else None,
                "level": event.level,
            },
        )
        self.async_write_ha_state()
