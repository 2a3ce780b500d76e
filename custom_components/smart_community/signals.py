"""What verified signals mean for the home at a moment: prices, demand response, limits, alerts.

Pure domain logic with no Home Assistant import. What an event is for follows from its payloads:

- a **price event** carries a PRICE or EXPORT_PRICE payload;
- a **demand-response event** is any other event of the grid's programs that asks for action
  in some interval: SIMPLE above 0 ("normal operation" is 0), or an IMPORT_CAPACITY_LIMIT or
  EXPORT_CAPACITY_LIMIT of an event that has an end. Events of the community's own program
  (``X_COMMUNITY``: the grid connection it granted, an EV charging share, a fault notice) are
  not demand response, nor are standing limits (``P9999Y``, a grid connection's grant) nor
  alerts (``ALERT_*``);
- limits are limits whoever sets them and for however long: the import, export and EV
  charging limits in force come from every event that carries them;
- an **alert** is an interval carrying an ``ALERT_*`` payload, its value the text to show; it is
  in force during its interval, and upcoming from when it is announced (a planned outage is
  announced ahead of it).

Timing follows the OpenADR 3.1 User Guide through ``protocol.timing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
import heapq
import sys
from typing import Final

from .protocol import (
    Event,
    EventPayloadDescriptor,
    EventPayloadType,
    Program,
    Slot,
    event_slots,
    event_window,
)

PRICE_PAYLOADS: Final = frozenset({EventPayloadType.PRICE, EventPayloadType.EXPORT_PRICE})
CAPACITY_LIMITS: Final = frozenset(
    {EventPayloadType.IMPORT_CAPACITY_LIMIT, EventPayloadType.EXPORT_CAPACITY_LIMIT}
)
# The program the community signs its own events in, under the grid's delegation.
COMMUNITY_PROGRAM: Final = "X_COMMUNITY"
# The home's share (kW) of its transformer's headroom for EV charging, set by the community.
EV_CHARGING_LIMIT: Final = "X_EV_CHARGING_LIMIT"
ALERT_PREFIX: Final = "ALERT_"
# How far ahead the next change is looked for; the periodic resync moves the horizon along.
HORIZON: Final = timedelta(days=7)
# Prices are per kWh; the Energy dashboard reads "<currency>/kWh" as a price unit.
PER_KILOWATT_HOUR: Final = "kWh"
# Capacity limits are shown in kW; these are the other units a payload descriptor may name.
_TO_KILOWATT: Final = {"W": 0.001, "KW": 1.0, "MW": 1000.0}


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceivedEvent:
    """A verified event and when the home got it (an event may start "now", when received)."""

    event: Event
    received_at: datetime
    # Who signed it: the grid, or the community (community:<c>) under the grid's delegation.
    issuer: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """A price per kWh and the event that sets it."""

    value: float
    currency: str | None
    event_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceInterval:
    """A stretch of time at one price, as the winning price event sets it."""

    start: datetime
    end: datetime | None  # None: until further notice
    price: Price


@dataclass(frozen=True, kw_only=True, slots=True)
class DemandResponse:
    """A stretch of time in which the grid asks for demand response, without a gap."""

    event_id: str
    event_name: str | None
    start: datetime
    end: datetime | None  # None: until further notice


@dataclass(frozen=True, kw_only=True, slots=True)
class DemandResponsePeriod:
    """One demand-response event, or one gapless stretch of it, as a resident sees it."""

    event_id: str
    event_name: str | None
    program_id: str
    start: datetime
    end: datetime | None  # None: until further notice
    level: int | None  # the highest SIMPLE level (0-3) it asks for; None without one


class ChangeKind(StrEnum):
    """What happened to a demand-response event."""

    NEW = "new"
    MODIFIED = "modified"
    CANCELLED = "cancelled"


@dataclass(frozen=True, kw_only=True, slots=True)
class DemandResponseChange:
    """A demand-response event that appeared, changed or was cancelled."""

    kind: ChangeKind
    event: DemandResponsePeriod


class AlertKind(StrEnum):
    """The alerts OpenADR 3.1 defines (payload ``ALERT_<KIND>``), the most urgent first."""

    GRID_EMERGENCY = "grid_emergency"
    BLACK_START = "black_start"
    POSSIBLE_OUTAGE = "possible_outage"
    FIRE = "fire"
    TSUNAMI = "tsunami"
    WIND = "wind"
    FREEZING = "freezing"
    FLEX_ALERT = "flex_alert"
    AIR_QUALITY = "air_quality"
    OTHER = "other"  # ALERT_OTHER, and any ALERT_* the specification does not name


# Alerts of a risk to the supply itself, or to life: shown as errors rather than warnings.
URGENT_ALERTS: Final = frozenset(
    {
        AlertKind.GRID_EMERGENCY,
        AlertKind.BLACK_START,
        AlertKind.POSSIBLE_OUTAGE,
        AlertKind.FIRE,
        AlertKind.TSUNAMI,
    }
)
_URGENCY: Final = {kind: rank for rank, kind in enumerate(AlertKind)}


def alert_kind(payload_type: str) -> AlertKind | None:
    """The kind of alert a payload type carries; None for a payload that is no alert."""
    if not payload_type.startswith(ALERT_PREFIX):
        return None
    try:
        return AlertKind(payload_type.removeprefix(ALERT_PREFIX).lower())
    except ValueError:
        return AlertKind.OTHER


@dataclass(frozen=True, kw_only=True, slots=True)
class Alert:
    """A notice in force: its kind and text, the event that carries it, and who signed it."""

    kind: AlertKind
    message: str
    event_id: str
    issuer: str | None
    start: datetime
    end: datetime | None  # None: until withdrawn


@dataclass(frozen=True, kw_only=True, slots=True)
class Outlook:
    """The signals' meaning at ``at``, and when it next changes."""

    at: datetime
    price: Price | None = None
    next_price_change: datetime | None = None
    next_price: Price | None = None
    export_price: Price | None = None
    # Every known interval from the start of the evaluation window on, in time order.
    price_forecast: tuple[PriceInterval, ...] = ()
    export_price_forecast: tuple[PriceInterval, ...] = ()
    demand_response: DemandResponse | None = None
    next_demand_response: DemandResponse | None = None
    import_limit: float | None = None  # kW
    export_limit: float | None = None  # kW
    ev_charging_limit: float | None = None  # kW: the home's EV charging share
    # The alerts in force, the most urgent (then the latest) first.
    alerts: tuple[Alert, ...] = ()
    # The alerts announced for later (within the horizon), the soonest (then most urgent) first.
    upcoming_alerts: tuple[Alert, ...] = ()
    next_boundary: datetime | None = None


def payload_types(event: Event) -> frozenset[str]:
    """Every payload type the event carries or describes."""
    carried = {payload.type for interval in event.intervals for payload in interval.payloads}
    described = {descriptor.payload_type for descriptor in event.payload_descriptors or ()}
    return frozenset(carried | described)


def is_price_event(event: Event) -> bool:
    """Whether the event publishes prices rather than asking for demand response."""
    return not PRICE_PAYLOADS.isdisjoint(payload_types(event))


def _may_ask(event: Event) -> bool:
    """Whether the event may ask for demand response at all: the grid's, and no prices."""
    return event.program_id != COMMUNITY_PROGRAM and not is_price_event(event)


def _standing(event: Event, received_at: datetime) -> bool:
    """Whether the event holds until further notice (P9999Y): a standing limit, no request."""
    window = event_window(event, received_at=received_at)
    return window is not None and window[1] is None


def _positive(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def is_demand_response(event: Event, *, received_at: datetime) -> bool:
    """Whether the event asks for demand response in some interval (see the module's doc)."""
    if not _may_ask(event):
        return False
    standing = _standing(event, received_at)
    return any(
        (payload.type == EventPayloadType.SIMPLE and any(_positive(v) for v in payload.values))
        or (payload.type in CAPACITY_LIMITS and not standing)
        for interval in event.intervals
        for payload in interval.payloads
    )


@dataclass(frozen=True, slots=True)
class _Ranked:
    """A slot of an event, with the event's precedence over others covering the same time."""

    rank: tuple[int, float]
    slot: Slot
    event: Event
    price: Price | None = None


def _rank(event: Event) -> tuple[int, float]:
    # A lower priority number wins (OpenADR 3.1); among equals, the latest publication.
    priority = event.priority if event.priority is not None else sys.maxsize
    return priority, -event.modification_date_time.timestamp()


def _winner(slots: Iterable[_Ranked], moment: datetime) -> _Ranked | None:
    return min((s for s in slots if s.slot.contains(moment)), key=lambda s: s.rank, default=None)


def _descriptors(
    event: Event, programs: Mapping[str, Program], payload_type: str
) -> Iterator[EventPayloadDescriptor]:
    """The event's descriptors of a payload type, then its program's."""
    program = programs.get(event.program_id)
    program_descriptors = program.payload_descriptors if program else None
    for descriptors in (event.payload_descriptors, program_descriptors):
        for descriptor in descriptors or ():
            if (
                isinstance(descriptor, EventPayloadDescriptor)
                and descriptor.payload_type == payload_type
            ):
                yield descriptor


def _currency(event: Event, programs: Mapping[str, Program], payload_type: str) -> str | None:
    # An export price in another currency than the import price would say so; else it is the same.
    for kind in (payload_type, EventPayloadType.PRICE):
        for descriptor in _descriptors(event, programs, kind):
            if descriptor.currency:
                return descriptor.currency
    return None


def _slots_after(
    received: ReceivedEvent, since: datetime, window_end: datetime, split_payload: str | None
) -> Iterator[Slot]:
    for slot in event_slots(
        received.event,
        received_at=received.received_at,
        window_end=window_end,
        split_payload=split_payload,
    ):
        if slot.end is None or slot.end > since:
            yield slot


def _asks_for_action(slot: Slot, *, standing: bool) -> bool:
    """Whether a slot of a grid event asks for demand response (SIMPLE 0 is normal operation)."""
    if _positive(slot.values.get(EventPayloadType.SIMPLE)):
        return True
    return not standing and not CAPACITY_LIMITS.isdisjoint(slot.values)


def _number(slot: Slot, payload_type: str) -> float | None:
    value = slot.values.get(payload_type)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _price_slots(
    events: Iterable[ReceivedEvent],
    programs: Mapping[str, Program],
    payload_type: str,
    since: datetime,
    window_end: datetime,
) -> list[_Ranked]:
    slots: list[_Ranked] = []
    for received in events:
        event = received.event
        currency = _currency(event, programs, payload_type)
        for slot in _slots_after(received, since, window_end, payload_type):
            if (value := _number(slot, payload_type)) is not None:
                price = Price(value=value, currency=currency, event_id=event.id)
                slots.append(_Ranked(_rank(event), slot, event, price))
    return slots


def _timeline(slots: list[_Ranked], since: datetime) -> tuple[PriceInterval, ...]:
    """The price that applies over time: the winning slot between consecutive boundaries.

    A sweep over the boundaries with the slots under way in a heap by precedence, so that a
    week of quarter-hour prices costs no more than sorting them.
    """
    by_start = sorted(slots, key=lambda s: s.slot.start)
    moments = sorted(
        {moment for s in slots for moment in (s.slot.start, s.slot.end) if moment is not None}
    )
    under_way: list[tuple[tuple[int, float], int, _Ranked]] = []
    pieces: list[tuple[_Ranked, datetime, datetime | None]] = []
    opened = 0
    for index, moment in enumerate(moments):
        while opened < len(by_start) and by_start[opened].slot.start <= moment:
            heapq.heappush(under_way, (by_start[opened].rank, opened, by_start[opened]))
            opened += 1
        while under_way and not under_way[0][2].slot.contains(moment):
            heapq.heappop(under_way)  # over: slots never apply again once they have ended
        if not under_way:
            continue
        winner = under_way[0][2]
        # After the last boundary only an open-ended slot still applies.
        end = moments[index + 1] if index + 1 < len(moments) else None
        if pieces and pieces[-1][0] is winner and pieces[-1][2] == moment:
            pieces[-1] = (winner, pieces[-1][1], end)
        else:
            pieces.append((winner, moment, end))
    return tuple(
        PriceInterval(start=start, end=end, price=winner.price)
        for winner, start, end in pieces
        if winner.price is not None and (end is None or end > since)
    )


def price_at(timeline: Sequence[PriceInterval], moment: datetime) -> Price | None:
    """The price of the interval that contains the moment, if any."""
    for interval in timeline:
        if interval.start <= moment and (interval.end is None or moment < interval.end):
            return interval.price
    return None


def price_unit(forecast: Iterable[PriceInterval], default_currency: str) -> str:
    """The unit of a forecast's prices: the grid's currency per kWh, else the default one's."""
    currency = next((i.price.currency for i in forecast if i.price.currency), default_currency)
    return f"{currency}/{PER_KILOWATT_HOUR}"


def _same_price(first: Price | None, second: Price | None) -> bool:
    if first is None or second is None:
        return first is second
    return (first.value, first.currency) == (second.value, second.currency)


def _next_change(
    timeline: Sequence[PriceInterval], now: datetime
) -> tuple[datetime | None, Price | None]:
    """When the price next differs from the current one (no price is a price too), and to what."""
    current = price_at(timeline, now)
    edge = now  # the current price holds up to here
    for interval in timeline:
        if interval.end is not None and interval.end <= now:
            continue
        if interval.start > edge and current is not None:
            return edge, None  # a gap: no price from there on
        if interval.start > now and not _same_price(interval.price, current):
            return interval.start, interval.price
        if interval.end is None:
            return None, None  # this price holds for good
        edge = interval.end
    # Where the known prices end, so does the current one.
    return (edge, None) if current is not None else (None, None)


def _boundaries(slots: Iterable[Slot], now: datetime) -> list[datetime]:
    moments = {moment for slot in slots for moment in (slot.start, slot.end) if moment is not None}
    return sorted(moment for moment in moments if moment > now)


@dataclass(slots=True)
class _Period:
    start: datetime
    end: datetime | None
    members: list[_Ranked]

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


def _periods(slots: list[_Ranked]) -> list[_Period]:
    """Merge overlapping and back-to-back demand-response slots into gapless periods."""
    periods: list[_Period] = []
    for ranked in sorted(slots, key=lambda s: s.slot.start):
        last = periods[-1] if periods else None
        if last is not None and (last.end is None or ranked.slot.start <= last.end):
            last.members.append(ranked)
            if last.end is not None:
                last.end = None if ranked.slot.end is None else max(last.end, ranked.slot.end)
        else:
            periods.append(_Period(ranked.slot.start, ranked.slot.end, [ranked]))
    return periods


def _demand_response(period: _Period, moment: datetime) -> DemandResponse:
    lead = _winner(period.members, moment)
    if lead is None:  # a period not yet started: the event that opens it
        lead = min(
            (m for m in period.members if m.slot.start == period.start), key=lambda m: m.rank
        )
    return DemandResponse(
        event_id=lead.event.id,
        event_name=lead.event.event_name,
        start=period.start,
        end=period.end,
    )


def _limit(
    requests: list[_Ranked], programs: Mapping[str, Program], payload_type: str, now: datetime
) -> float | None:
    """The capacity limit in kW that the winning event carrying it sets now."""
    carrying = [r for r in requests if _number(r.slot, payload_type) is not None]
    if (winner := _winner(carrying, now)) is None or (
        value := _number(winner.slot, payload_type)
    ) is None:
        return None
    units = next(
        (d.units for d in _descriptors(winner.event, programs, payload_type) if d.units), "KW"
    )
    return value * _TO_KILOWATT.get(units.upper(), 1.0)


def outlook(
    events: Iterable[ReceivedEvent],
    programs: Mapping[str, Program],
    now: datetime,
    *,
    since: datetime | None = None,
    horizon: timedelta = HORIZON,
) -> Outlook:
    """Evaluate verified events at ``now``: what applies, and what changes next, and when.

    Price forecasts start at ``since`` (default ``now``), so that earlier intervals of the
    day still count towards the day's statistics.
    """
    since = now if since is None else min(since, now)
    window_end = now + horizon
    price_events: list[ReceivedEvent] = []
    others: list[_Ranked] = []  # every slot of the events that are not prices
    requests: list[_Ranked] = []  # the slots among them that ask for demand response
    alerts: list[Alert] = []
    announced: list[Alert] = []
    for received in events:
        event = received.event
        if is_price_event(event):
            price_events.append(received)
            continue
        rank = _rank(event)
        may_ask = _may_ask(event)
        standing = _standing(event, received.received_at)
        for slot in _slots_after(received, now, window_end, None):
            ranked = _Ranked(rank, slot, event)
            others.append(ranked)
            if may_ask and _asks_for_action(slot, standing=standing):
                requests.append(ranked)
            if slot.contains(now):
                alerts.extend(_alerts_of(slot, received))
            elif slot.start > now:
                announced.extend(_alerts_of(slot, received))
    prices = _price_slots(price_events, programs, EventPayloadType.PRICE, since, window_end)
    exports = _price_slots(price_events, programs, EventPayloadType.EXPORT_PRICE, since, window_end)
    forecast = _timeline(prices, since)
    export_forecast = _timeline(exports, since)
    next_change, next_price = _next_change(forecast, now)

    periods = _periods(requests)
    current = next((p for p in periods if p.contains(now)), None)
    upcoming = next((p for p in periods if p.start > now), None)
    boundaries = _boundaries([s.slot for s in (*prices, *exports, *others)], now)
    return Outlook(
        at=now,
        price=price_at(forecast, now),
        next_price_change=next_change,
        next_price=next_price,
        export_price=price_at(export_forecast, now),
        price_forecast=forecast,
        export_price_forecast=export_forecast,
        demand_response=_demand_response(current, now) if current else None,
        next_demand_response=_demand_response(upcoming, now) if upcoming else None,
        import_limit=_limit(others, programs, EventPayloadType.IMPORT_CAPACITY_LIMIT, now),
        export_limit=_limit(others, programs, EventPayloadType.EXPORT_CAPACITY_LIMIT, now),
        ev_charging_limit=_limit(others, programs, EV_CHARGING_LIMIT, now),
        alerts=tuple(
            sorted(
                alerts,
                key=lambda a: (_URGENCY[a.kind], -a.start.timestamp(), a.event_id, a.kind),
            )
        ),
        upcoming_alerts=tuple(
            sorted(announced, key=lambda a: (a.start, _URGENCY[a.kind], a.event_id, a.kind))
        ),
        next_boundary=boundaries[0] if boundaries else None,
    )


def _alerts_of(slot: Slot, received: ReceivedEvent) -> Iterator[Alert]:
    """The alerts a slot carries; the text is the payload's, else the event's name."""
    event = received.event
    for payload_type, value in slot.values.items():
        if (kind := alert_kind(payload_type)) is None:
            continue
        text = value.strip() if isinstance(value, str) else ""
        yield Alert(
            kind=kind,
            message=text or event.event_name or event.id,
            event_id=event.id,
            issuer=received.issuer,
            start=slot.start,
            end=slot.end,
        )


def _level(values: Iterable[object]) -> int | None:
    levels = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return max(levels, default=None)


def describe_event(received: ReceivedEvent) -> DemandResponsePeriod:
    """A demand-response event as a whole: its lifespan and the highest level it asks for."""
    event = received.event
    window = event_window(event, received_at=received.received_at)
    start, end = window if window is not None else (received.received_at, None)
    return DemandResponsePeriod(
        event_id=event.id,
        event_name=event.event_name,
        program_id=event.program_id,
        start=start,
        end=end,
        level=_level(
            value
            for interval in event.intervals
            for payload in interval.payloads
            if payload.type == EventPayloadType.SIMPLE
            for value in payload.values
        ),
    )


def demand_response_periods(
    events: Iterable[ReceivedEvent], since: datetime, until: datetime
) -> list[DemandResponsePeriod]:
    """Each demand-response event's gapless stretches that ask for action, in [since, until).

    Unlike the merged stretches of the outlook, these stay per event, so that a calendar
    shows every event the grid announced, under its own name.
    """
    periods: list[DemandResponsePeriod] = []
    for received in events:
        event = received.event
        if not _may_ask(event):
            continue
        standing = _standing(event, received.received_at)
        stretch: list[Slot] = []
        for slot in _slots_after(received, since, until, None):
            if not _asks_for_action(slot, standing=standing):
                continue
            if stretch and stretch[-1].end is not None and slot.start > stretch[-1].end:
                periods.append(_stretch(event, stretch))
                stretch = []
            stretch.append(slot)
        if stretch:
            periods.append(_stretch(event, stretch))
    return sorted(periods, key=lambda period: (period.start, period.event_id))


def _stretch(event: Event, slots: list[Slot]) -> DemandResponsePeriod:
    return DemandResponsePeriod(
        event_id=event.id,
        event_name=event.event_name,
        program_id=event.program_id,
        start=slots[0].start,
        end=slots[-1].end,
        level=_level(slot.values.get(EventPayloadType.SIMPLE) for slot in slots),
    )
