"""What verified grid signals mean for the home at a moment: price now and next, demand response.

Pure domain logic with no Home Assistant import. Events are split in two kinds: price events carry
a PRICE or EXPORT_PRICE payload; every other event (SIMPLE, IMPORT_CAPACITY_LIMIT, ...) asks for
demand response. Timing follows the OpenADR 3.1 User Guide through ``protocol.timing``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
import sys
from typing import Final

from .protocol import Event, EventPayloadDescriptor, EventPayloadType, Program, Slot, event_slots

PRICE_PAYLOADS: Final = frozenset({EventPayloadType.PRICE, EventPayloadType.EXPORT_PRICE})
# How far ahead the next change is looked for; the periodic resync moves the horizon along.
HORIZON: Final = timedelta(days=7)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReceivedEvent:
    """A verified event and when the home got it (an event may start "now", when received)."""

    event: Event
    received_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Price:
    """An import price per kWh and the event that sets it."""

    value: float
    currency: str | None
    event_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DemandResponse:
    """A stretch of time in which the grid asks for demand response, without a gap."""

    event_id: str
    event_name: str | None
    start: datetime
    end: datetime | None  # None: until further notice


@dataclass(frozen=True, kw_only=True, slots=True)
class Outlook:
    """The signals' meaning at ``at``, and when it next changes."""

    at: datetime
    price: Price | None = None
    next_price_change: datetime | None = None
    next_price: Price | None = None
    demand_response: DemandResponse | None = None
    next_demand_response: DemandResponse | None = None
    next_boundary: datetime | None = None


def payload_types(event: Event) -> frozenset[str]:
    """Every payload type the event carries or describes."""
    carried = {payload.type for interval in event.intervals for payload in interval.payloads}
    described = {descriptor.payload_type for descriptor in event.payload_descriptors or ()}
    return frozenset(carried | described)


def is_price_event(event: Event) -> bool:
    """Whether the event publishes prices rather than asking for demand response."""
    return not PRICE_PAYLOADS.isdisjoint(payload_types(event))


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


def _currency(event: Event, programs: Mapping[str, Program]) -> str | None:
    program = programs.get(event.program_id)
    program_descriptors = program.payload_descriptors if program else None
    for descriptors in (event.payload_descriptors, program_descriptors):
        for descriptor in descriptors or ():
            if (
                isinstance(descriptor, EventPayloadDescriptor)
                and descriptor.payload_type == EventPayloadType.PRICE
                and descriptor.currency
            ):
                return descriptor.currency
    return None


def _future_slots(
    received: ReceivedEvent, now: datetime, horizon: timedelta, split_payload: str | None
) -> Iterator[Slot]:
    for slot in event_slots(
        received.event,
        received_at=received.received_at,
        window_end=now + horizon,
        split_payload=split_payload,
    ):
        if slot.end is None or slot.end > now:
            yield slot


def _asks_for_action(slot: Slot) -> bool:
    # SIMPLE level 0 is the specification's "normal operation": no demand response asked.
    return any(
        not (kind == EventPayloadType.SIMPLE and value == 0) for kind, value in slot.values.items()
    )


def _price_value(slot: Slot) -> float | None:
    value = slot.values.get(EventPayloadType.PRICE)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _price_at(slots: list[_Ranked], moment: datetime) -> Price | None:
    winner = _winner(slots, moment)
    return winner.price if winner else None


def _same_price(first: Price | None, second: Price | None) -> bool:
    if first is None or second is None:
        return first is second
    return (first.value, first.currency) == (second.value, second.currency)


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


def outlook(
    events: Iterable[ReceivedEvent],
    programs: Mapping[str, Program],
    now: datetime,
    *,
    horizon: timedelta = HORIZON,
) -> Outlook:
    """Evaluate verified events at ``now``: what applies, and what changes next, and when."""
    prices: list[_Ranked] = []
    requests: list[_Ranked] = []
    for received in events:
        event = received.event
        rank = _rank(event)
        if is_price_event(event):
            currency = _currency(event, programs)
            for slot in _future_slots(received, now, horizon, EventPayloadType.PRICE):
                if (value := _price_value(slot)) is not None:
                    slot_price = Price(value=value, currency=currency, event_id=event.id)
                    prices.append(_Ranked(rank, slot, event, slot_price))
        else:
            requests.extend(
                _Ranked(rank, slot, event)
                for slot in _future_slots(received, now, horizon, None)
                if _asks_for_action(slot)
            )

    price = _price_at(prices, now)
    next_change: datetime | None = None
    next_price: Price | None = None
    for moment in _boundaries((s.slot for s in prices), now):
        candidate = _price_at(prices, moment)
        if not _same_price(candidate, price):
            next_change, next_price = moment, candidate
            break

    periods = _periods(requests)
    current = next((p for p in periods if p.contains(now)), None)
    upcoming = next((p for p in periods if p.start > now), None)
    boundaries = _boundaries([s.slot for s in (*prices, *requests)], now)
    return Outlook(
        at=now,
        price=price,
        next_price_change=next_change,
        next_price=next_price,
        demand_response=_demand_response(current, now) if current else None,
        next_demand_response=_demand_response(upcoming, now) if upcoming else None,
        next_boundary=boundaries[0] if boundaries else None,
    )
