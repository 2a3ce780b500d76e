"""SunSpec inverters of a home: one coordinator per inverter subentry, and their base entity.

The coordinator polls the inverter through ``SunSpecClient`` and owns its active power limit:
``PowerLimitPlanner`` decides what to write and when (revert timer on every write, refresh
before it lapses, release at 100 %, nothing rewritten unchanged, rate-limited); the coordinator
carries it out and wakes itself up for the next refresh. Entities never touch the network.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, override

from homeassistant.config_entries import ConfigSubentry
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.update_coordinator import (
    CoordinatorEntity,
    DataUpdateCoordinator,
    UpdateFailed,
)
from homeassistant.util import dt as dt_util

from .const import (
    CONF_MANUFACTURER,
    CONF_MODEL,
    CONF_POWER_LIMIT,
    CONF_SERIAL,
    CONF_UNIT_ID,
    CONF_VERSION,
    DOMAIN,
    INVERTER_LIMIT_MIN_INTERVAL,
    INVERTER_LIMIT_REFRESH,
    INVERTER_LIMIT_REVERT,
    INVERTER_POLL_INTERVAL,
    LOGGER,
    SUBENTRY_INVERTER,
)
from .coordinator import SmartCommunityConfigEntry
from .modbus_device import SunSpecClient, SunSpecConnectionError, SunSpecError
from .power_limit import LimitAction, LimitRules, LimitWrite, PowerLimitPlanner
from .sunspec import InverterReading, PowerLimitState, limit_write, release_write

LIMIT_RULES = LimitRules(
    revert=INVERTER_LIMIT_REVERT,
    refresh=INVERTER_LIMIT_REFRESH,
    min_interval=INVERTER_LIMIT_MIN_INTERVAL,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class InverterData:
    """What an inverter reported at its last poll."""

    reading: InverterReading
    power_limit: PowerLimitState | None  # None: the inverter has no immediate controls


def device_identifier(subentry: ConfigSubentry) -> tuple[str, str]:
    """The device registry identifier of an inverter."""
    return (DOMAIN, f"sunspec_{subentry.unique_id}")


class InverterCoordinator(DataUpdateCoordinator[InverterData]):
    """Polls one SunSpec inverter and keeps its power limit as requested."""

    config_entry: SmartCommunityConfigEntry

    def __init__(
        self,
        hass: HomeAssistant,
        entry: SmartCommunityConfigEntry,
        subentry: ConfigSubentry,
        client: SunSpecClient,
    ) -> None:
        """Drive the inverter of ``subentry`` through ``client``."""
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} inverter {subentry.title}",
            update_interval=INVERTER_POLL_INTERVAL,
        )
        self.subentry = subentry
        # What the coordinator was set up with: subentries change in place when reconfigured.
        self.configured = (subentry.title, dict(subentry.data))
        self.client = client
        self.planner = PowerLimitPlanner(LIMIT_RULES)
        self._limit_lock = asyncio.Lock()
        self._unsub_check: CALLBACK_TYPE | None = None

    @property
    def has_power_limit(self) -> bool:
        """Whether the inverter has immediate controls (model 123), as found when it was added."""
        return bool(self.subentry.data[CONF_POWER_LIMIT])

    @override
    async def _async_update_data(self) -> InverterData:
        """Read the inverter model and the power limit; write what the limit needs now."""
        try:
            reading = await self.client.read_inverter()
            power_limit = await self.client.read_power_limit()
        except SunSpecConnectionError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="inverter_unreachable",
                translation_placeholders={"inverter": self.subentry.title, "error": str(err)},
            ) from err
        except SunSpecError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="inverter_invalid_response",
                translation_placeholders={"inverter": self.subentry.title, "error": str(err)},
            ) from err
        if power_limit is not None:
            # A limit that lapsed while the inverter was away is written again now.
            try:
                power_limit = await self._async_apply_limit(power_limit)
            except SunSpecError as err:
                LOGGER.warning("Inverter %s refused its power limit: %s", self.subentry.title, err)
        return InverterData(reading=reading, power_limit=power_limit)

    async def async_set_power_limit(self, percent: float) -> None:
        """Request an active power limit in percent of the inverter's maximum; 100 lifts it."""
        self.planner.request(percent)
        current = self.data.power_limit if self.data is not None else None
        try:
            power_limit = await self._async_apply_limit(current)
        except SunSpecConnectionError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="inverter_unreachable",
                translation_placeholders={"inverter": self.subentry.title, "error": str(err)},
            ) from err
        except SunSpecError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="inverter_limit_refused",
                translation_placeholders={"inverter": self.subentry.title, "error": str(err)},
            ) from err
        if self.data is not None and power_limit is not current:
            self.async_set_updated_data(
                InverterData(reading=self.data.reading, power_limit=power_limit)
            )

    @override
    async def async_shutdown(self) -> None:
        """Stop the refresh timer and close the connection; a held limit lapses by its timer."""
        await super().async_shutdown()
        self._cancel_check()
        await self.client.close()

    async def _async_apply_limit(self, device: PowerLimitState | None) -> PowerLimitState | None:
        """Write what the planner says is due; returns what the inverter holds afterwards."""
        async with self._limit_lock:
            now = dt_util.utcnow()
            if (write := self.planner.due(device, now)) is not None:
                await self._async_write(write, device)
                self.planner.written(write, now)
                device = await self.client.read_power_limit()
            self._schedule_check(self.planner.next_check(device, now))
            return device

    async def _async_write(self, write: LimitWrite, device: PowerLimitState | None) -> None:
        sunspec_map = self.client.sunspec_map or await self.client.discover()
        if sunspec_map.controls is None:
            raise SunSpecError("the inverter has no immediate controls")
        if write.action is LimitAction.RELEASE:
            await self.client.write(release_write(sunspec_map.controls))
            LOGGER.info("Released the power limit of inverter %s", self.subentry.title)
            return
        state = device or await self.client.read_power_limit()
        assert state is not None  # the map has controls, so the inverter reports them
        await self.client.write(
            limit_write(
                sunspec_map.controls,
                state,
                write.percent,
                int(LIMIT_RULES.revert.total_seconds()),
            )
        )
        LOGGER.info(
            "Limited inverter %s to %s %% for %s",
            self.subentry.title,
            write.percent,
            LIMIT_RULES.revert,
        )

    @callback
    def _schedule_check(self, moment: datetime | None) -> None:
        self._cancel_check()
        if moment is not None:
            self._unsub_check = async_track_point_in_utc_time(self.hass, self._async_check, moment)

    @callback
    def _cancel_check(self) -> None:
        if self._unsub_check is not None:
            self._unsub_check()
            self._unsub_check = None

    @callback
    def _async_check(self, _now: datetime) -> None:
        """A refresh or a delayed write is due: poll, which writes what is due."""
        self._unsub_check = None
        self.config_entry.async_create_task(
            self.hass, self.async_refresh(), f"{DOMAIN} inverter {self.subentry.title} limit"
        )


class InverterEntity(CoordinatorEntity[InverterCoordinator]):
    """An entity of one SunSpec inverter."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: InverterCoordinator, description: EntityDescription) -> None:
        """Describe the entity and attach it to the inverter's device."""
        super().__init__(coordinator)
        self.entity_description = description
        subentry = coordinator.subentry
        self._attr_unique_id = f"sunspec_{subentry.unique_id}_{description.key}"
        data = subentry.data
        self._attr_device_info = DeviceInfo(
            identifiers={device_identifier(subentry)},
            manufacturer=data[CONF_MANUFACTURER],
            model=data[CONF_MODEL],
            serial_number=data[CONF_SERIAL],
            sw_version=data[CONF_VERSION] or None,
            name=subentry.title,
        )


def inverter_subentries(entry: SmartCommunityConfigEntry) -> list[ConfigSubentry]:
    """The entry's inverter subentries."""
    return entry.get_subentries_of_type(SUBENTRY_INVERTER)


async def async_setup_inverters(hass: HomeAssistant, entry: SmartCommunityConfigEntry) -> None:
    """Start a coordinator per inverter; an inverter that is off does not hold up the home."""
    for subentry in inverter_subentries(entry):
        data = subentry.data
        client = SunSpecClient(data[CONF_HOST], data[CONF_PORT], data[CONF_UNIT_ID])
        coordinator = InverterCoordinator(hass, entry, subentry, client)
        await coordinator.async_refresh()
        entry.runtime_data.inverters[subentry.subentry_id] = coordinator


def inverters_changed(entry: SmartCommunityConfigEntry) -> bool:
    """Whether an inverter was added, changed or removed since the home was set up."""
    running = {
        subentry_id: coordinator.configured
        for subentry_id, coordinator in entry.runtime_data.inverters.items()
    }
    configured = {
        subentry.subentry_id: (subentry.title, dict(subentry.data))
        for subentry in inverter_subentries(entry)
    }
    return running != configured


def inverter_diagnostics(entry: SmartCommunityConfigEntry) -> list[dict[str, Any]]:
    """Diagnostics of the entry's inverters: their map, last reading and power limit."""
    result: list[dict[str, Any]] = []
    for coordinator in entry.runtime_data.inverters.values():
        data = coordinator.data
        sunspec_map = coordinator.client.sunspec_map
        result.append(
            {
                "title": coordinator.subentry.title,
                "manufacturer": coordinator.subentry.data[CONF_MANUFACTURER],
                "model": coordinator.subentry.data[CONF_MODEL],
                "unit_id": coordinator.subentry.data[CONF_UNIT_ID],
                "available": coordinator.last_update_success,
                "last_error": str(coordinator.last_exception)
                if coordinator.last_exception
                else None,
                "models": None
                if sunspec_map is None
                else {
                    "base": sunspec_map.base,
                    "inverter": sunspec_map.inverter.model_id,
                    "controls": sunspec_map.controls is not None,
                },
                "reading": None if data is None else asdict(data.reading),
                "power_limit": None
                if data is None or data.power_limit is None
                else asdict(data.power_limit),
                "requested_limit": coordinator.planner.target,
            }
        )
    return result
