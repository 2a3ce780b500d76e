"""Upstream reporting: what the bridge tells the grid about its homes, as OpenADR reports.

Every report is a ``reportRequest`` posted to the grid (``POST /reports``) with the event's
``eventID`` and ``programID`` and the bridge's grid client id as ``clientName``. There are two
kinds, both about the grid events the bridge holds: the latest stored version of each, not
deleted, its signature not expired.

**Telemetry on request.** An event's ``reportDescriptors`` whose ``payloadType`` the bridge rolls
up (``fusion.SERIES_TYPES``: USAGE, DEMAND, READING, BASELINE, DELTA_USAGE,
STORAGE_CHARGE_LEVEL, X_PV_POWER, X_EV_POWER, X_BATTERY_POWER) are answered from the rollups, one
interval per time bucket (``fusion.bucket_seconds``) with the bucket's own ``intervalPeriod``
and the value ``fusion.aggregate_value`` gives; interval ids count the report's buckets from 0.
Of a descriptor, the bridge honours:

- ``aggregate``: true gives one resource ``AGGREGATED_REPORT`` (the community's buckets); false
  one resource per transformer, named by the transformer id.
- ``targets`` (else the event's): none or ``community:<c>`` means the whole community;
  ``feeder:``/``transformer:`` targets narrow it to those places (the aggregate is then the sum
  of the feeders' and remaining transformers' values); an event for single homes only gets no
  telemetry (a home's data is its own). Other targets are ignored.
- ``units`` and ``readingType`` go into the report's payload descriptor (``readingType``
  ``SUMMED`` when the descriptor names none: every value is a sum over homes).
- The window: the event's lifespan (``timing.event_window``; a "now" start counts from the
  event's ``modificationDateTime``). ``startInterval`` >= 0 starts it at that interval (as
  ``timing.event_slots`` resolves them, repeats included, the first 10,000 addressable);
  ``numIntervals`` > 0 ends it after that many intervals. A report-only event without intervals
  spans from its ``intervalPeriod.start`` for its ``duration``, or without end. Every bucket
  that overlaps the window is reported.
- ``frequency`` > 0: a report per ``frequency`` buckets, counted from the window's first bucket,
  once the last of them has closed (the last one may be shorter, at the window's end);
  ``repeat`` > 0 caps how many (-1: no cap).
- ``frequency`` 0 (ad hoc), or -1 on a window without end: every check reports the buckets
  closed since the last report.
- ``frequency`` -1 on a bounded window: one report once all its buckets have closed.
- ``historical`` false (forecasts) is not supported: the bridge has no forecasts, such
  descriptors are skipped. ``reportIntervals`` is not honoured: intervals are always the
  bridge's buckets (in effect OPEN_INTERVALS).

A bucket closes ``fusion.bucket_grace`` + ``CLOSE_MARGIN`` seconds after it ends (after the
grace the ingest no longer changes it; the margin covers a batch in flight). Buckets without
data are left out, and a report without data is not sent. A report carries at most
``MAX_INTERVALS`` intervals (longer batches go as several reports), and the first time the
bridge sees a request it reports no further back than ``BACKFILL`` seconds.

**Responses.** Home reports on an event (its ``eventID``) that carry OPERATING_STATE, BASELINE
or DELTA_USAGE are summed up per event in one ``AGGREGATED_REPORT`` interval spanning the
event's lifespan, with payloads ``X_HOMES_PARTICIPATING`` (RUNNING_CURTAILED, IDLE_CURTAILED),
``X_HOMES_OPTED_OUT`` (RUNNING_OPTED_OUT, IDLE_OPTED_OUT) and ``X_HOMES_ERROR`` (ERROR), counted
by each home's latest report with one of those states (within one report: opted out over error
over participating), plus ``DELTA_USAGE`` and ``BASELINE``, the sums over homes of the latest
value each home gave for each resource, interval and position, when any home gave one. The
summary goes up when it changes, at most once per ``bucket_seconds`` per event, and once more,
without waiting, after the event has ended.

**Bookkeeping** (table ``upstream_reports``): per event and descriptor the time up to which
buckets are reported, per event the last summary sent. It advances only after the grid
answered a post with success, so a refused or failed post is tried again at the next check (an
event whose posts keep failing is retried with backoff, up to ``MAX_BACKOFF``); a restart
neither skips nor repeats a report, except one whose answer was lost in the crash itself.

The reporter keeps, per current event, each responding home's latest state and values; new
home reports are read by row id, so a check costs what arrived since the last one, and SQLite
(on the ledger's thread) extracts the few values it needs from the stored JSON. After a restart
it reads each current event's reports again through the (event, home) index, page by page:
what is still kept (``fusion.raw_retention_hours``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
import itertools
import json
import logging
import math
import random
import time
from typing import Any, Protocol

from smart_community_protocol import (
    AGGREGATED_REPORT,
    Event,
    OperatingState,
    ReportDescriptor,
    ReportPayloadDescriptor,
    event_slots,
    event_window,
    format_datetime,
    parse_duration,
)
from smart_community_protocol.timing import BEGINNING_OF_TIME, format_duration as iso_duration

from .config import FusionConfig
from .fusion import SERIES_TYPES, aggregate_value
from .ledger import Ledger, ReportValue, UpstreamMark
from .upstream import GridUnavailable

_LOGGER = logging.getLogger(__name__)

CLOSE_MARGIN = 5.0
MAX_INTERVALS = 1000
BACKFILL = 24 * 3600
MAX_POSTS_PER_CHECK = 24  # per descriptor; the rest waits for the next check
MAX_BACKOFF = 600.0
MAX_SLOTS = 10_000
ROW_PAGE = 5000  # home reports read per query
MARK_RETENTION_SLACK = 7 * 86400

PARTICIPATING = "X_HOMES_PARTICIPATING"
OPTED_OUT = "X_HOMES_OPTED_OUT"
HOMES_ERROR = "X_HOMES_ERROR"
RESPONSE_TYPES = ("OPERATING_STATE", "DELTA_USAGE", "BASELINE")
RESPONSES_TOPIC = "responses"
_STATE_CLASS: dict[str, str] = {
    OperatingState.RUNNING_CURTAILED: PARTICIPATING,
    OperatingState.IDLE_CURTAILED: PARTICIPATING,
    OperatingState.RUNNING_OPTED_OUT: OPTED_OUT,
    OperatingState.IDLE_OPTED_OUT: OPTED_OUT,
    OperatingState.ERROR: HOMES_ERROR,
}
_PRECEDENCE = {PARTICIPATING: 0, HOMES_ERROR: 1, OPTED_OUT: 2}
_SUMMED = ("DELTA_USAGE", "BASELINE")
_FAR = datetime.max.replace(tzinfo=UTC)

type Window = tuple[float, float | None]  # start, end (None: no end), seconds since the epoch
type Series = dict[str, dict[float, float]]  # resource name -> bucket start -> value


# --- pure: time -------------------------------------------------------------------------------


def _moment(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def event_bounds(event: Event) -> Window | None:
    """The event's lifespan; a report-only event spans its intervalPeriod and duration."""
    received = event.modification_date_time
    if event.intervals:
        window = event_window(event, received_at=received)
        if window is None:
            return None
        start, end = window
        return start.timestamp(), None if end is None else end.timestamp()
    period = event.interval_period
    begins = (
        period.start
        if period is not None and period.start is not None and period.start != BEGINNING_OF_TIME
        else received
    )
    end_at: float | None = None
    if event.duration:
        lifespan = parse_duration(event.duration)
        end_at = None if lifespan.forever else (begins + lifespan.delta).timestamp()
    return begins.timestamp(), end_at


def report_window(event: Event, descriptor: ReportDescriptor, bounds: Window) -> Window | None:
    """The part of the event a descriptor asks about (startInterval, numIntervals)."""
    if not event.intervals or (descriptor.start_interval < 0 and descriptor.num_intervals <= 0):
        return bounds
    first = max(descriptor.start_interval, 0)
    count = descriptor.num_intervals if descriptor.num_intervals > 0 else None
    needed = first + (count or 1)
    if needed > MAX_SLOTS:
        return None
    try:
        slots = list(
            itertools.islice(
                event_slots(event, received_at=event.modification_date_time, window_end=_FAR),
                needed,
            )
        )
    except OverflowError:
        return None
    if len(slots) <= first:
        return None
    start = slots[first].start.timestamp()
    if count is None:
        return start, bounds[1]
    end = slots[-1].end
    return start, None if end is None else end.timestamp()


def plan_batches(
    *,
    first: float,
    end: float | None,
    done: float,
    closed: float,
    bucket_seconds: int,
    frequency: int,
    repeat: int,
    max_buckets: int,
) -> list[tuple[float, float]]:
    """The time ranges [start, stop) to report now, in order, each at most max_buckets long.

    ``first`` is the window's first bucket, ``end`` the window's end (None: none), ``done`` where
    reporting stands (every bucket before it is reported), ``closed`` where the closed buckets
    end. See the module docstring for what frequency and repeat mean.
    """
    size = float(bucket_seconds)
    stop_all = math.inf if end is None else math.ceil(end / size) * size
    available = min(closed, stop_all)
    done = max(done, first)
    ranges: list[tuple[float, float]] = []
    if frequency > 0:
        span = frequency * size
        index = int((done - first) // span)
        limit = math.inf if repeat < 0 else max(repeat, 1)
        while index < limit:
            batch_start = max(done, first + index * span)
            batch_stop = min(first + (index + 1) * span, stop_all)
            if batch_stop <= batch_start or batch_stop > available:
                break
            ranges.append((batch_start, batch_stop))
            done = batch_stop
            index += 1
    elif frequency == 0 or end is None:
        if available > done:
            ranges.append((done, available))
    elif available >= stop_all > done:
        ranges.append((done, stop_all))
    step = size * max(1, max_buckets)
    return [
        (start, min(start + step, stop))
        for begin, stop in ranges
        for start in _steps(begin, stop, step)
    ]


def _steps(start: float, stop: float, step: float) -> Iterator[float]:
    while start < stop:
        yield start
        start += step


# --- pure: scope and series -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """The places of the community a report covers."""

    whole: bool
    feeders: frozenset[str] = frozenset()
    transformers: frozenset[str] = frozenset()


def report_scope(targets: Sequence[str] | None, community: str) -> Scope | None:
    """What targets ask about; None when they name single homes only."""
    feeders: set[str] = set()
    transformers: set[str] = set()
    homes = False
    for target in targets or ():
        if target == f"community:{community}":
            return Scope(whole=True)
        kind, _, place = target.partition(":")
        name = place.removeprefix(f"{community}/")
        if name == place:
            continue
        if kind == "feeder":
            feeders.add(name)
        elif kind == "transformer":
            transformers.add(name)
        elif kind == "home":
            homes = True
    if feeders or transformers:
        return Scope(whole=False, feeders=frozenset(feeders), transformers=frozenset(transformers))
    return None if homes else Scope(whole=True)


def scope_places(
    scope: Scope, *, aggregate: bool, community: str, topology: Iterable[tuple[str, str]]
) -> list[tuple[str, list[str]]]:
    """(rollup level, places) to read for a scope; ``topology`` is (feeder, transformer) pairs."""
    pairs = list(topology)
    if aggregate:
        if scope.whole:
            return [("community", [community])]
        on_feeders = {t for f, t in pairs if f in scope.feeders}
        rest = sorted(scope.transformers - on_feeders)
        return [
            (level, places)
            for level, places in (("feeder", sorted(scope.feeders)), ("transformer", rest))
            if places
        ]
    if scope.whole:
        chosen = {t for _, t in pairs}
    else:
        chosen = set(scope.transformers) | {t for f, t in pairs if f in scope.feeders}
    return [("transformer", sorted(chosen))] if chosen else []


def series(
    rows: Iterable[tuple[str, float, float, int, int]], payload_type: str, *, aggregate: bool
) -> Series:
    """Values per resource and bucket from rollup rows (place, bucket, total, count, homes).

    Aggregated, the places' values are summed into AGGREGATED_REPORT; otherwise each place is a
    resource of its own.
    """
    found: Series = {}
    for place, bucket, total, count, homes in rows:
        value = aggregate_value(payload_type, total, count, homes)
        resource = found.setdefault(AGGREGATED_REPORT if aggregate else place, {})
        resource[bucket] = resource.get(bucket, 0.0) + value
    return found


def _number(value: float) -> float:
    return float(f"{value:.12g}")  # no float noise (0.30000000000000004) on the wire


def _payload_descriptor(
    payload_type: str, units: str | None = None, reading_type: str | None = None
) -> dict[str, Any]:
    return ReportPayloadDescriptor(
        payload_type=payload_type, units=units, reading_type=reading_type
    ).to_json_dict()


def telemetry_report(
    *,
    event: Event,
    client_name: str,
    community: str,
    descriptor: ReportDescriptor,
    bucket_seconds: int,
    values: Series,
) -> dict[str, Any] | None:
    """The reportRequest for some buckets of one descriptor; None when there is no data."""
    buckets = sorted({bucket for resource in values.values() for bucket in resource})
    if not buckets:
        return None
    ids = {bucket: index for index, bucket in enumerate(buckets)}
    duration = iso_duration(bucket_seconds)
    payload_type = descriptor.payload_type
    resources = [
        {
            "resourceName": name,
            "intervals": [
                {
                    "id": ids[bucket],
                    "intervalPeriod": {"start": _moment(bucket), "duration": duration},
                    "payloads": [{"type": payload_type, "values": [_number(value)]}],
                }
                for bucket, value in sorted(resource.items())
            ],
        }
        for name, resource in sorted(values.items())
        if resource
    ]
    scope = "community" if descriptor.aggregate else "per transformer"
    return {
        "programID": event.program_id,
        "eventID": event.id,
        "clientName": client_name,
        "reportName": f"{community} {payload_type} {scope}",
        "payloadDescriptors": [
            _payload_descriptor(payload_type, descriptor.units, descriptor.reading_type or "SUMMED")
        ],
        "resources": resources,
    }


# --- pure: responses --------------------------------------------------------------------------


def state_class(value: object) -> str | None:
    """Which count an OPERATING_STATE value goes to (None: not a response to count)."""
    return _STATE_CLASS.get(value) if isinstance(value, str) else None


type ValueKey = tuple[str, str | None, str, int]  # home, resource, interval, position


@dataclass(slots=True)
class ResponseTally:
    """The homes' responses to one event: each home's latest state, and its latest values."""

    states: dict[str, tuple[int, str]] = field(default_factory=dict)
    values: dict[str, dict[ValueKey, tuple[int, float]]] = field(default_factory=dict)

    def add(self, value: ReportValue) -> None:
        """Fold in one value of a home report (idempotent: a value seen twice counts once)."""
        if value.payload_type == "OPERATING_STATE":
            kind = state_class(value.value)
            if kind is None:
                return
            held = self.states.get(value.home)
            if (
                held is None
                or value.row > held[0]
                or (value.row == held[0] and _PRECEDENCE[kind] > _PRECEDENCE[held[1]])
            ):
                self.states[value.home] = (value.row, kind)
            return
        number = value.value
        if value.payload_type not in _SUMMED or not _is_number(number):
            return
        key = (value.home, value.resource, value.interval, value.index)
        kept = self.values.setdefault(value.payload_type, {})
        held_value = kept.get(key)
        if held_value is None or value.row >= held_value[0]:
            kept[key] = (value.row, float(number))

    def summary(self) -> dict[str, int | float]:
        """Counts and sums to report; empty when no home has responded."""
        counts = Counter(kind for _, kind in self.states.values())
        summed = {
            payload_type: math.fsum(number for _, number in kept.values())
            for payload_type, kept in self.values.items()
            if kept
        }
        if not counts and not summed:
            return {}
        found: dict[str, int | float] = {
            PARTICIPATING: counts[PARTICIPATING],
            OPTED_OUT: counts[OPTED_OUT],
            HOMES_ERROR: counts[HOMES_ERROR],
        }
        for payload_type in _SUMMED:
            if payload_type in summed:
                found[payload_type] = _number(summed[payload_type])
        return found


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def responses_report(
    *,
    event: Event,
    client_name: str,
    community: str,
    summary: Mapping[str, int | float],
    bounds: Window | None,
) -> dict[str, Any]:
    """The AGGREGATED_REPORT of the homes' responses to an event."""
    units = {
        descriptor.payload_type: descriptor.units
        for descriptor in event.report_descriptors or ()
        if descriptor.units
    }
    interval: dict[str, Any] = {
        "id": 0,
        "payloads": [{"type": name, "values": [value]} for name, value in summary.items()],
    }
    if bounds is not None:
        start, end = bounds
        interval["intervalPeriod"] = {
            "start": _moment(start),
            "duration": "P9999Y" if end is None else iso_duration(end - start),
        }
    return {
        "programID": event.program_id,
        "eventID": event.id,
        "clientName": client_name,
        "reportName": f"{community} responses",
        "payloadDescriptors": [
            _payload_descriptor(name, units.get(name), "SUMMED") for name in summary
        ],
        "resources": [{"resourceName": AGGREGATED_REPORT, "intervals": [interval]}],
    }


# --- pure: what an event asks for -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelemetryRequest:
    """One report descriptor of an event the bridge answers with its rollups."""

    topic: str
    descriptor: ReportDescriptor
    scope: Scope
    window: Window


def telemetry_requests(
    event: Event, community: str, bounds: Window | None
) -> list[TelemetryRequest]:
    """The descriptors of an event that the bridge answers (duplicates once)."""
    if bounds is None:
        return []
    found: dict[str, TelemetryRequest] = {}
    for descriptor in event.report_descriptors or ():
        if descriptor.payload_type not in SERIES_TYPES or not descriptor.historical:
            continue
        scope = report_scope(descriptor.targets or event.targets, community)
        window = report_window(event, descriptor, bounds)
        if scope is None or window is None:
            continue
        topic = json.dumps(
            [
                "telemetry",
                descriptor.payload_type,
                descriptor.aggregate,
                sorted(descriptor.targets or ()),
            ],
            separators=(",", ":"),
        )
        found.setdefault(topic, TelemetryRequest(topic, descriptor, scope, window))
    return list(found.values())


# --- the reporter -----------------------------------------------------------------------------


class ReportSink(Protocol):
    """Where reports go (the grid client)."""

    async def post_report(self, report: dict[str, Any]) -> Any:
        """Send one report; raise GridUnavailable unless the grid accepted it."""


@dataclass(slots=True)
class _Tracked:
    seq: int
    event: Event
    bounds: Window | None
    requests: list[TelemetryRequest]


class _Unreachable(Exception):
    """The grid cannot be reached at all: stop this check."""


class UpstreamReporter:
    """Sends the grid telemetry it asked for and the homes' responses to its events."""

    def __init__(
        self,
        ledger: Ledger,
        client: ReportSink,
        *,
        community: str,
        client_name: str,
        fusion: FusionConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Read from the ledger, post through client; ``clock`` gives the time (seconds)."""
        self._ledger = ledger
        self._client = client
        self._community = community
        self._client_name = client_name
        self._fusion = fusion
        self._clock = clock
        self._lock = asyncio.Lock()
        self._marks: dict[tuple[str, str], UpstreamMark] = {}
        self._events: dict[str, _Tracked] = {}
        self._unusable: dict[str, int] = {}  # event -> version (seq) that cannot be read
        self._tallies: dict[str, ResponseTally] = {}
        self._high = 0  # home reports up to this row id are in the tallies
        self._retry: dict[str, tuple[int, float]] = {}  # event -> (failures, not before)
        self._topology: list[tuple[str, str]] | None = None
        self.sent: Counter[str] = Counter()
        self.failures = 0

    async def restore(self) -> None:
        """Load what has been reported so far."""
        self._marks = {(m.event_id, m.topic): m for m in await self._ledger.upstream_marks()}

    async def run(self) -> None:
        """Check every ``fusion.report_every`` seconds until cancelled."""
        pruned = 0.0
        while True:
            await asyncio.sleep(self._fusion.report_every)
            try:
                await self.tick()
                now = self._clock()
                if now - pruned >= 3600:
                    retention = self._fusion.rollup_retention_days * 86400
                    await self._ledger.prune_upstream_marks(now - retention - MARK_RETENTION_SLACK)
                    pruned = now
            except Exception:
                _LOGGER.exception("upstream reporting check failed")

    async def tick(self, now: float | None = None) -> int:
        """Report whatever is due at ``now`` (default: the clock); returns how many were sent."""
        async with self._lock:
            moment = self._clock() if now is None else now
            events = await self._current_events(moment)
            await self._update_tallies([tracked.event.id for tracked in events])
            self._topology = None
            before = self.sent.total()
            for tracked in events:
                event_id = tracked.event.id
                failures, not_before = self._retry.get(event_id, (0, 0.0))
                if moment < not_before:
                    continue
                try:
                    await self._report(tracked, moment)
                except _Unreachable:
                    break
                except GridUnavailable as err:
                    self.failures += 1
                    failures += 1
                    delay = min(MAX_BACKOFF, self._fusion.report_every * 2 ** (failures - 1))
                    wait = 0.0 if failures == 1 else delay * random.uniform(0.5, 1.0)  # noqa: S311
                    self._retry[event_id] = (failures, moment + wait)
                    _LOGGER.warning("grid refused a report on event %s: %s", event_id, err)
                else:
                    self._retry.pop(event_id, None)
            return self.sent.total() - before

    async def _report(self, tracked: _Tracked, now: float) -> None:
        try:
            for request in tracked.requests:
                await self._telemetry(tracked.event, request, now)
            await self._responses(tracked, now)
        except GridUnavailable as err:
            if err.__cause__ is not None:  # no answer at all (connection, timeout)
                self.failures += 1
                _LOGGER.warning("grid unreachable for reports (%s); trying again later", err)
                raise _Unreachable from err
            raise

    async def _post(self, body: dict[str, Any], kind: str) -> None:
        await self._client.post_report(body)
        self.sent[kind] += 1

    # --- events --------------------------------------------------------------------------------

    async def _current_events(self, now: float) -> list[_Tracked]:
        stored = await self._ledger.current_objects("EVENT", now=now)
        current: dict[str, _Tracked] = {}
        unusable: dict[str, int] = {}
        for signal in stored:
            if self._unusable.get(signal.object_id) == signal.seq:
                unusable[signal.object_id] = signal.seq
                continue
            tracked = self._events.get(signal.object_id)
            if tracked is None or tracked.seq != signal.seq:
                tracked = self._track(signal.seq, signal.body)
            if tracked is None:
                unusable[signal.object_id] = signal.seq
            else:
                current[signal.object_id] = tracked
        self._events, self._unusable = current, unusable
        for event_id in [e for e in self._retry if e not in current]:
            del self._retry[event_id]
        return list(current.values())

    def _track(self, seq: int, body: str) -> _Tracked | None:
        try:
            event = Event.parse(json.loads(body))
            bounds = event_bounds(event)
            requests = telemetry_requests(event, self._community, bounds)
        except (ValueError, OverflowError) as err:  # JSON, ModelError, TimingError; far dates
            _LOGGER.warning("cannot report on stored event (seq %d): %s", seq, err)
            return None
        return _Tracked(seq, event, bounds, requests)

    # --- telemetry -----------------------------------------------------------------------------

    async def _telemetry(self, event: Event, request: TelemetryRequest, now: float) -> None:
        size = self._fusion.bucket_seconds
        descriptor = request.descriptor
        needs_topology = not (request.scope.whole and descriptor.aggregate)
        places = scope_places(
            request.scope,
            aggregate=descriptor.aggregate,
            community=self._community,
            topology=await self._places() if needs_topology else (),
        )
        if not places:
            return
        key = (event.id, request.topic)
        mark = self._marks.get(key)
        first = math.floor(request.window[0] / size) * size
        closed = math.floor((now - self._fusion.bucket_grace - CLOSE_MARGIN) / size) * size
        if mark is not None and mark.reported_until is not None:
            done = mark.reported_until
        else:
            done = max(first, math.floor((closed - BACKFILL) / size) * size)
        resources = 1 if descriptor.aggregate else sum(len(names) for _, names in places)
        ranges = plan_batches(
            first=first,
            end=request.window[1],
            done=done,
            closed=closed,
            bucket_seconds=size,
            frequency=descriptor.frequency,
            repeat=descriptor.repeat,
            max_buckets=MAX_INTERVALS // max(1, resources),
        )
        for start, stop in ranges[:MAX_POSTS_PER_CHECK]:
            rows = [
                row
                for level, names in places
                for row in await self._ledger.rollup_series(
                    level, names, descriptor.payload_type, start, stop
                )
            ]
            body = telemetry_report(
                event=event,
                client_name=self._client_name,
                community=self._community,
                descriptor=descriptor,
                bucket_seconds=size,
                values=series(rows, descriptor.payload_type, aggregate=descriptor.aggregate),
            )
            if body is not None:
                await self._post(body, "telemetry")
            await self._mark(UpstreamMark(event.id, request.topic, reported_until=stop))

    async def _places(self) -> list[tuple[str, str]]:
        if self._topology is None:
            self._topology = await self._ledger.topology()
        return self._topology

    async def _mark(self, mark: UpstreamMark) -> None:
        await self._ledger.mark_upstream(mark)
        self._marks[mark.event_id, mark.topic] = mark

    # --- responses -----------------------------------------------------------------------------

    async def _update_tallies(self, current: Collection[str]) -> None:
        """Bring each current event's tally up to the newest committed home report."""
        wanted = set(current)
        for event_id in [e for e in self._tallies if e not in wanted]:
            del self._tallies[event_id]
        high = await self._ledger.report_high_water()
        if high < self._high:  # the table was emptied and row ids started again
            self._tallies.clear()
        elif self._tallies and high > self._high:
            ids = sorted(self._tallies)
            for after in range(self._high, high, ROW_PAGE):
                for value in await self._ledger.report_values(
                    ids, after, min(after + ROW_PAGE, high), RESPONSE_TYPES
                ):
                    self._tallies[value.event_id].add(value)
        for event_id in sorted(wanted - self._tallies.keys()):
            self._tallies[event_id] = await self._tally_from_start(event_id, high)
        self._high = high

    async def _tally_from_start(self, event_id: str, until: int) -> ResponseTally:
        tally = ResponseTally()
        after = ("", 0)
        while True:
            upto = await self._ledger.event_report_page(event_id, until, after, ROW_PAGE)
            for value in await self._ledger.event_report_values(
                event_id, until, after, upto, RESPONSE_TYPES
            ):
                tally.add(value)
            if upto is None:
                return tally
            after = upto

    async def _responses(self, tracked: _Tracked, now: float) -> None:
        event = tracked.event
        tally = self._tallies.get(event.id)
        summary = tally.summary() if tally is not None else {}
        if not summary:
            return
        text = json.dumps(summary, sort_keys=True)
        mark = self._marks.get((event.id, RESPONSES_TOPIC))
        if mark is not None and mark.summary == text:
            return
        end = tracked.bounds[1] if tracked.bounds is not None else None
        ended = end is not None and now >= end
        if (
            mark is not None
            and mark.sent_at is not None
            and now - mark.sent_at < self._fusion.bucket_seconds
            and not (ended and not mark.final)
        ):
            return
        body = responses_report(
            event=event,
            client_name=self._client_name,
            community=self._community,
            summary=summary,
            bounds=tracked.bounds,
        )
        await self._post(body, "responses")
        await self._mark(
            UpstreamMark(event.id, RESPONSES_TOPIC, summary=text, sent_at=now, final=ended)
        )
