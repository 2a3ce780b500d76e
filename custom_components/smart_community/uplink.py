"""What the home reports upstream, as OpenADR reports: telemetry, responses, reductions, faults.

Pure domain logic with no Home Assistant import: a history of the home's sensor readings, the
values a report interval carries, the telemetry an event's report descriptors ask for, the
baseline and reduction of an event, and the report and resource bodies.

**Telemetry** (one resource named after the home): ``DEMAND`` the mean net import (import less
export power) in kW, ``USAGE`` the net energy in kWh (from the energy meters where there are
some, else the mean power times the interval), ``READING`` the import meter in kWh,
``X_PV_POWER`` and ``X_EV_POWER`` mean power in kW, ``STORAGE_CHARGE_LEVEL`` the battery's state
of charge in percent. A sample holds until the next one, for at most ``MAX_HOLD``: a gap in the
history (Home Assistant stopped) counts as no data, never as the last value.

**Baseline** ("prior hour"): the home's net import energy over the hour before its part in an
event began, scaled to the event's length, is what it would have used without the event;
``BASELINE`` is that, ``DELTA_USAGE`` the energy it did use less the baseline (negative when it
used less). Without grid sensors the home reports ``DELTA_USAGE`` only: minus the energy of the
load it held shed ("device estimate"), from each device's power sensor or nominal load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
import itertools
import math
from typing import Any, Final

from .protocol import (
    Event,
    OperatingState,
    ReportDescriptor,
    ReportPayloadDescriptor,
    ReportPayloadType,
    event_slots,
    event_window,
    format_datetime,
    format_duration,
    parse_datetime,
)
from .protocol.timing import Slot

TELEMETRY_EVENT: Final = "X_TELEMETRY"
FAULT_EVENT: Final = "X_FAULT"
FAULT_CODE: Final = "X_FAULT_CODE"
FAULT_DETAIL: Final = "X_FAULT_DETAIL"
PV_POWER: Final = "X_PV_POWER"
EV_POWER: Final = "X_EV_POWER"
MAX_POWER_EXPORT: Final = "MAX_POWER_EXPORT"
INVERTER: Final = "X_INVERTER"
CONNECTION_STATUS: Final = "X_CONNECTION_STATUS"
FOREVER: Final = "P9999Y"

BASELINE_WINDOW: Final = timedelta(hours=1)
MAX_HOLD: Final = timedelta(minutes=5)
HISTORY: Final = timedelta(hours=6)
MAX_SLOTS: Final = 10_000  # intervals of one event looked at, at most


class Quantity(StrEnum):
    """What the home measures (each from a sensor the resident chose)."""

    GRID_IMPORT_POWER = "grid_import_power"  # kW
    GRID_EXPORT_POWER = "grid_export_power"  # kW
    GRID_IMPORT_ENERGY = "grid_import_energy"  # kWh, a meter
    GRID_EXPORT_ENERGY = "grid_export_energy"  # kWh, a meter
    PV_POWER = "pv_power"  # kW
    EV_POWER = "ev_power"  # kW
    BATTERY_LEVEL = "battery_level"  # %
    SHED_POWER = "shed_power"  # kW the engine holds shed (not a sensor)


SENSOR_QUANTITIES: Final = tuple(q for q in Quantity if q is not Quantity.SHED_POWER)

# Report payload types the home can give, with their units and reading types.
_PAYLOADS: Final[dict[str, tuple[str, str]]] = {
    ReportPayloadType.DEMAND: ("KW", "MEAN"),
    ReportPayloadType.USAGE: ("KWH", "DIRECT_READ"),
    ReportPayloadType.READING: ("KWH", "DIRECT_READ"),
    ReportPayloadType.STORAGE_CHARGE_LEVEL: ("PERCENT", "DIRECT_READ"),
    PV_POWER: ("KW", "MEAN"),
    EV_POWER: ("KW", "MEAN"),
}
MEASURED_TYPES: Final = frozenset(_PAYLOADS)


class History:
    """Timestamped readings of each quantity, oldest first, kept for ``keep``."""

    def __init__(self, keep: timedelta = HISTORY) -> None:
        """An empty history."""
        self._keep = keep.total_seconds()
        self._samples: dict[str, list[tuple[float, float]]] = {}

    def add(self, at: datetime, values: Mapping[Quantity, float]) -> None:
        """Record readings taken at ``at``; forget what is older than the history keeps."""
        moment = at.timestamp()
        for quantity, value in values.items():
            samples = self._samples.setdefault(quantity, [])
            if samples and samples[-1][0] >= moment:
                samples[-1] = (samples[-1][0], value)  # the same moment read twice
            else:
                samples.append((moment, value))
        horizon = moment - self._keep
        for samples in self._samples.values():
            drop = next((i for i, (t, _) in enumerate(samples) if t >= horizon), len(samples))
            del samples[: max(0, drop - 1)]  # one older sample still holds into the window

    def has(self, quantity: Quantity) -> bool:
        """Whether there is any reading of the quantity."""
        return bool(self._samples.get(quantity))

    def at(self, quantity: Quantity, moment: datetime) -> float | None:
        """The latest reading at or before ``moment``, if not older than ``MAX_HOLD``."""
        when = moment.timestamp()
        found = None
        for taken, value in self._samples.get(quantity, ()):
            if taken > when:
                break
            found = (taken, value)
        if found is None or when - found[0] > MAX_HOLD.total_seconds():
            return None
        return found[1]

    def mean(self, quantity: Quantity, start: datetime, end: datetime) -> float | None:
        """The time-weighted mean over [start, end) of the readings that cover it, if any."""
        first, last = start.timestamp(), end.timestamp()
        samples = self._samples.get(quantity, [])
        covered = weighted = 0.0
        hold = MAX_HOLD.total_seconds()
        for index, (taken, value) in enumerate(samples):
            until = samples[index + 1][0] if index + 1 < len(samples) else math.inf
            begin, stop = max(taken, first), min(until, taken + hold, last)
            if stop > begin:
                covered += stop - begin
                weighted += value * (stop - begin)
        return weighted / covered if covered > 0 else None

    def to_json(self) -> dict[str, list[list[float]]]:
        """The history as stored."""
        return {quantity: [list(s) for s in samples] for quantity, samples in self._samples.items()}

    def load(self, data: Mapping[str, Sequence[Sequence[float]]]) -> None:
        """Take back a stored history."""
        self._samples = {
            quantity: [(float(t), float(v)) for t, v in samples]
            for quantity, samples in data.items()
        }


def net_power(history: History, start: datetime, end: datetime) -> float | None:
    """Mean net import (kW) over [start, end): import less export."""
    imported = history.mean(Quantity.GRID_IMPORT_POWER, start, end)
    if imported is None:
        return None
    exported = history.mean(Quantity.GRID_EXPORT_POWER, start, end)
    return imported - (exported or 0.0)


def _meter_delta(history: History, meter: Quantity, start: datetime, end: datetime) -> float | None:
    before, after = history.at(meter, start), history.at(meter, end)
    if before is None or after is None or after < before:  # a meter reset: no reading
        return None
    return after - before


def net_energy(history: History, start: datetime, end: datetime) -> float | None:
    """Net import energy (kWh) over [start, end): from the meters, else from the mean power."""
    imported = _meter_delta(history, Quantity.GRID_IMPORT_ENERGY, start, end)
    if imported is not None:
        exported = _meter_delta(history, Quantity.GRID_EXPORT_ENERGY, start, end)
        if exported is not None or not history.has(Quantity.GRID_EXPORT_ENERGY):
            return imported - (exported or 0.0)
    power = net_power(history, start, end)
    return None if power is None else power * _hours(end - start)


def _hours(span: timedelta) -> float:
    return span.total_seconds() / 3600


def payload_value(
    history: History, payload_type: str, start: datetime, end: datetime
) -> float | None:
    """The value of one report payload type for the interval [start, end)."""
    match payload_type:
        case ReportPayloadType.DEMAND:
            return net_power(history, start, end)
        case ReportPayloadType.USAGE:
            return net_energy(history, start, end)
        case ReportPayloadType.READING:
            return history.at(Quantity.GRID_IMPORT_ENERGY, end)
        case ReportPayloadType.STORAGE_CHARGE_LEVEL:
            return history.at(Quantity.BATTERY_LEVEL, end)
        case "X_PV_POWER":
            return history.mean(Quantity.PV_POWER, start, end)
        case "X_EV_POWER":
            return history.mean(Quantity.EV_POWER, start, end)
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class Span:
    """A report interval."""

    start: datetime
    end: datetime | None


def telemetry_report(
    *,
    home: str,
    event_id: str,
    program_id: str | None,
    history: History,
    spans: Sequence[Span],
    payload_types: Iterable[str],
    descriptor: ReportDescriptor | None = None,
) -> dict[str, Any] | None:
    """A reportRequest with the values of the spans; None when there are none."""
    wanted = [p for p in payload_types if p in MEASURED_TYPES]
    intervals: list[dict[str, Any]] = []
    for span in spans:
        if span.end is None:
            continue
        payloads = [
            {"type": p, "values": [_rounded(value)]}
            for p in wanted
            if (value := payload_value(history, p, span.start, span.end)) is not None
        ]
        if payloads:
            intervals.append(_interval(len(intervals), span, payloads))
    if not intervals:
        return None
    descriptors = []
    for payload_type in wanted:
        units, reading_type = _PAYLOADS[payload_type]
        if descriptor is not None:
            units = descriptor.units or units
            reading_type = descriptor.reading_type or reading_type
        descriptors.append(_descriptor(payload_type, units, reading_type))
    return _report(
        home=home,
        event_id=event_id,
        program_id=program_id,
        name=f"{home} telemetry",
        descriptors=descriptors,
        intervals=intervals,
    )


def response_report(
    *,
    home: str,
    event_id: str,
    program_id: str,
    state: OperatingState,
    span: Span,
) -> dict[str, Any]:
    """The home's participation in an event: RUNNING_CURTAILED, or RUNNING_OPTED_OUT."""
    return _report(
        home=home,
        event_id=event_id,
        program_id=program_id,
        name=f"{home} response",
        descriptors=[_descriptor(ReportPayloadType.OPERATING_STATE)],
        intervals=[
            _interval(0, span, [{"type": ReportPayloadType.OPERATING_STATE, "values": [state]}])
        ],
    )


class BaselineMethod(StrEnum):
    """How the reduction of an event was worked out."""

    PRIOR_HOUR = "prior_hour"
    DEVICE_ESTIMATE = "device_estimate"


@dataclass(frozen=True, kw_only=True, slots=True)
class Reduction:
    """What the home used in an event against its baseline, in kWh."""

    event_id: str
    program_id: str
    start: datetime
    end: datetime
    method: BaselineMethod
    baseline: float | None
    measured: float | None
    reduction: float  # baseline less measured: positive when the home used less

    @property
    def delta_usage(self) -> float:
        """The report's DELTA_USAGE: the change in usage against the baseline."""
        return -self.reduction

    def to_json(self) -> dict[str, Any]:
        """The reduction as stored."""
        return {
            "event_id": self.event_id,
            "program_id": self.program_id,
            "start": format_datetime(self.start),
            "end": format_datetime(self.end),
            "method": self.method,
            "baseline": self.baseline,
            "measured": self.measured,
            "reduction": self.reduction,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reduction:
        """A stored reduction."""
        return cls(
            event_id=data["event_id"],
            program_id=data["program_id"],
            start=parse_datetime(data["start"]),
            end=parse_datetime(data["end"]),
            method=BaselineMethod(data["method"]),
            baseline=data["baseline"],
            measured=data["measured"],
            reduction=data["reduction"],
        )


def event_reduction(
    history: History, *, event_id: str, program_id: str, start: datetime, end: datetime
) -> Reduction:
    """The home's reduction in [start, end), by the prior-hour baseline where it can."""
    measured = net_energy(history, start, end)
    prior = net_energy(history, start - BASELINE_WINDOW, start)
    if measured is not None and prior is not None:
        baseline = prior * (end - start) / BASELINE_WINDOW
        return Reduction(
            event_id=event_id,
            program_id=program_id,
            start=start,
            end=end,
            method=BaselineMethod.PRIOR_HOUR,
            baseline=_rounded(baseline),
            measured=_rounded(measured),
            reduction=_rounded(baseline - measured),
        )
    shed = history.mean(Quantity.SHED_POWER, start, end) or 0.0
    return Reduction(
        event_id=event_id,
        program_id=program_id,
        start=start,
        end=end,
        method=BaselineMethod.DEVICE_ESTIMATE,
        baseline=None,
        measured=None,
        reduction=_rounded(shed * _hours(end - start)),
    )


def reduction_report(*, home: str, reduction: Reduction) -> dict[str, Any]:
    """BASELINE (where known) and DELTA_USAGE of an event, in kWh."""
    payloads: list[dict[str, Any]] = []
    descriptors = []
    if reduction.baseline is not None:
        payloads.append({"type": ReportPayloadType.BASELINE, "values": [reduction.baseline]})
        descriptors.append(_descriptor(ReportPayloadType.BASELINE, "KWH", "ESTIMATED"))
    payloads.append({"type": ReportPayloadType.DELTA_USAGE, "values": [reduction.delta_usage]})
    descriptors.append(_descriptor(ReportPayloadType.DELTA_USAGE, "KWH", "ESTIMATED"))
    return _report(
        home=home,
        event_id=reduction.event_id,
        program_id=reduction.program_id,
        name=f"{home} reduction",
        descriptors=descriptors,
        intervals=[_interval(0, Span(start=reduction.start, end=reduction.end), payloads)],
    )


def fault_report(*, home: str, code: str, detail: str | None, at: datetime) -> dict[str, Any]:
    """A fault: OPERATING_STATE ERROR, its code and, where given, a description."""
    payloads: list[dict[str, Any]] = [
        {"type": ReportPayloadType.OPERATING_STATE, "values": [OperatingState.ERROR]},
        {"type": FAULT_CODE, "values": [code]},
    ]
    if detail:
        payloads.append({"type": FAULT_DETAIL, "values": [detail]})
    return _report(
        home=home,
        event_id=FAULT_EVENT,
        program_id=None,
        name=f"{home} fault",
        descriptors=[_descriptor(ReportPayloadType.OPERATING_STATE)],
        intervals=[
            {"id": 0, "intervalPeriod": {"start": format_datetime(at)}, "payloads": payloads}
        ],
    )


def _report(
    *,
    home: str,
    event_id: str,
    program_id: str | None,
    name: str,
    descriptors: list[dict[str, Any]],
    intervals: list[dict[str, Any]],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventID": event_id,
        "clientName": home,
        "reportName": name,
        "payloadDescriptors": descriptors,
        "resources": [{"resourceName": home, "intervals": intervals}],
    }
    if program_id is not None:
        body["programID"] = program_id
    return body


def _descriptor(
    payload_type: str, units: str | None = None, reading_type: str | None = None
) -> dict[str, Any]:
    return ReportPayloadDescriptor(
        payload_type=payload_type, units=units, reading_type=reading_type
    ).to_json_dict()


def _interval(index: int, span: Span, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    duration = (
        FOREVER if span.end is None else format_duration((span.end - span.start).total_seconds())
    )
    return {
        "id": index,
        "intervalPeriod": {"start": format_datetime(span.start), "duration": duration},
        "payloads": payloads,
    }


def _rounded(value: float) -> float:
    return float(f"{value:.6g}")  # no float noise on the wire


# --- what events ask for -------------------------------------------------------------------


def requested(event: Event) -> list[ReportDescriptor]:
    """The event's report descriptors the home can answer (one per payload type)."""
    found: dict[str, ReportDescriptor] = {}
    for descriptor in event.report_descriptors or ():
        if descriptor.historical and descriptor.payload_type in MEASURED_TYPES:
            found.setdefault(descriptor.payload_type, descriptor)
    return list(found.values())


@dataclass(frozen=True, kw_only=True, slots=True)
class Progress:
    """How far the home has answered one report descriptor of one event."""

    intervals: int = 0  # of the event's intervals, counted from startInterval
    reports: int = 0


def due_batches(
    event: Event,
    descriptor: ReportDescriptor,
    *,
    received_at: datetime,
    progress: Progress,
    now: datetime,
) -> tuple[list[list[Span]], Progress]:
    """The batches of the event's ended intervals to report now, and the progress after them.

    A report covers ``frequency`` intervals (else ``numIntervals``); with neither, all of them
    at the event's end (one by one for an event without end). ``repeat`` > 0 caps the reports;
    intervals before ``startInterval`` are not reported.
    """
    window = event_window(event, received_at=received_at)
    if window is None:
        return [], progress
    slots = _ended_slots(event, received_at, max(descriptor.start_interval, 0), now)
    size = next((n for n in (descriptor.frequency, descriptor.num_intervals) if n > 0), None)
    ended = window[1] is not None and window[1] <= now
    if size is None:
        size = 1 if window[1] is None else None
    batches: list[list[Span]] = []
    done, sent = progress.intervals, progress.reports
    while done < len(slots) and (descriptor.repeat < 0 or sent < max(descriptor.repeat, 1)):
        batch = slots[done:] if size is None else slots[done : done + size]
        if not ended and (size is None or len(batch) < size):
            break
        batches.append([Span(start=s.start, end=s.end) for s in batch])
        done += len(batch)
        sent += 1
    if ended:
        done = len(slots)  # what repeat left out is not reported later either
    return batches, Progress(intervals=done, reports=sent)


def _ended_slots(event: Event, received_at: datetime, first: int, now: datetime) -> list[Slot]:
    slots: Iterator[Slot] = event_slots(event, received_at=received_at, window_end=now)
    return [
        slot
        for slot in itertools.islice(slots, first, MAX_SLOTS)
        if slot.end is not None and slot.end <= now
    ]


def requests_telemetry(
    event: Event, *, received_at: datetime, start: datetime, end: datetime
) -> bool:
    """Whether the event asks for telemetry the home gives during any of [start, end)."""
    if not requested(event):
        return False
    window = event_window(event, received_at=received_at)
    return window is not None and window[0] < end and (window[1] is None or start < window[1])


# --- grid connection -------------------------------------------------------------------------


def connection_request(
    *, home: str, name: str, capacity: float, make: str, model: str, serial: str
) -> dict[str, Any]:
    """The resource (an OpenADR VenResourceRequest on the home's VEN) that a PV system's grid
    connection request posts: capacity and inverter."""
    return {
        "objectType": "VEN_RESOURCE_REQUEST",
        "venID": home,
        "resourceName": name,
        "attributes": [
            {"type": MAX_POWER_EXPORT, "values": [capacity]},
            {"type": INVERTER, "values": [make, model, serial]},
        ],
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class GridConnection:
    """A PV system's grid connection as the bridge holds it."""

    resource_id: str
    name: str
    status: str | None
    capacity: float | None
    serial: str | None


def connection_of(resource: Mapping[str, Any]) -> GridConnection | None:
    """Read a stored resource; None when it is not a grid connection request."""
    resource_id, name = resource.get("id"), resource.get("resourceName")
    if not isinstance(resource_id, str) or not isinstance(name, str):
        return None
    values: dict[str, list[Any]] = {}
    for attribute in resource.get("attributes") or ():
        if isinstance(attribute, Mapping) and isinstance(attribute.get("values"), list):
            values[str(attribute.get("type"))] = attribute["values"]
    if MAX_POWER_EXPORT not in values and INVERTER not in values:
        return None
    status = resource.get(CONNECTION_STATUS)
    if status is None and values.get(CONNECTION_STATUS):
        status = values[CONNECTION_STATUS][0]
    capacity = next(iter(values.get(MAX_POWER_EXPORT, [])), None)
    inverter = values.get(INVERTER, [])
    return GridConnection(
        resource_id=resource_id,
        name=name,
        status=status if isinstance(status, str) else None,
        capacity=float(capacity)
        if isinstance(capacity, int | float) and not isinstance(capacity, bool)
        else None,
        serial=str(inverter[2]) if len(inverter) > 2 else None,
    )


OPEN_STATUSES: Final = frozenset({"REQUESTED", "GRANTED"})


def pending_connection(
    resources: Iterable[Mapping[str, Any]], serial: str
) -> GridConnection | None:
    """The home's open (requested or granted) grid connection for an inverter, if any."""
    for resource in resources:
        connection = connection_of(resource)
        if (
            connection is not None
            and connection.serial == serial
            and connection.status in OPEN_STATUSES
        ):
            return connection
    return None
