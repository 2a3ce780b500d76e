"""The uplink reporter: what the home tells its bridge, kept until the bridge has stored it.

Every ``SAMPLE_INTERVAL`` it reads the telemetry sensors the resident chose into a history; it
answers the report descriptors of the events in force from that history (and, while none asks,
sends telemetry every ``telemetry_interval`` with the private event id ``X_TELEMETRY``); it
reports the home's participation in each event, and its reduction once the event is over.
Reports wait in a Store until the bridge answers 201 (stored durably); a report the bridge
refuses as malformed (400) is dropped, anything else is sent again later.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
import functools
import math
from typing import Any, Final, TypedDict
import uuid

from homeassistant.const import (
    ATTR_UNIT_OF_MEASUREMENT,
    PERCENTAGE,
    STATE_UNAVAILABLE,
    STATE_UNKNOWN,
    UnitOfEnergy,
    UnitOfPower,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, State, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.storage import Store
from homeassistant.util import dt as dt_util
from homeassistant.util.unit_conversion import (
    BaseUnitConverter,
    EnergyConverter,
    PowerConverter,
)

from .bridge_client import BridgeClient, BridgeError, BridgeRefusedError
from .const import (
    CONF_TELEMETRY,
    CONF_TELEMETRY_INTERVAL,
    DEFAULT_TELEMETRY_INTERVAL,
    DOMAIN,
    LOGGER,
    MAX_QUEUED_REPORTS,
    SAMPLE_INTERVAL,
    STORAGE_SAVE_DELAY,
    STORAGE_VERSION,
)
from .coordinator import SmartCommunityConfigEntry, SmartCommunityCoordinator
from .load_response import Channel, Notice, NoticeKind, Session
from .protocol import Event, ReportDescriptor, format_datetime, parse_datetime
from .uplink import (
    MEASURED_TYPES,
    SENSOR_QUANTITIES,
    TELEMETRY_EVENT,
    History,
    Progress,
    Quantity,
    Reduction,
    Span,
    due_batches,
    event_reduction,
    fault_report,
    reduction_report,
    requested,
    requests_telemetry,
    response_report,
    telemetry_report,
)

# The history is rewritten rarely (flash wear); Home Assistant writes it at stop anyway.
_HISTORY_SAVE_DELAY: Final = 600.0
_UNKNOWN: Final = frozenset({STATE_UNAVAILABLE, STATE_UNKNOWN})
_POWER_QUANTITIES: Final = frozenset(
    {
        Quantity.GRID_IMPORT_POWER,
        Quantity.GRID_EXPORT_POWER,
        Quantity.PV_POWER,
        Quantity.EV_POWER,
    }
)
_ENERGY_QUANTITIES: Final = frozenset({Quantity.GRID_IMPORT_ENERGY, Quantity.GRID_EXPORT_ENERGY})


class _Queued(TypedDict):
    id: str
    kind: str
    body: dict[str, Any]


class _Stored(TypedDict):
    queue: list[_Queued]
    history: dict[str, list[list[float]]]
    progress: dict[str, dict[str, list[int]]]
    last_default: str | None
    last_reduction: dict[str, Any] | None


def uplink_store(hass: HomeAssistant, entry_id: str) -> Store[_Stored]:
    """Where a config entry keeps reports not yet stored by the bridge, and its history."""
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}.uplink")


def finite_number(value: Any) -> float | None:
    """A state or attribute as a number; None for what is no finite number."""
    try:
        number = float(value)
    except TypeError, ValueError:
        return None
    return number if math.isfinite(number) else None


def _number(state: State | None) -> float | None:
    if state is None or state.state in _UNKNOWN:
        return None
    return finite_number(state.state)


def _converted(
    state: State | None, converter: type[BaseUnitConverter], assumed: str, unit: str
) -> float | None:
    """A sensor's reading in ``unit``, from its own unit (``assumed`` where it names none)."""
    value = _number(state)
    if value is None or state is None:
        return None
    try:
        return converter.convert(
            value, state.attributes.get(ATTR_UNIT_OF_MEASUREMENT, assumed), unit
        )
    except HomeAssistantError:
        return None


def read_power(state: State | None) -> float | None:
    """A power sensor's reading in kW (W when it names no unit)."""
    return _converted(state, PowerConverter, UnitOfPower.WATT, UnitOfPower.KILO_WATT)


def read_energy(state: State | None) -> float | None:
    """An energy meter's reading in kWh (kWh when it names no unit)."""
    return _converted(
        state, EnergyConverter, UnitOfEnergy.KILO_WATT_HOUR, UnitOfEnergy.KILO_WATT_HOUR
    )


def read_quantity(quantity: Quantity, state: State | None) -> float | None:
    """A sensor's reading in the unit the quantity is reported in."""
    if quantity in _POWER_QUANTITIES:
        return read_power(state)
    if quantity in _ENERGY_QUANTITIES:
        return read_energy(state)
    if state is not None and state.attributes.get(ATTR_UNIT_OF_MEASUREMENT) not in (
        None,
        PERCENTAGE,
    ):
        return None
    return _number(state)


class UplinkReporter:
    """Telemetry, responses and reductions of one home, sent to its bridge."""

    def __init__(
        self,
        hass: HomeAssistant,
        entry: SmartCommunityConfigEntry,
        coordinator: SmartCommunityCoordinator,
        client: BridgeClient,
    ) -> None:
        """Report for the entry's home, reading the sensors its options name."""
        self.hass = hass
        self._entry = entry
        self._coordinator = coordinator
        self._client = client
        self._home = coordinator.placement.home
        self._sensors: dict[Quantity, str] = {
            Quantity(quantity): entity_id
            for quantity, entity_id in entry.options.get(CONF_TELEMETRY, {}).items()
            if quantity in SENSOR_QUANTITIES and entity_id
        }
        self._interval = timedelta(
            **entry.options.get(CONF_TELEMETRY_INTERVAL, DEFAULT_TELEMETRY_INTERVAL)
        )
        self._store = uplink_store(hass, entry.entry_id)
        self.queue: list[_Queued] = []
        self.history = History()
        self._progress: dict[str, dict[str, Progress]] = {}
        self._last_default: datetime | None = None
        self.last_reduction: Reduction | None = None
        self._shed = 0.0
        self._sending = asyncio.Lock()
        self._listeners: list[CALLBACK_TYPE] = []
        self._unsubscribe: list[CALLBACK_TYPE] = []

    async def async_start(self) -> None:
        """Take back what was stored, then sample, report and send."""
        if (stored := await self._store.async_load()) is not None:
            self.queue = stored["queue"]
            self.history.load(stored["history"])
            self._progress = {
                event_id: {
                    kind: Progress(intervals=p[0], reports=p[1]) for kind, p in kinds.items()
                }
                for event_id, kinds in stored["progress"].items()
            }
            if stored["last_default"] is not None:
                self._last_default = parse_datetime(stored["last_default"])
            if (last := stored["last_reduction"]) is not None:
                self.last_reduction = Reduction.from_json(last)
        self._unsubscribe.append(
            async_track_time_interval(self.hass, self._async_tick, SAMPLE_INTERVAL)
        )
        self._unsubscribe.append(self._coordinator.async_add_listener(self._async_signals))
        self._async_send_soon()

    async def async_stop(self) -> None:
        """Stop sampling and write what is not yet stored."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        await self._store.async_save(self._stored())

    @callback
    def async_add_listener(self, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call ``update`` whenever the last reduction changes."""
        self._listeners.append(update)
        return functools.partial(self._listeners.remove, update)

    def net_import(self) -> float | None:
        """The home's net import (kW) now, if a grid power sensor says it."""
        imported = self._read(Quantity.GRID_IMPORT_POWER)
        if imported is None:
            return None
        return imported - (self._read(Quantity.GRID_EXPORT_POWER) or 0.0)

    def _read(self, quantity: Quantity) -> float | None:
        entity_id = self._sensors.get(quantity)
        if entity_id is None:
            return None
        return read_quantity(quantity, self.hass.states.get(entity_id))

    # --- what the engine tells ----------------------------------------------------------------

    @callback
    def async_shed(self, now: datetime, power: float) -> None:
        """The load (kW) the engine holds shed from ``now`` on (the device estimate's basis)."""
        if power != self._shed:
            self._shed = power
            self.history.add(now, {Quantity.SHED_POWER: power})

    @callback
    def async_notice(self, notice: Notice) -> None:
        """Report what the engine says of an event."""
        session = notice.session
        if notice.kind in (NoticeKind.STARTED, NoticeKind.STATE):
            self._enqueue(
                "response",
                response_report(
                    home=self._home,
                    event_id=session.event_id,
                    program_id=session.program_id,
                    state=session.state,
                    span=Span(start=session.start, end=session.end),
                ),
            )
        elif notice.kind is NoticeKind.ENDED:
            self._ended(session)

    def _ended(self, session: Session) -> None:
        end = session.end
        if Channel.LOAD not in session.channels or end is None or end <= session.start:
            return  # nothing shed, or never begun: nothing to measure
        self.last_reduction = event_reduction(
            self.history,
            event_id=session.event_id,
            program_id=session.program_id,
            start=session.start,
            end=end,
        )
        self._enqueue("reduction", reduction_report(home=self._home, reduction=self.last_reduction))
        for update in list(self._listeners):
            update()

    @callback
    def async_fault(self, code: str, detail: str | None) -> None:
        """Report a fault of the home."""
        self._enqueue(
            "fault", fault_report(home=self._home, code=code, detail=detail, at=dt_util.utcnow())
        )

    # --- telemetry ------------------------------------------------------------------------------

    @callback
    def _async_tick(self, now: datetime) -> None:
        readings = {
            quantity: value
            for quantity in self._sensors
            if (value := self._read(quantity)) is not None
        }
        # Sampled with the sensors too: a reading holds only so long (uplink.MAX_HOLD).
        readings[Quantity.SHED_POWER] = self._shed
        self.history.add(now, readings)
        if self._sensors:
            self._telemetry(now)
        self._store.async_delay_save(self._stored, _HISTORY_SAVE_DELAY)
        self._async_send_soon()

    def _telemetry(self, now: datetime) -> None:
        events = self._coordinator.data.events if self._coordinator.data else {}
        for event in events.values():
            if requested(event):
                self._answer(event, now)
        self._progress = {e: p for e, p in self._progress.items() if e in events}
        step = self._interval.total_seconds()
        boundary = dt_util.utc_from_timestamp(math.floor(now.timestamp() / step) * step)
        if self._last_default is not None and boundary > self._last_default:
            span = Span(start=boundary - self._interval, end=boundary)
            # While an event asks for telemetry of its own, the default cadence would repeat it.
            if not any(
                requests_telemetry(e, received_at=_received(e), start=span.start, end=boundary)
                for e in events.values()
            ):
                self._report_telemetry(TELEMETRY_EVENT, None, [span])
        if self._last_default is None or boundary > self._last_default:
            self._last_default = boundary

    def _answer(self, event: Event, now: datetime) -> None:
        progress = self._progress.setdefault(event.id, {})
        for descriptor in requested(event):
            batches, progress[descriptor.payload_type] = due_batches(
                event,
                descriptor,
                received_at=_received(event),
                progress=progress.get(descriptor.payload_type, Progress()),
                now=now,
            )
            for spans in batches:
                self._report_telemetry(
                    event.id, event.program_id, spans, descriptor.payload_type, descriptor
                )

    def _report_telemetry(
        self,
        event_id: str,
        program_id: str | None,
        spans: list[Span],
        payload_type: str | None = None,
        descriptor: ReportDescriptor | None = None,
    ) -> None:
        body = telemetry_report(
            home=self._home,
            event_id=event_id,
            program_id=program_id,
            history=self.history,
            spans=spans,
            payload_types=[payload_type] if payload_type else sorted(MEASURED_TYPES),
            descriptor=descriptor,
        )
        if body is not None:
            self._enqueue("telemetry", body)

    # --- sending --------------------------------------------------------------------------------

    def _enqueue(self, kind: str, body: dict[str, Any]) -> None:
        self.queue.append({"id": uuid.uuid4().hex, "kind": kind, "body": body})
        while len(self.queue) > MAX_QUEUED_REPORTS:
            # Telemetry is the least dear: the oldest goes first, then the oldest of anything.
            oldest = next((q for q in self.queue if q["kind"] == "telemetry"), self.queue[0])
            self.queue.remove(oldest)
        self._store.async_delay_save(self._stored, STORAGE_SAVE_DELAY)
        self._async_send_soon()

    @callback
    def _async_signals(self) -> None:
        if self._coordinator.last_update_success:
            self._async_send_soon()  # the bridge answers again: send what waited

    @callback
    def _async_send_soon(self) -> None:
        if self.queue and not self._sending.locked():
            self._entry.async_create_task(self.hass, self._async_send(), f"{DOMAIN} reports")

    async def _async_send(self) -> None:
        async with self._sending:
            while self.queue:
                item = self.queue[0]
                try:
                    await self._client.post_report(item["body"])
                except BridgeRefusedError as err:
                    LOGGER.warning("The bridge refused a %s report: %s", item["kind"], err)
                except BridgeError as err:
                    LOGGER.debug("Reports wait for the bridge: %s", err)
                    return
                if item in self.queue:
                    self.queue.remove(item)
                self._store.async_delay_save(self._stored, STORAGE_SAVE_DELAY)

    def _stored(self) -> _Stored:
        return {
            "queue": self.queue,
            "history": self.history.to_json(),
            "progress": {
                event_id: {kind: [p.intervals, p.reports] for kind, p in kinds.items()}
                for event_id, kinds in self._progress.items()
            },
            "last_default": None
            if self._last_default is None
            else format_datetime(self._last_default),
            "last_reduction": None
            if self.last_reduction is None
            else self.last_reduction.to_json(),
        }


def _received(event: Event) -> datetime:
    # As the bridge: a "now" start counts from the event's last modification.
    return event.modification_date_time
