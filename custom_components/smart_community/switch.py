"""Switches of the Smart Community integration: taking part in demand response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, override

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartCommunityConfigEntry
from .entity import SmartCommunityEntity, SmartCommunityEntityDescription
from .responder import LoadResponder

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class SmartCommunitySwitchEntityDescription(
    SwitchEntityDescription, SmartCommunityEntityDescription
):
    """Describes a Smart Community switch of the home's own load response."""

    # Participation is the home's own choice, bridge or not.
    always_available: bool = True
    is_on_fn: Callable[[LoadResponder], bool]
    attributes_fn: Callable[[LoadResponder], dict[str, Any]]
    set_fn: Callable[[LoadResponder, bool], Awaitable[Any]]


def _event_attributes(responder: LoadResponder) -> dict[str, Any]:
    session = responder.current
    return {
        "event_id": session.event_id if session else None,
        "event_name": session.event_name if session else None,
        "start": session.start if session else None,
        "end": session.end if session else None,
    }


SWITCHES: tuple[SmartCommunitySwitchEntityDescription, ...] = (
    SmartCommunitySwitchEntityDescription(
        key="participation",
        translation_key="participation",
        # Without an event the home takes part by default in the next one.
        is_on_fn=lambda responder: (s := responder.current) is None or not s.opted_out,
        attributes_fn=_event_attributes,
        set_fn=lambda responder, on: responder.async_participate(None, on),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartCommunityConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the switches of a home."""
    async_add_entities(SmartCommunitySwitch(entry, description) for description in SWITCHES)


class SmartCommunitySwitch(SmartCommunityEntity, SwitchEntity):
    """A switch of the home's load response, which works without the bridge too."""

    entity_description: SmartCommunitySwitchEntityDescription

    def __init__(
        self, entry: SmartCommunityConfigEntry, description: SmartCommunitySwitchEntityDescription
    ) -> None:
        """Attach the switch to the home's device and its responder."""
        super().__init__(entry, description)
        self._responder = entry.runtime_data.responder

    @override
    async def async_added_to_hass(self) -> None:
        """Follow the responder as well as the signals."""
        await super().async_added_to_hass()
        self.async_on_remove(self._responder.async_add_listener(self.async_write_ha_state))

    @property
    @override
    def is_on(self) -> bool:
        """Whether the home takes part in the current (or next) event."""
        return self.entity_description.is_on_fn(self._responder)

    @property
    @override
    def extra_state_attributes(self) -> dict[str, Any]:
        """The event the switch is about."""
        return self.entity_description.attributes_fn(self._responder)

    @override
    async def async_turn_on(self, **kwargs: Any) -> None:
        """Take part in the event (again)."""
        await self.entity_description.set_fn(self._responder, True)

    @override
    async def async_turn_off(self, **kwargs: Any) -> None:
        """Opt out of the event."""
        await self.entity_description.set_fn(self._responder, False)
