"""The load-response engine: which enrolled devices answer a demand-response request, and how.

Pure domain logic with no Home Assistant import; the controller feeds it verified events and what
the devices report, performs the one write it asks for at a time, and tells it how that went.

- A request comes from the interval of an event in force for the home: SIMPLE level 1-3 sheds
  that many thirds of the enrolled load that is running; IMPORT_CAPACITY_LIMIT sheds until the
  home's import is at or below the limit; EXPORT_CAPACITY_LIMIT caps the enrolled inverters;
  the community's X_EV_CHARGING_LIMIT (kW) holds the enrolled EV chargers' current to the
  home's share, converted by each charger's phases and voltage, never below its minimum and
  never above what the resident set. A charger shed for demand response stays shed: that is
  the stricter of the two.
- Each home shifts an event's intervals by its own random offset within ``randomizeStart``
  (User Guide 7.3), drawn once per event and kept, so a restart does not draw it again.
- Loads are shed in the resident's priority order until the request is met, never beyond the
  most load one event may shed; the set is chosen at each interval's start and held until the
  next, so a fluctuating meter never makes the engine switch devices back and forth.
- At the end (or on an opt-out, a cancelled or expired event, or a stale signal) every device
  gets its prior setting back, unless the resident changed it meanwhile: that device is an
  override, left alone for the rest of the event, and the home reports having opted out.
- One write at a time; a device is written at most once per plan, shed at most
  ``MAX_SHEDS_PER_EVENT`` times per event, and a failing restore is tried
  ``MAX_RESTORE_ATTEMPTS`` times: nothing is ever written in a loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
import math
import random
import sys
from typing import Any, Final

from .protocol import Event, EventPayloadType, OperatingState, event_window, parse_datetime
from .protocol.timing import Slot, event_slots, format_datetime, random_start_offset
from .signals import EV_CHARGING_LIMIT, is_demand_response, is_price_event, payload_types

DEFAULT_TEMPERATURE_OFFSET: Final = 2.0  # kelvin a thermostat moves away from comfort
DEFAULT_WATER_HEATER_OFFSET: Final = 10.0  # kelvin a water heater's setpoint is lowered
DEFAULT_MINIMUM_CURRENT: Final = 6.0  # amperes: the least an EV charger can charge with (IEC 61851)
DEFAULT_PHASES: Final = 1
DEFAULT_VOLTAGE: Final = 230.0  # volts between a phase and neutral (IEC 60038)
MAX_SHEDS_PER_EVENT: Final = 3
MAX_RESTORE_ATTEMPTS: Final = 3
# How far ahead the next interval boundary is looked for; sync() runs at least that often.
HORIZON: Final = timedelta(days=7)

_COOLING: Final = frozenset({"cool", "dry", "fan_only"})
_HEATING: Final = frozenset({"heat"})
_RANGE: Final = frozenset({"heat_cool", "auto"})
_POWER_UNITS: Final = {"W": 0.001, "KW": 1.0, "MW": 1000.0}
_AMPERES: Final = "A"
_LOAD_PAYLOADS: Final = frozenset({EventPayloadType.SIMPLE, EventPayloadType.IMPORT_CAPACITY_LIMIT})


class LoadKind(StrEnum):
    """How a device sheds load, by its Home Assistant domain."""

    SWITCH = "switch"  # turned off
    CLIMATE = "climate"  # setpoint moved away from comfort by an offset
    WATER_HEATER = "water_heater"  # setpoint lowered by an offset
    LEVEL = "level"  # a number (an EV charger's current) lowered to a floor


_KINDS: Final = {
    "switch": LoadKind.SWITCH,
    "input_boolean": LoadKind.SWITCH,
    "climate": LoadKind.CLIMATE,
    "water_heater": LoadKind.WATER_HEATER,
    "number": LoadKind.LEVEL,
}


def kind_of(entity_id: str) -> LoadKind | None:
    """The way a device of this entity's domain sheds load; None if it cannot."""
    return _KINDS.get(entity_id.partition(".")[0])


def default_offset(kind: LoadKind) -> float:
    """The comfort bound (kelvin) a thermostat or water heater starts with."""
    if kind is LoadKind.WATER_HEATER:
        return DEFAULT_WATER_HEATER_OFFSET
    return DEFAULT_TEMPERATURE_OFFSET


class Channel(StrEnum):
    """What a request acts on."""

    LOAD = "load"  # shed loads (SIMPLE, IMPORT_CAPACITY_LIMIT)
    EXPORT = "export"  # cap inverters (EXPORT_CAPACITY_LIMIT)
    EV = "ev_charging"  # hold EV chargers to the home's share (X_EV_CHARGING_LIMIT)


class ActionKind(StrEnum):
    """What the engine does to a device (the audit log's "action" column)."""

    SHED = "shed"
    LIMIT = "limit"
    RESTORE = "restore"
    REVERT = "revert"  # a restore because the signal went stale
    OVERRIDE = "override"  # the resident changed a device the engine held: left alone


class NoticeKind(StrEnum):
    """What the engine reports to the controller besides writes."""

    STARTED = "started"  # a new event the home takes part in: acknowledge it
    STATE = "state"  # the home's participation in an event changed
    OVERRIDE = "override"  # the resident changed a held device
    RESTORE_FAILED = "restore_failed"  # gave up restoring a device
    ENDED = "ended"  # the home's part in an event is over


@dataclass(frozen=True, kw_only=True, slots=True)
class Setting:
    """What a device is set to: on/off, a value, or a range."""

    on: bool | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None

    def matches(self, other: Setting) -> bool:
        """Whether two settings are the same, up to a device's rounding."""
        return (
            self.on == other.on
            and _close(self.value, other.value)
            and _close(self.low, other.low)
            and _close(self.high, other.high)
        )

    def describe(self) -> str:
        """The setting as the audit log shows it."""
        if self.on is not None:
            return "on" if self.on else "off"
        if self.low is not None or self.high is not None:
            return f"{_number(self.low)}-{_number(self.high)}"
        return _number(self.value)

    def to_json(self) -> dict[str, Any]:
        """The setting as stored."""
        return {"on": self.on, "value": self.value, "low": self.low, "high": self.high}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Setting:
        """A stored setting."""
        return cls(on=data["on"], value=data["value"], low=data["low"], high=data["high"])


def _close(first: float | None, second: float | None) -> bool:
    if first is None or second is None:
        return first is second
    return math.isclose(first, second, rel_tol=1e-3, abs_tol=0.05)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Observation:
    """What Home Assistant says of a device now."""

    available: bool = True
    setting: Setting = field(default_factory=Setting)
    mode: str | None = None  # a climate's HVAC mode, a water heater's operation
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None  # a number's step
    unit: str | None = None
    power: float | None = None  # kW, from the device's power sensor


@dataclass(frozen=True, kw_only=True, slots=True)
class Load:
    """An enrolled device that sheds load, and its comfort bound."""

    entity_id: str
    kind: LoadKind
    nominal_power: float  # kW drawn while running, where no power sensor says it
    power_sensor: str | None = None
    temperature_offset: float = DEFAULT_TEMPERATURE_OFFSET
    minimum_value: float = DEFAULT_MINIMUM_CURRENT
    # How a charger's current turns into power: kW = A x phases x V / 1000.
    phases: int = DEFAULT_PHASES
    voltage: float = DEFAULT_VOLTAGE


@dataclass(frozen=True, kw_only=True, slots=True)
class Inverter:
    """An enrolled inverter export limit."""

    entity_id: str
    rated_power: float  # kW


@dataclass(frozen=True, kw_only=True, slots=True)
class ResponseConfig:
    """What the resident enrolled: loads in priority order, inverters, the per-event cap."""

    loads: tuple[Load, ...] = ()
    inverters: tuple[Inverter, ...] = ()
    max_shed_power: float = 0.0  # kW

    def channels(self) -> frozenset[Channel]:
        """The channels the home can answer."""
        found: set[Channel] = set()
        if self.loads:
            found.add(Channel.LOAD)
        if self.inverters:
            found.add(Channel.EXPORT)
        if self.chargers:
            found.add(Channel.EV)
        return frozenset(found)

    @property
    def chargers(self) -> tuple[Load, ...]:
        """The enrolled EV charger current numbers."""
        return tuple(load for load in self.loads if load.kind is LoadKind.LEVEL)

    @property
    def entity_ids(self) -> list[str]:
        """Every enrolled entity."""
        return [d.entity_id for d in self.loads] + [i.entity_id for i in self.inverters]


def load_power(load: Load, observation: Observation) -> float:
    """The load a device draws now: its power sensor's reading, else its nominal load."""
    return observation.power if observation.power is not None else load.nominal_power


def shed_setting(load: Load, observation: Observation) -> Setting | None:
    """What shedding sets the device to; None when it has nothing to shed."""
    now = observation.setting
    offset = abs(load.temperature_offset)
    match load.kind:
        case LoadKind.SWITCH:
            return Setting(on=False) if now.on else None
        case LoadKind.CLIMATE if observation.mode in _COOLING and now.value is not None:
            return _moved(now, replace(now, value=_bounded(now.value + offset, observation)))
        case LoadKind.CLIMATE if observation.mode in _HEATING and now.value is not None:
            return _moved(now, replace(now, value=_bounded(now.value - offset, observation)))
        case LoadKind.CLIMATE if (
            observation.mode in _RANGE and now.low is not None and now.high is not None
        ):
            low = _bounded(now.low - offset, observation)
            return _moved(now, replace(now, low=low, high=_bounded(now.high + offset, observation)))
        case LoadKind.WATER_HEATER if observation.mode != "off" and now.value is not None:
            return _moved(now, replace(now, value=_bounded(now.value - offset, observation)))
        case LoadKind.LEVEL if now.value is not None:
            floor = load.minimum_value
            if observation.minimum is not None:
                floor = max(floor, observation.minimum)
            return replace(now, value=floor) if now.value > floor else None
    return None


def _bounded(value: float, observation: Observation) -> float:
    if observation.maximum is not None:
        value = min(value, observation.maximum)
    if observation.minimum is not None:
        value = max(value, observation.minimum)
    return value


def _moved(now: Setting, moved: Setting) -> Setting | None:
    # A setpoint at its bound already has nothing left to give.
    return None if moved.matches(now) else moved


def shed_power(load: Load, observation: Observation, target: Setting) -> float:
    """The load (kW) shedding removes: all of it, or a charger's share above its floor."""
    power = load_power(load, observation)
    current = observation.setting.value
    if load.kind is LoadKind.LEVEL and current and target.value is not None:
        return power * max(0.0, current - target.value) / current
    return power


def export_setting(inverter: Inverter, observation: Observation, limit: float) -> Setting | None:
    """The inverter setting for an export limit (kW) in the entity's unit; None if unknown."""
    unit = (observation.unit or "kW").strip()
    if unit == "%":
        if inverter.rated_power <= 0:
            return None
        value = 100.0 * limit / inverter.rated_power
    elif (factor := _POWER_UNITS.get(unit.upper())) is not None:
        value = limit / factor
    else:
        return None
    return Setting(value=_bounded(value, observation))


def _usable[D: Load | Inverter](
    devices: Iterable[D], session: Session, observations: Mapping[str, Observation]
) -> list[D]:
    """The devices a session may drive now: not overridden, and reporting a state."""
    return [
        device
        for device in devices
        if device.entity_id not in session.overridden
        and (o := observations.get(device.entity_id)) is not None
        and o.available
    ]


def charging_setting(
    load: Load, observation: Observation, share: float, prior: Setting
) -> Setting | None:
    """A charger's setting for an EV charging share (kW); None if its unit is not known.

    In amperes by the charger's phases and voltage, or in the entity's power unit; rounded
    down to its step, never below the charger's minimum, never above ``prior`` (what the
    resident set: a share is a limit, not a target).
    """
    unit = (observation.unit or _AMPERES).strip()
    if unit.upper() == _AMPERES:
        value = share * 1000 / (max(load.phases, 1) * load.voltage)
    elif (factor := _POWER_UNITS.get(unit.upper())) is not None:
        value = share / factor
    else:
        return None
    if prior.value is None:
        return None
    if observation.step:
        value = math.floor(value / observation.step + 1e-9) * observation.step
    value = _bounded(max(value, load.minimum_value), observation)
    return Setting(value=min(value, prior.value))


@dataclass(frozen=True, kw_only=True, slots=True)
class Request:
    """What an interval asks of the home."""

    level: int | None = None  # SIMPLE 0-3
    import_limit: float | None = None  # kW
    export_limit: float | None = None  # kW
    ev_limit: float | None = None  # kW: the home's EV charging share

    def asks(self, channel: Channel) -> bool:
        """Whether the request needs the channel."""
        if channel is Channel.LOAD:
            return bool(self.level) or self.import_limit is not None
        limit = self.export_limit if channel is Channel.EXPORT else self.ev_limit
        return limit is not None


def request_of(event: Event, slot: Slot) -> Request:
    """The request of an interval, power in kW whatever unit the event's descriptor names."""
    units = {d.payload_type: (d.units or "KW").upper() for d in event.payload_descriptors or ()}

    def power(payload: str) -> float | None:
        value = slot.values.get(payload)
        factor = _POWER_UNITS.get(units.get(payload, "KW"))
        if factor is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) * factor

    level = slot.values.get(EventPayloadType.SIMPLE)
    if isinstance(level, bool) or not isinstance(level, int | float) or level != int(level):
        level = None
    return Request(
        level=None if level is None else int(level),
        import_limit=power(EventPayloadType.IMPORT_CAPACITY_LIMIT),
        export_limit=power(EventPayloadType.EXPORT_CAPACITY_LIMIT),
        ev_limit=power(EV_CHARGING_LIMIT),
    )


def event_channels(event: Event) -> frozenset[Channel]:
    """The channels a demand-response event asks for (none for a price event)."""
    if is_price_event(event):
        return frozenset()
    kinds = payload_types(event)
    found = set()
    if not _LOAD_PAYLOADS.isdisjoint(kinds):
        found.add(Channel.LOAD)
    if EventPayloadType.EXPORT_CAPACITY_LIMIT in kinds:
        found.add(Channel.EXPORT)
    if EV_CHARGING_LIMIT in kinds:
        found.add(Channel.EV)
    return frozenset(found)


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    """One write the engine asks for."""

    kind: ActionKind
    entity_id: str
    event_id: str
    channel: Channel
    before: Setting
    after: Setting
    power: float  # kW shed, or the inverter's export limit
    plan: str | None = None  # the plan a shed or limit belongs to


@dataclass(kw_only=True, slots=True)
class Session:
    """The home's part in one demand-response event."""

    event_id: str
    program_id: str
    event_name: str | None
    received_at: datetime
    offset: timedelta  # the home's randomizeStart shift
    start: datetime  # the home's start and end (shifted by the offset)
    end: datetime | None
    channels: frozenset[Channel]
    # False for the limits the home keeps (a grant, an EV charging share): no opting out.
    demand_response: bool = True
    opted_out: bool = False
    overridden: list[str] = field(default_factory=list)
    sheds: dict[str, int] = field(default_factory=dict)
    cancelled: bool = False
    ended: bool = False
    shed_started: datetime | None = None

    @property
    def state(self) -> OperatingState:
        """What the home reports for this event."""
        if self.opted_out or self.overridden:
            return OperatingState.RUNNING_OPTED_OUT
        return OperatingState.RUNNING_CURTAILED

    def active(self, now: datetime) -> bool:
        """Whether the home's part in the event is under way."""
        return not self.ended and self.start <= now and (self.end is None or now < self.end)

    def to_json(self) -> dict[str, Any]:
        """The session as stored."""
        return {
            "event_id": self.event_id,
            "program_id": self.program_id,
            "event_name": self.event_name,
            "received_at": format_datetime(self.received_at),
            "offset": self.offset.total_seconds(),
            "start": format_datetime(self.start),
            "end": None if self.end is None else format_datetime(self.end),
            "channels": sorted(self.channels),
            "demand_response": self.demand_response,
            "opted_out": self.opted_out,
            "overridden": self.overridden,
            "sheds": self.sheds,
            "cancelled": self.cancelled,
            "ended": self.ended,
            "shed_started": None
            if self.shed_started is None
            else format_datetime(self.shed_started),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Session:
        """A stored session."""
        return cls(
            event_id=data["event_id"],
            program_id=data["program_id"],
            event_name=data["event_name"],
            received_at=parse_datetime(data["received_at"]),
            offset=timedelta(seconds=data["offset"]),
            start=parse_datetime(data["start"]),
            end=None if data["end"] is None else parse_datetime(data["end"]),
            channels=frozenset(Channel(c) for c in data["channels"]),
            # Sessions stored before the distinction were all taken as demand response.
            demand_response=data.get("demand_response", True),
            opted_out=data["opted_out"],
            overridden=list(data["overridden"]),
            sheds=dict(data["sheds"]),
            cancelled=data["cancelled"],
            ended=data["ended"],
            shed_started=None
            if data["shed_started"] is None
            else parse_datetime(data["shed_started"]),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Notice:
    """Something the controller passes on: to the audit log, upstream, to the entities."""

    kind: NoticeKind
    session: Session
    entity_id: str | None = None
    before: Setting | None = None
    after: Setting | None = None


@dataclass(kw_only=True, slots=True)
class Held:
    """A device the engine changed, and what to give it back."""

    entity_id: str
    event_id: str
    channel: Channel
    prior: Setting
    target: Setting
    power: float
    restore_attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        """The held device as stored."""
        return {
            "entity_id": self.entity_id,
            "event_id": self.event_id,
            "channel": self.channel,
            "prior": self.prior.to_json(),
            "target": self.target.to_json(),
            "power": self.power,
            "restore_attempts": self.restore_attempts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Held:
        """A stored held device."""
        return cls(
            entity_id=data["entity_id"],
            event_id=data["event_id"],
            channel=Channel(data["channel"]),
            prior=Setting.from_json(data["prior"]),
            target=Setting.from_json(data["target"]),
            power=data["power"],
            restore_attempts=data["restore_attempts"],
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """The devices one channel acts on through one interval: kW shed or export limit each."""

    key: str
    event_id: str
    members: dict[str, float]


@dataclass(frozen=True, kw_only=True, slots=True)
class _Governing:
    session: Session
    slot: Slot
    request: Request


def _rank(event: Event) -> tuple[int, float]:
    # As signals.outlook: a lower priority number wins, then the latest publication.
    priority = event.priority if event.priority is not None else sys.maxsize
    return priority, -event.modification_date_time.timestamp()


class LoadResponse:
    """The engine's state: sessions per event, plans per channel, devices it holds."""

    def __init__(
        self, config: ResponseConfig, *, rng: Callable[[], random.Random] = random.SystemRandom
    ) -> None:
        """Act on the enrolled devices of ``config``; ``rng`` draws the randomizeStart offsets."""
        self.config = config
        self._rng = rng
        self._events: dict[str, Event] = {}
        self.sessions: dict[str, Session] = {}
        self.held: dict[str, Held] = {}
        self._plans: dict[Channel, Plan] = {}
        self._attempted: set[tuple[str, str]] = set()
        self._generation = 0
        self._fresh = True

    # --- events -------------------------------------------------------------------------------

    def sync(self, events: Mapping[str, Event], now: datetime) -> list[Notice]:
        """Take the verified events in force; returns what changed for the home."""
        notices: list[Notice] = []
        served = self.config.channels()
        self._events = {}
        for event in events.values():
            channels = event_channels(event) & served
            if not channels:
                continue
            self._events[event.id] = event
            session = self.sessions.get(event.id)
            if session is None:
                session = self._open(event, channels, now)
                if session is None:
                    continue
                self.sessions[event.id] = session
                notices.append(Notice(kind=NoticeKind.STARTED, session=session))
            else:
                self._reread(session, event, channels)
        for session in self.sessions.values():
            if session.ended:
                continue
            if session.event_id not in self._events and not session.cancelled:
                # Gone before its end: cancelled, or its signature expired. An event that ended
                # is dropped at its own end; the home's shifted part may last a moment longer.
                nominal_end = None if session.end is None else session.end - session.offset
                if nominal_end is None or now < nominal_end:
                    session.cancelled = True
                    session.end = now
            if session.end is not None and session.end <= now:
                session.ended = True
                notices.append(Notice(kind=NoticeKind.ENDED, session=session))
        self._forget(now)
        return notices

    def _open(self, event: Event, channels: frozenset[Channel], now: datetime) -> Session | None:
        window = event_window(event, received_at=now)
        if window is None or (window[1] is not None and window[1] <= now):
            return None
        offset = random_start_offset(event.interval_period, self._rng())
        return Session(
            event_id=event.id,
            program_id=event.program_id,
            event_name=event.event_name,
            received_at=now,
            offset=offset,
            start=window[0] + offset,
            end=None if window[1] is None else window[1] + offset,
            channels=channels,
            demand_response=is_demand_response(event, received_at=now),
        )

    def _reread(self, session: Session, event: Event, channels: frozenset[Channel]) -> None:
        """A new version of an event may move it; the home's offset stays."""
        window = event_window(event, received_at=session.received_at)
        if window is None or session.ended:
            return
        session.event_name = event.event_name
        session.channels = channels
        session.demand_response = is_demand_response(event, received_at=session.received_at)
        session.start = window[0] + session.offset
        session.end = None if window[1] is None else window[1] + session.offset

    def _forget(self, now: datetime) -> None:
        """Drop ended sessions that no longer hold a device."""
        holding = {held.event_id for held in self.held.values()}
        for event_id in [
            s.event_id
            for s in self.sessions.values()
            if s.ended and s.event_id not in holding and (s.end is None or s.end <= now)
        ]:
            del self.sessions[event_id]

    # --- the resident ---------------------------------------------------------------------------

    def participate(self, event_id: str, participate: bool) -> Notice | None:
        """Opt in to or out of an event; None when that changes nothing."""
        session = self.sessions.get(event_id)
        if session is None or session.ended or session.opted_out is not participate:
            return None
        before = session.state
        session.opted_out = not participate
        self._generation += 1  # a new plan: opting in again may shed anew
        if session.state is before:
            return None
        return Notice(kind=NoticeKind.STATE, session=session)

    def observe(self, entity_id: str, observation: Observation) -> list[Notice]:
        """A device changed, not by the engine: an override if it moved off what was set."""
        held = self.held.get(entity_id)
        if held is None or not observation.available or observation.setting.matches(held.target):
            return []
        return self._override(held, observation.setting)

    def _override(self, held: Held, seen: Setting) -> list[Notice]:
        del self.held[held.entity_id]
        session = self.sessions[held.event_id]  # kept while it holds a device
        before = session.state
        if held.entity_id not in session.overridden:
            session.overridden.append(held.entity_id)
        notices = [
            Notice(
                kind=NoticeKind.OVERRIDE,
                session=session,
                entity_id=held.entity_id,
                before=held.target,
                after=seen,
            )
        ]
        if session.state is not before:
            notices.append(Notice(kind=NoticeKind.STATE, session=session))
        return notices

    def current(self, now: datetime) -> Session | None:
        """The demand-response event the home takes part in now, else the next one."""
        open_sessions = [s for s in self.sessions.values() if not s.ended and s.demand_response]
        running = [s for s in open_sessions if s.active(now)]
        if running:
            return min(running, key=lambda s: s.start)
        upcoming = [s for s in open_sessions if s.start > now]
        return min(upcoming, key=lambda s: s.start) if upcoming else None

    # --- planning and acting --------------------------------------------------------------------

    def step(
        self,
        now: datetime,
        observations: Mapping[str, Observation],
        *,
        grid_import: float | None,
        fresh: bool,
    ) -> tuple[Action | None, list[Notice]]:
        """The next write to perform now, if any, and what changed without one.

        ``grid_import`` is the home's net import (kW) now, if a sensor says it; ``fresh`` is
        False once the signal has been stale for longer than the resident allows.
        """
        if fresh is not self._fresh:
            self._fresh = fresh
            self._generation += 1
        for channel in Channel:
            self._replan(channel, now, observations, grid_import)
        notices: list[Notice] = []
        for action in self._actions(observations):
            if action.kind in (ActionKind.RESTORE, ActionKind.REVERT):
                settled = self._settle_restore(action, observations[action.entity_id])
                if settled is not None:
                    notices.extend(settled)
                    continue
            return action, notices
        return None, notices

    def _replan(
        self,
        channel: Channel,
        now: datetime,
        observations: Mapping[str, Observation],
        grid_import: float | None,
    ) -> None:
        governing = self._governing(channel, now) if self._fresh else None
        if governing is None:
            plan = self._plans.get(channel)
            session = self.sessions.get(plan.event_id) if plan else None
            # After its event is dropped, the home's shifted part holds its last interval.
            if (
                plan is None
                or session is None
                or not session.active(now)
                or session.opted_out
                or not self._fresh
                or session.event_id in self._events
            ):
                self._plans.pop(channel, None)
            return
        session, slot = governing.session, governing.slot
        key = f"{channel}|{session.event_id}|{format_datetime(slot.start)}|{self._generation}"
        if (plan := self._plans.get(channel)) is not None and plan.key == key:
            return
        if channel is Channel.LOAD:
            members = self._load_members(governing, observations, grid_import)
        elif channel is Channel.EXPORT:
            members = self._export_members(governing, observations)
        else:
            members = self._charger_members(governing, observations)
        self._plans[channel] = Plan(key=key, event_id=session.event_id, members=members)
        live = {p.key for p in self._plans.values()}
        self._attempted = {a for a in self._attempted if a[0] in live}

    def _governing(self, channel: Channel, now: datetime) -> _Governing | None:
        found: list[tuple[tuple[int, float], _Governing]] = []
        for session in self.sessions.values():
            event = self._events.get(session.event_id)
            if event is None or session.opted_out or not session.active(now):
                continue
            slot = _slot_at(event, session, now)
            if slot is None:
                continue
            request = request_of(event, slot)
            if request.asks(channel):
                found.append(
                    (_rank(event), _Governing(session=session, slot=slot, request=request))
                )
        return min(found, key=lambda item: item[0])[1] if found else None

    def _load_members(
        self,
        governing: _Governing,
        observations: Mapping[str, Observation],
        grid_import: float | None,
    ) -> dict[str, float]:
        session, request = governing.session, governing.request
        candidates: list[tuple[str, float]] = []
        for load in self.config.loads:
            if load.entity_id in session.overridden:
                continue
            held = self.held.get(load.entity_id)
            if held is not None and held.channel is Channel.LOAD:
                candidates.append((load.entity_id, held.power))
                continue
            observation = observations.get(load.entity_id)
            if observation is None or not observation.available:
                continue
            if (target := shed_setting(load, observation)) is not None:
                candidates.append((load.entity_id, shed_power(load, observation, target)))
        running = math.fsum(power for _, power in candidates)
        need = 0.0
        if request.level:
            need = running * min(request.level, 3) / 3
        if request.import_limit is not None:
            # What the home would import without what the engine holds shed already.
            held_power = math.fsum(h.power for h in self.held.values() if h.channel is Channel.LOAD)
            unshed = running if grid_import is None else grid_import + held_power
            need = max(need, unshed - request.import_limit)
        members: dict[str, float] = {}
        shed = 0.0
        cap = self.config.max_shed_power
        for entity_id, power in candidates:
            if shed >= need - 1e-9:
                break
            if shed + power > cap + 1e-9:
                continue
            members[entity_id] = power
            shed += power
        return members

    def _export_members(
        self, governing: _Governing, observations: Mapping[str, Observation]
    ) -> dict[str, float]:
        limit = governing.request.export_limit
        assert limit is not None  # the request asks for the export channel
        usable = _usable(self.config.inverters, governing.session, observations)
        rated = math.fsum(inverter.rated_power for inverter in usable)
        # The grid's limit is for the home: shared among its inverters by their rating.
        return {
            inverter.entity_id: limit * inverter.rated_power / rated
            if rated > 0
            else limit / len(usable)
            for inverter in usable
        }

    def _charger_members(
        self, governing: _Governing, observations: Mapping[str, Observation]
    ) -> dict[str, float]:
        share = governing.request.ev_limit
        assert share is not None  # the request asks for the EV channel
        usable = _usable(self.config.chargers, governing.session, observations)
        # The share is the home's: its chargers split it evenly.
        return {charger.entity_id: share / len(usable) for charger in usable}

    def _actions(self, observations: Mapping[str, Observation]) -> Iterable[Action]:
        """Writes still due, sheds first (in priority order), restores last (in reverse)."""
        for channel in Channel:
            plan = self._plans.get(channel)
            if plan is None:
                continue
            for entity_id, power in plan.members.items():
                observation = observations.get(entity_id)
                if (plan.key, entity_id) in self._attempted or observation is None:
                    continue
                if not observation.available:
                    continue
                action = self._apply(channel, plan, entity_id, power, observation)
                if action is not None:
                    yield action
        wanted = {entity_id for plan in self._plans.values() for entity_id in plan.members}
        order = {entity_id: index for index, entity_id in enumerate(self.config.entity_ids)}
        for held in sorted(
            self.held.values(), key=lambda h: order.get(h.entity_id, -1), reverse=True
        ):
            observation = observations.get(held.entity_id)
            if held.entity_id in wanted or observation is None or not observation.available:
                continue
            yield Action(
                kind=ActionKind.RESTORE if self._fresh else ActionKind.REVERT,
                entity_id=held.entity_id,
                event_id=held.event_id,
                channel=held.channel,
                before=observation.setting,
                after=held.prior,
                power=held.power,
            )

    def _apply(
        self,
        channel: Channel,
        plan: Plan,
        entity_id: str,
        power: float,
        observation: Observation,
    ) -> Action | None:
        held = self.held.get(entity_id)
        session = self.sessions[plan.event_id]
        kind = ActionKind.LIMIT
        if channel is Channel.LOAD:
            # A charger held to its EV charging share may still be shed to its minimum.
            if (held is not None and held.channel is Channel.LOAD) or session.sheds.get(
                entity_id, 0
            ) >= MAX_SHEDS_PER_EVENT:
                return None
            load = next(d for d in self.config.loads if d.entity_id == entity_id)
            target = shed_setting(load, observation)
            kind = ActionKind.SHED
        elif channel is Channel.EXPORT:
            inverter = next(i for i in self.config.inverters if i.entity_id == entity_id)
            target = export_setting(inverter, observation, power)
        else:
            shedding = self._plans.get(Channel.LOAD)
            if shedding is not None and entity_id in shedding.members:
                return None  # shed for demand response: stricter than any share
            charger = next(c for c in self.config.chargers if c.entity_id == entity_id)
            prior = held.prior if held is not None else observation.setting
            target = charging_setting(charger, observation, power, prior)
        if (
            kind is ActionKind.LIMIT
            and held is not None
            and held.channel is channel
            and target is not None
            and held.target.matches(target)
        ):
            return None
        if target is None or target.matches(observation.setting):
            return None
        return Action(
            kind=kind,
            entity_id=entity_id,
            event_id=plan.event_id,
            channel=channel,
            before=observation.setting,
            after=target,
            power=power,
            plan=plan.key,
        )

    def _settle_restore(self, action: Action, observation: Observation) -> list[Notice] | None:
        """A restore that needs no write: None when it does need one."""
        held = self.held[action.entity_id]
        if observation.setting.matches(held.target) and not held.prior.matches(held.target):
            return None
        if observation.setting.matches(held.prior):
            del self.held[held.entity_id]  # back as it was already
            return []
        return self._override(held, observation.setting)  # changed meanwhile: left alone

    def done(self, action: Action, *, succeeded: bool, now: datetime) -> list[Notice]:
        """Record how a write went."""
        if action.kind in (ActionKind.SHED, ActionKind.LIMIT):
            assert action.plan is not None
            self._attempted.add((action.plan, action.entity_id))
            if not succeeded:
                return []
            session = self.sessions[action.event_id]
            held = self.held.get(action.entity_id)
            if held is not None and held.channel is not action.channel:
                # Taken over by another channel: the one it leaves may write it again later.
                self._attempted = {
                    a for a in self._attempted if a[1] != action.entity_id or a[0] == action.plan
                }
            self.held[action.entity_id] = Held(
                entity_id=action.entity_id,
                event_id=action.event_id,
                channel=action.channel,
                prior=action.before if held is None else held.prior,
                target=action.after,
                power=action.power,
            )
            if action.kind is ActionKind.SHED:
                session.sheds[action.entity_id] = session.sheds.get(action.entity_id, 0) + 1
                if session.shed_started is None:
                    session.shed_started = now
            return []
        held = self.held[action.entity_id]
        if succeeded:
            del self.held[action.entity_id]
            return []
        held.restore_attempts += 1
        if held.restore_attempts < MAX_RESTORE_ATTEMPTS:
            return []
        del self.held[action.entity_id]
        return [
            Notice(
                kind=NoticeKind.RESTORE_FAILED,
                session=self.sessions[held.event_id],
                entity_id=held.entity_id,
                before=held.target,
                after=held.prior,
            )
        ]

    def shed_power(self) -> float:
        """The load (kW) the engine holds shed now."""
        return math.fsum(h.power for h in self.held.values() if h.channel is Channel.LOAD)

    def next_change(self, now: datetime) -> datetime | None:
        """The next moment the engine needs to look again without being told."""
        moments: list[datetime] = []
        for session in self.sessions.values():
            if session.ended:
                continue
            moments.extend(m for m in (session.start, session.end) if m is not None and m > now)
            event = self._events.get(session.event_id)
            if event is not None and session.active(now):
                moments.extend(_boundaries_after(event, session, now))
        return min(moments, default=None)

    # --- storage --------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """What survives a restart."""
        return {
            "sessions": [s.to_json() for s in self.sessions.values()],
            "held": [h.to_json() for h in self.held.values()],
            "plans": [
                {"channel": c, "key": p.key, "event_id": p.event_id, "members": p.members}
                for c, p in self._plans.items()
            ],
            "attempted": sorted([list(a) for a in self._attempted]),
            "generation": self._generation,
            "fresh": self._fresh,
        }

    def load(self, data: Mapping[str, Any]) -> None:
        """Take back what was stored (a device no longer enrolled is still given back)."""
        self.sessions = {s["event_id"]: Session.from_json(s) for s in data["sessions"]}
        self.held = {h["entity_id"]: Held.from_json(h) for h in data["held"]}
        self._plans = {
            Channel(p["channel"]): Plan(
                key=p["key"], event_id=p["event_id"], members=dict(p["members"])
            )
            for p in data["plans"]
            if p["event_id"] in self.sessions
        }
        self._attempted = {(a[0], a[1]) for a in data["attempted"]}
        self._generation = data["generation"]
        self._fresh = data["fresh"]


def _slot_at(event: Event, session: Session, now: datetime) -> Slot | None:
    for slot in event_slots(
        event,
        received_at=session.received_at,
        window_end=now + timedelta(seconds=1),
        offset=session.offset,
    ):
        if slot.contains(now):
            return slot
    return None


def _boundaries_after(event: Event, session: Session, now: datetime) -> Iterable[datetime]:
    for slot in event_slots(
        event, received_at=session.received_at, window_end=now + HORIZON, offset=session.offset
    ):
        for moment in (slot.start, slot.end):
            if moment is not None and moment > now:
                yield moment
                return
