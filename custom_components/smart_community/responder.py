"""The home's responder: runs the load-response engine on Home Assistant entities.

It feeds the engine the verified events the coordinator holds and what the enrolled entities
say, performs the one write the engine asks for at a time (``ACTION_SPACING`` apart), tells a
resident's change from its own by the context of the state change, keeps the engine and the
audit log in a Store, and hands participation, overrides and event ends to the uplink reporter.
A ZigBee load is driven through its ZHA entity like any other, but only while ZHA says it may
be (``zha_loads``), and what it reports drawing stands in for a power sensor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
import functools
from pathlib import Path
from typing import Any, Final, TypedDict

from homeassistant.components.climate.const import (
    ATTR_TARGET_TEMP_HIGH,
    ATTR_TARGET_TEMP_LOW,
    DOMAIN as CLIMATE_DOMAIN,
    SERVICE_SET_TEMPERATURE,
)
from homeassistant.components.number.const import (
    ATTR_VALUE,
    DOMAIN as NUMBER_DOMAIN,
    SERVICE_SET_VALUE,
)
from homeassistant.components.water_heater.const import DOMAIN as WATER_HEATER_DOMAIN
from homeassistant.const import (
    ATTR_ENTITY_ID,
    ATTR_TEMPERATURE,
    ATTR_UNIT_OF_MEASUREMENT,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_ON,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
)
from homeassistant.core import (
    CALLBACK_TYPE,
    Context,
    Event as HassEvent,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers.event import (
    async_track_point_in_utc_time,
    async_track_state_change_event,
)
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
import probatio

from .audit import AuditEntry, AuditLog
from .const import (
    ACTION_SPACING,
    CONF_ENTITY_ID,
    CONF_INVERTERS,
    CONF_LOADS,
    CONF_MAX_SHED_POWER,
    CONF_MINIMUM_VALUE,
    CONF_NOMINAL_POWER,
    CONF_PHASES,
    CONF_POWER_SENSOR,
    CONF_RATED_POWER,
    CONF_STALE_AFTER,
    CONF_TEMPERATURE_OFFSET,
    CONF_VOLTAGE,
    DEFAULT_MAX_SHED_POWER,
    DEFAULT_STALE_AFTER,
    DOMAIN,
    LOGGER,
    STORAGE_SAVE_DELAY,
    STORAGE_VERSION,
)
from .coordinator import SmartCommunityConfigEntry, SmartCommunityCoordinator
from .load_response import (
    DEFAULT_MINIMUM_CURRENT,
    DEFAULT_PHASES,
    DEFAULT_VOLTAGE,
    Action,
    ActionKind,
    Inverter,
    Load,
    LoadResponse,
    Notice,
    NoticeKind,
    Observation,
    ResponseConfig,
    Session,
    Setting,
    default_offset,
    kind_of,
)
from .reporter import UplinkReporter, finite_number, read_power
from .zha_loads import async_zigbee_load

# Contexts of the engine's own writes, to tell its state changes from the resident's.
_OWN_CONTEXTS: Final = 64
_UNKNOWN: Final = frozenset({STATE_UNAVAILABLE, STATE_UNKNOWN})
# What the engine tells without a write that the audit log records all the same.
_LOGGED_NOTICES: Final = {
    NoticeKind.OVERRIDE: (ActionKind.OVERRIDE, "left alone"),
    NoticeKind.RESTORE_FAILED: (ActionKind.RESTORE, "gave up"),
}


class _Stored(TypedDict):
    engine: dict[str, Any] | None
    audit: list[dict[str, Any]]


def response_store(hass: HomeAssistant, entry_id: str) -> Store[_Stored]:
    """Where a config entry keeps the engine's state and the audit log."""
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}.response")


def config_from_options(options: Mapping[str, Any]) -> ResponseConfig:
    """The engine's configuration from the entry's options."""
    loads = []
    for item in options.get(CONF_LOADS, ()):
        kind = kind_of(item[CONF_ENTITY_ID])
        if kind is None:
            continue
        loads.append(
            Load(
                entity_id=item[CONF_ENTITY_ID],
                kind=kind,
                nominal_power=float(item[CONF_NOMINAL_POWER]),
                power_sensor=item.get(CONF_POWER_SENSOR),
                temperature_offset=float(item.get(CONF_TEMPERATURE_OFFSET, default_offset(kind))),
                minimum_value=float(item.get(CONF_MINIMUM_VALUE, DEFAULT_MINIMUM_CURRENT)),
                phases=int(item.get(CONF_PHASES, DEFAULT_PHASES)),
                voltage=float(item.get(CONF_VOLTAGE, DEFAULT_VOLTAGE)),
            )
        )
    inverters = tuple(
        Inverter(entity_id=item[CONF_ENTITY_ID], rated_power=float(item[CONF_RATED_POWER]))
        for item in options.get(CONF_INVERTERS, ())
    )
    return ResponseConfig(
        loads=tuple(loads),
        inverters=inverters,
        max_shed_power=float(options.get(CONF_MAX_SHED_POWER, DEFAULT_MAX_SHED_POWER)),
    )


def observe(state: State | None, power: float | None = None) -> Observation:
    """What an entity's state says, as the engine reads it."""
    if state is None or state.state in _UNKNOWN:
        return Observation(available=False)
    attributes = state.attributes
    domain = state.domain
    if domain in {CLIMATE_DOMAIN, WATER_HEATER_DOMAIN}:
        return Observation(
            setting=Setting(
                value=finite_number(attributes.get(ATTR_TEMPERATURE)),
                low=finite_number(attributes.get(ATTR_TARGET_TEMP_LOW)),
                high=finite_number(attributes.get(ATTR_TARGET_TEMP_HIGH)),
            ),
            mode=state.state,
            minimum=finite_number(attributes.get("min_temp")),
            maximum=finite_number(attributes.get("max_temp")),
            power=power,
        )
    if domain == NUMBER_DOMAIN:
        value = finite_number(state.state)
        return Observation(
            available=value is not None,
            setting=Setting(value=value),
            minimum=finite_number(attributes.get("min")),
            maximum=finite_number(attributes.get("max")),
            step=finite_number(attributes.get("step")),
            unit=attributes.get(ATTR_UNIT_OF_MEASUREMENT),
            power=power,
        )
    return Observation(setting=Setting(on=state.state == STATE_ON), power=power)


def service_call(entity_id: str, setting: Setting) -> tuple[str, str, dict[str, Any]]:
    """The service that puts an entity at a setting: domain, service, data."""
    domain = entity_id.partition(".")[0]
    data: dict[str, Any] = {ATTR_ENTITY_ID: entity_id}
    if setting.on is not None:
        return domain, SERVICE_TURN_ON if setting.on else SERVICE_TURN_OFF, data
    if domain == NUMBER_DOMAIN:
        return domain, SERVICE_SET_VALUE, {**data, ATTR_VALUE: setting.value}
    if setting.low is not None and setting.high is not None:
        data |= {ATTR_TARGET_TEMP_LOW: setting.low, ATTR_TARGET_TEMP_HIGH: setting.high}
    else:
        data[ATTR_TEMPERATURE] = setting.value
    return domain, SERVICE_SET_TEMPERATURE, data


class LoadResponder:
    """Runs the engine for one home and keeps its audit log."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: SmartCommunityConfigEntry,
        coordinator: SmartCommunityCoordinator,
        reporter: UplinkReporter,
    ) -> None:
        """Act on the devices the entry's options enrol."""
        self.hass = hass
        self._entry = entry
        self._coordinator = coordinator
        self._reporter = reporter
        self.config = config_from_options(entry.options)
        self.engine = LoadResponse(self.config)
        self.audit = AuditLog()
        self._store = response_store(hass, entry.entry_id)
        self._stale_after = timedelta(**entry.options.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER))
        self._link_lost_at: datetime | None = None
        self._next_write_at: datetime | None = None
        self._own: deque[str] = deque(maxlen=_OWN_CONTEXTS)
        self._running = False
        self._again = False
        self._stopped = False
        self._listeners: list[CALLBACK_TYPE] = []
        self._unsubscribe: list[CALLBACK_TYPE] = []
        self._unsub_wake: CALLBACK_TYPE | None = None

    async def async_start(self) -> None:
        """Restore what was stored, then follow the signals and the devices."""
        if (stored := await self._store.async_load()) is not None:
            if stored["engine"] is not None:
                self.engine.load(stored["engine"])
            self.audit = AuditLog(AuditEntry.from_json(e) for e in stored["audit"])
        self._unsubscribe.append(self._coordinator.async_add_listener(self._async_signals))
        watched = set(self.config.entity_ids) | set(self.engine.held)
        if watched:
            self._unsubscribe.append(
                async_track_state_change_event(self.hass, sorted(watched), self._async_changed)
            )
        self._async_schedule()

    async def async_stop(self) -> None:
        """Stop following and write what is not yet stored."""
        self._stopped = True
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self._unsub_wake is not None:
            self._unsub_wake()
            self._unsub_wake = None
        await self._store.async_save(self._stored())

    @callback
    def async_add_listener(self, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call ``update`` whenever what the entities show may have changed."""
        self._listeners.append(update)
        return functools.partial(self._listeners.remove, update)

    @property
    def current(self) -> Session | None:
        """The event the home takes part in now, else the next one."""
        return self.engine.current(dt_util.utcnow())

    @property
    def shed_power(self) -> float:
        """The load (kW) held shed now."""
        return self.engine.shed_power()

    async def async_participate(self, event_id: str | None, participate: bool) -> None:
        """Opt in to or out of an event (the current or next one when None)."""
        session = self.engine.sessions.get(event_id) if event_id else self.current
        if session is None or session.ended:
            if event_id:
                raise ServiceValidationError(
                    translation_domain=DOMAIN,
                    translation_key="unknown_event",
                    translation_placeholders={"event": event_id},
                )
            raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_event")
        if not session.demand_response:
            # A grant or an EV charging share is a condition of the connection, not a request.
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="not_demand_response",
                translation_placeholders={"event": session.event_id},
            )
        notice = self.engine.participate(session.event_id, participate)
        self._log(
            dt_util.utcnow(),
            session.event_id,
            action="opt_in" if participate else "opt_out",
            outcome="done",
        )
        if notice is not None:
            self._reporter.async_notice(notice)
        self._async_schedule()

    # --- following -------------------------------------------------------------------------------

    @callback
    def _async_signals(self) -> None:
        now = dt_util.utcnow()
        if self._coordinator.last_update_success:
            self._link_lost_at = None
        elif self._link_lost_at is None:
            self._link_lost_at = now
        self._async_schedule()

    @callback
    def _async_changed(self, event: HassEvent[EventStateChangedData]) -> None:
        new_state = event.data["new_state"]
        context = new_state.context if new_state is not None else None
        if context is not None and (context.id in self._own or context.parent_id in self._own):
            return
        entity_id = event.data["entity_id"]
        notices = self.engine.observe(entity_id, self._observation(entity_id))
        self._handle(dt_util.utcnow(), notices)
        self._async_schedule()

    @callback
    def _async_schedule(self) -> None:
        """Run the engine soon; once, however often it is asked meanwhile."""
        if self._stopped:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        self._entry.async_create_task(self.hass, self._async_run(), f"{DOMAIN} load response")

    async def _async_run(self) -> None:
        try:
            while not self._stopped:
                self._again = False
                await self._async_step()
                if not self._again:
                    return
        finally:
            self._running = False

    async def _async_step(self) -> None:
        now = dt_util.utcnow()
        notices = self.engine.sync(self._coordinator.data.events, now)
        observations = {
            entity_id: self._observation(entity_id)
            for entity_id in (*self.config.entity_ids, *self.engine.held)
        }
        action, settled = self.engine.step(
            now, observations, grid_import=self._reporter.net_import(), fresh=self._fresh(now)
        )
        notices.extend(settled)
        pending = action is not None
        if action is not None and (self._next_write_at is None or now >= self._next_write_at):
            notices.extend(await self._async_write(action, now))
            self._next_write_at = now + ACTION_SPACING
        self._handle(now, notices)
        self._reporter.async_shed(now, self.engine.shed_power())
        self._store.async_delay_save(self._stored, STORAGE_SAVE_DELAY)
        self._async_wake_at(now, pending)
        for update in list(self._listeners):
            update()

    def _fresh(self, now: datetime) -> bool:
        return self._link_lost_at is None or now - self._link_lost_at < self._stale_after

    async def _async_write(self, action: Action, now: datetime) -> list[Notice]:
        domain, service, data = service_call(action.entity_id, action.after)
        context = Context()
        self._own.append(context.id)
        try:
            await self.hass.services.async_call(
                domain, service, data, blocking=True, context=context
            )
        except (HomeAssistantError, probatio.Invalid) as err:
            LOGGER.warning("Could not %s %s: %s", action.kind, action.entity_id, err)
            outcome = f"failed: {err}"
            succeeded = False
        else:
            outcome, succeeded = "done", True
        self._log(
            now,
            action.event_id,
            entity=action.entity_id,
            action=action.kind,
            before=action.before.describe(),
            after=action.after.describe(),
            outcome=outcome,
        )
        return self.engine.done(action, succeeded=succeeded, now=now)

    def _handle(self, now: datetime, notices: list[Notice]) -> None:
        for notice in notices:
            if (logged := _LOGGED_NOTICES.get(notice.kind)) is not None:
                action, outcome = logged
                self._log(
                    now,
                    notice.session.event_id,
                    entity=notice.entity_id or "",
                    action=action,
                    before=_described(notice.before),
                    after=_described(notice.after),
                    outcome=outcome,
                )
            self._reporter.async_notice(notice)

    def _observation(self, entity_id: str) -> Observation:
        load = next((d for d in self.config.loads if d.entity_id == entity_id), None)
        power = None
        if load is not None and load.power_sensor is not None:
            power = read_power(self.hass.states.get(load.power_sensor))
        observation = observe(self.hass.states.get(entity_id), power)
        if (zigbee := async_zigbee_load(self.hass, entity_id)) is not None:
            if zigbee.refusal is not None:
                # Unreachable or asleep: a command would arrive late or never.
                return replace(observation, available=False)
            if power is None and zigbee.power is not None:
                observation = replace(observation, power=zigbee.power / 1000)
        return observation

    @callback
    def _async_wake_at(self, now: datetime, pending: bool) -> None:
        moments = [self.engine.next_change(now)]
        if pending and self._next_write_at is not None:
            moments.append(max(self._next_write_at, now))
        if self._link_lost_at is not None and self._fresh(now):
            moments.append(self._link_lost_at + self._stale_after)
        wake = min((m for m in moments if m is not None), default=None)
        if self._unsub_wake is not None:
            self._unsub_wake()
            self._unsub_wake = None
        if wake is not None:
            self._unsub_wake = async_track_point_in_utc_time(self.hass, self._async_wake, wake)

    @callback
    def _async_wake(self, _now: datetime) -> None:
        self._unsub_wake = None
        self._async_schedule()

    def _log(
        self,
        now: datetime,
        event_id: str,
        *,
        action: str,
        outcome: str,
        entity: str = "",
        before: str = "",
        after: str = "",
    ) -> None:
        self.audit.append(
            AuditEntry(
                time=now,
                event=event_id,
                entity=entity,
                action=str(action),
                before=before,
                after=after,
                outcome=outcome,
            )
        )

    def _stored(self) -> _Stored:
        return {"engine": self.engine.to_json(), "audit": self.audit.to_json()}

    async def async_export_csv(self, path: Path | None) -> str:
        """The audit log as CSV; written to ``path`` as well when one is given."""
        text = self.audit.to_csv()
        if path is not None:
            await self.hass.async_add_executor_job(_write_text, path, text)
        return text


def _described(setting: Setting | None) -> str:
    return "" if setting is None else setting.describe()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
