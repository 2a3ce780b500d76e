"""Event and interval timing, as the OpenADR 3.1 User Guide (section 7.3) defines it.

- An interval's start is its own ``intervalPeriod.start``, else the event's for the first
  interval, else the end of the previous interval ("follow immediately").
- A start of ``0001-01-01`` means "now": the moment the client obtained the event.
- A duration of ``P9999Y`` means "forever"; such an interval has no end.
- ``event.duration`` bounds the event's lifespan; when longer than the intervals, they repeat.
- A payload with several values splits its interval into equal sub-intervals.
- ``randomizeStart`` lets each client shift starts by a uniform offset in [-r, +r].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import functools
import random
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Event, Interval, IntervalPeriod, PayloadValue

# The specification's own pattern for durations (openadr3-3.1.0.yaml, components.schemas.duration).
_DURATION = re.compile(
    r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)
FOREVER_YEARS = 9999
# Calendar units have no fixed length; the User Guide advises against months. These are the
# lengths used when they appear anyway.
_YEAR = timedelta(days=365)
_MONTH = timedelta(days=30)
BEGINNING_OF_TIME = datetime(1, 1, 1, tzinfo=UTC)


class TimingError(ValueError):
    """A date-time or duration is not in the form the specification requires."""


def parse_datetime(value: str) -> datetime:
    """Parse an RFC 3339 date-time (or the spec's bare date); naive values are taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as err:
        raise TimingError(f"'{value}' is not an RFC 3339 date-time") from err
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_datetime(value: datetime) -> str:
    """Format as RFC 3339 in UTC with a 'Z' suffix."""
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def format_duration(seconds: float) -> str:
    """An ISO 8601 duration for a number of seconds (``PT5M``, ``PT1H30M``, ``PT0S``)."""
    seconds = max(0.0, seconds)
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    fraction = seconds - whole
    if secs or fraction or text == "PT":
        text += f"{secs + fraction:g}S"
    return text


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed ISO 8601 duration; ``forever`` for the specification's P9999Y."""

    delta: timedelta
    forever: bool = False


def parse_duration(value: str) -> Duration:
    """Parse an ISO 8601 duration of the form the specification's schema allows."""
    if not isinstance(value, str):
        raise TimingError(f"'{value}' is not an ISO 8601 duration such as PT1H")
    return _parse_duration(value)


# The same few durations come in every report and event: parse each once (bounded, so that
# a client sending endless new ones only churns the cache).
@functools.lru_cache(maxsize=512)
def _parse_duration(value: str) -> Duration:
    match = _DURATION.match(value)
    if match is None:
        raise TimingError(f"'{value}' is not an ISO 8601 duration such as PT1H")
    sign, years, months, days, day_unit, hours, minutes, seconds = match.groups()
    if years is not None and int(years) >= FOREVER_YEARS:
        return Duration(timedelta.max, forever=True)
    delta = (
        int(years or 0) * _YEAR
        + int(months or 0) * _MONTH
        + timedelta(
            days=int(days or 0) * (7 if day_unit == "W" else 1),
            hours=int(hours or 0),
            minutes=int(minutes or 0),
            seconds=float(seconds or 0),
        )
    )
    return Duration(-delta if sign else delta)


def random_start_offset(
    period: IntervalPeriod | None, rng: random.Random | None = None
) -> timedelta:
    """A uniform offset within +/- the period's randomizeStart (zero when it has none)."""
    if period is None or not period.randomize_start:
        return timedelta(0)
    bound = abs(parse_duration(period.randomize_start).delta).total_seconds()
    return timedelta(seconds=(rng or random.SystemRandom()).uniform(-bound, bound))


@dataclass(frozen=True, slots=True)
class Slot:
    """One resolved (sub-)interval: when it applies and what it carries."""

    interval_id: int
    start: datetime
    end: datetime | None  # None: open-ended ("forever")
    values: dict[str, PayloadValue]

    def contains(self, moment: datetime) -> bool:
        """Whether the moment falls in [start, end)."""
        return self.start <= moment and (self.end is None or moment < self.end)


def _resolve(
    intervals: Sequence[Interval],
    period: IntervalPeriod | None,
    received_at: datetime,
    offset: timedelta,
) -> list[tuple[Interval, datetime, datetime | None]]:
    # Every absolute start moves by the client's offset; intervals that follow the previous one
    # move with it, so the whole set shifts as one (User Guide 7.3, randomizeStart).
    resolved: list[tuple[Interval, datetime, datetime | None]] = []
    default_duration = parse_duration(period.duration) if period and period.duration else None
    previous_end: datetime | None = _start_of(period, received_at) + offset
    for interval in intervals:
        own = interval.interval_period
        if own is not None and own.start is not None and own.start != BEGINNING_OF_TIME:
            start = own.start + offset
        elif previous_end is None:
            break  # follows an interval that never ends
        else:
            start = previous_end
        duration = parse_duration(own.duration) if own and own.duration else default_duration
        if duration is None:
            raise TimingError(f"interval {interval.id} has no duration, nor has its event")
        end = None if duration.forever else start + duration.delta
        resolved.append((interval, start, end))
        previous_end = end
    return resolved


def _start_of(period: IntervalPeriod | None, received_at: datetime) -> datetime:
    if period is None or period.start is None or period.start == BEGINNING_OF_TIME:
        return received_at
    return period.start


def event_slots(
    event: Event,
    *,
    received_at: datetime,
    window_end: datetime,
    offset: timedelta = timedelta(0),
    split_payload: str | None = None,
) -> Iterator[Slot]:
    """Yield the event's slots in time order, up to window_end.

    ``split_payload`` names a payload type whose several values split each interval into
    equal sub-intervals (prices are published that way). ``offset`` is the client's
    randomizeStart shift.
    """
    resolved = _resolve(event.intervals, event.interval_period, received_at, offset)
    if not resolved:
        return
    first_start = resolved[0][1]
    span_end = resolved[-1][2]
    lifespan_end: datetime | None = span_end
    if event.duration:
        lifespan = parse_duration(event.duration)
        lifespan_end = None if lifespan.forever else first_start + lifespan.delta
    period = (span_end - first_start) if span_end is not None else None
    repeat = 0
    while True:
        shift = period * repeat if period else timedelta(0)
        for interval, base_start, base_end in resolved:
            start = base_start + shift
            end = base_end + shift if base_end else None
            if start >= window_end or (lifespan_end is not None and start >= lifespan_end):
                return
            if lifespan_end is not None and (end is None or end > lifespan_end):
                end = lifespan_end
            yield from _split(interval, start, end, split_payload)
        repeat += 1
        if not period or (
            lifespan_end is not None and first_start + period * repeat >= lifespan_end
        ):
            return


def _split(
    interval: Interval, start: datetime, end: datetime | None, split_payload: str | None
) -> Iterator[Slot]:
    values = {p.type: p.values[0] for p in interval.payloads if p.values}
    multi = next((p.values for p in interval.payloads if p.type == split_payload), None)
    if split_payload is None or multi is None or len(multi) <= 1 or end is None:
        yield Slot(interval.id, start, end, values)
        return
    step = (end - start) / len(multi)
    for index, value in enumerate(multi):
        sub_end = end if index == len(multi) - 1 else start + step * (index + 1)
        yield Slot(interval.id, start + step * index, sub_end, {**values, split_payload: value})


def event_window(event: Event, *, received_at: datetime) -> tuple[datetime, datetime | None] | None:
    """The event's lifespan: start of the first interval to the end of its last (None: forever)."""
    resolved = _resolve(event.intervals, event.interval_period, received_at, timedelta(0))
    if not resolved:
        return None
    start = resolved[0][1]
    end = resolved[-1][2]
    if event.duration:
        lifespan = parse_duration(event.duration)
        end = None if lifespan.forever else start + lifespan.delta
    return start, end
