"""Numbers of the Smart Community integration: the active power limit of SunSpec inverters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import override

from homeassistant.components.number import NumberEntity, NumberEntityDescription, NumberMode
from homeassistant.const import PERCENTAGE
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import SmartCommunityConfigEntry
from .inverter import InverterCoordinator, InverterData, InverterEntity
from .power_limit import FULL_POWER

# Writes are serialised per inverter by its coordinator, which also rate-limits them.
PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class InverterNumberEntityDescription(NumberEntityDescription):
    """Describes a setting of a SunSpec inverter."""

    value_fn: Callable[[InverterData], float | None]
    set_fn: Callable[[InverterCoordinator, float], Awaitable[None]]


def _power_limit(data: InverterData) -> float | None:
    """The limit in force: the inverter's, or full power while none is enabled."""
    if (limit := data.power_limit) is None:
        return None
    return limit.percent if limit.enabled else FULL_POWER


INVERTER_NUMBERS: tuple[InverterNumberEntityDescription, ...] = (
    InverterNumberEntityDescription(
        key="active_power_limit",
        translation_key="active_power_limit",
        native_unit_of_measurement=PERCENTAGE,
        native_min_value=0,
        native_max_value=FULL_POWER,
        native_step=1,
        mode=NumberMode.SLIDER,
        value_fn=_power_limit,
        set_fn=lambda coordinator, value: coordinator.async_set_power_limit(value),
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: SmartCommunityConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up the power limit of each inverter that has immediate controls."""
    for subentry_id, coordinator in entry.runtime_data.inverters.items():
        if coordinator.has_power_limit:
            async_add_entities(
                (InverterNumber(coordinator, description) for description in INVERTER_NUMBERS),
                config_subentry_id=subentry_id,
            )


class InverterNumber(InverterEntity, NumberEntity):
    """A setting of a SunSpec inverter, written through its coordinator."""

    entity_description: InverterNumberEntityDescription

    @property
    @override
    def native_value(self) -> float | None:
        """The value the inverter holds."""
        return self.entity_description.value_fn(self.coordinator.data)

    @override
    async def async_set_native_value(self, value: float) -> None:
        """Ask the inverter's coordinator for the new value."""
        await self.entity_description.set_fn(self.coordinator, value)
