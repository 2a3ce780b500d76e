"""What the known prices say: the day's range and average, the price level, the cheapest window.

Pure domain logic with no Home Assistant import. It works on the price timeline that
``signals.outlook`` builds: intervals in time order that do not overlap, possibly with gaps
where no price is known.

The price level compares a price with the time-weighted average of the day's known prices:
40 % or more below it is very cheap, 10 % or more below is cheap, 15 % or more above is
expensive, 40 % or more above is very expensive, and anything between is normal.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
import math
from typing import Final

from .signals import PriceInterval, price_at


class PriceLevel(StrEnum):
    """How a price compares with the day's average."""

    VERY_CHEAP = "very_cheap"
    CHEAP = "cheap"
    NORMAL = "normal"
    EXPENSIVE = "expensive"
    VERY_EXPENSIVE = "very_expensive"


# Deviations from the day's average, relative to it, at which the level changes.
VERY_EXPENSIVE_FROM: Final = 0.40
EXPENSIVE_FROM: Final = 0.15
CHEAP_FROM: Final = -0.10
VERY_CHEAP_FROM: Final = -0.40


@dataclass(frozen=True, kw_only=True, slots=True)
class DayPrices:
    """The known prices of one day."""

    minimum: float
    maximum: float
    average: float  # weighted by how long each price applies


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceWindow:
    """A stretch of time and its time-weighted average price."""

    start: datetime
    end: datetime
    average: float


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceSummary:
    """The day's prices, the level of the current one, and the next cheapest window."""

    today: DayPrices | None = None
    level: PriceLevel | None = None
    cheapest_window: PriceWindow | None = None


class WindowProblem(StrEnum):
    """Why no cheapest window can be given."""

    INVALID_DURATION = "invalid_duration"
    INVALID_RANGE = "invalid_range"
    NO_PRICES = "no_prices"
    NOT_COVERED = "window_not_covered"


class WindowError(ValueError):
    """No window answers the question; ``problem`` says why."""

    def __init__(self, problem: WindowProblem) -> None:
        """Carry the reason."""
        super().__init__(problem.value)
        self.problem = problem


def day_prices(
    timeline: Iterable[PriceInterval], start: datetime, end: datetime
) -> DayPrices | None:
    """Minimum, maximum and time-weighted average of the prices known in [start, end)."""
    values: list[float] = []
    weighted = 0.0
    covered = 0.0
    for interval in timeline:
        overlap_start = max(interval.start, start)
        overlap_end = end if interval.end is None else min(interval.end, end)
        if overlap_end <= overlap_start:
            continue
        seconds = (overlap_end - overlap_start).total_seconds()
        values.append(interval.price.value)
        weighted += interval.price.value * seconds
        covered += seconds
    if not values:
        return None
    return DayPrices(minimum=min(values), maximum=max(values), average=weighted / covered)


def price_level(price: float, average: float) -> PriceLevel:
    """The level of a price against an average (see the module's description)."""
    if average == 0:
        if price == 0:
            return PriceLevel.NORMAL
        return PriceLevel.VERY_CHEAP if price < 0 else PriceLevel.VERY_EXPENSIVE
    # Rounded, so that a price exactly 10 % below the average is cheap despite binary floats.
    deviation = round((price - average) / abs(average), 9)
    if deviation >= VERY_EXPENSIVE_FROM:
        return PriceLevel.VERY_EXPENSIVE
    if deviation >= EXPENSIVE_FROM:
        return PriceLevel.EXPENSIVE
    if deviation > CHEAP_FROM:
        return PriceLevel.NORMAL
    if deviation > VERY_CHEAP_FROM:
        return PriceLevel.CHEAP
    return PriceLevel.VERY_CHEAP


class _Coverage:
    """The timeline as cumulative cost, so the average over any stretch is two look-ups."""

    def __init__(self, timeline: Iterable[PriceInterval]) -> None:
        self._pieces = sorted(timeline, key=lambda interval: interval.start)
        self._starts = [piece.start for piece in self._pieces]
        # Per piece: its run of back-to-back pieces, and the cost from the run's start to its own.
        self._runs: list[int] = []
        self._before: list[float] = []
        run, cost = 0, 0.0
        for index, piece in enumerate(self._pieces):
            if index and self._pieces[index - 1].end != piece.start:
                run, cost = run + 1, 0.0
            self._runs.append(run)
            self._before.append(cost)
            if piece.end is not None:
                cost += piece.price.value * (piece.end - piece.start).total_seconds()

    def known_after(self, moment: datetime) -> bool:
        """Whether any price applies after the moment."""
        return any(piece.end is None or piece.end > moment for piece in self._pieces)

    def _locate(self, moment: datetime, *, closing: bool) -> int | None:
        # Opening moments belong to [start, end), closing ones to (start, end].
        index = (bisect_left if closing else bisect_right)(self._starts, moment) - 1
        if index < 0:
            return None
        end = self._pieces[index].end
        if end is None or (moment <= end if closing else moment < end):
            return index
        return None

    def _cost(self, index: int, moment: datetime) -> float:
        piece = self._pieces[index]
        return self._before[index] + piece.price.value * (moment - piece.start).total_seconds()

    def average(self, start: datetime, end: datetime) -> float | None:
        """The average price over [start, end), if prices are known all the way through."""
        first = self._locate(start, closing=False)
        last = self._locate(end, closing=True)
        if first is None or last is None or self._runs[first] != self._runs[last]:
            return None
        return (self._cost(last, end) - self._cost(first, start)) / (end - start).total_seconds()

    def candidates(self, duration: timedelta) -> set[datetime]:
        """Starts at which the average over ``duration`` can be lowest.

        The average is piecewise linear in the start, so its minimum lies where the window's
        start or end meets a price boundary.
        """
        boundaries = {m for p in self._pieces for m in (p.start, p.end) if m is not None}
        return boundaries | {moment - duration for moment in boundaries}

    def cheapest(self, starts: Iterable[datetime], duration: timedelta) -> PriceWindow | None:
        """The window of lowest average among the starts; the earliest among equals."""
        best: PriceWindow | None = None
        for start in sorted(starts):
            average = self.average(start, start + duration)
            if average is None:
                continue
            if best is None or (average < best.average and not math.isclose(average, best.average)):
                best = PriceWindow(start=start, end=start + duration, average=average)
        return best


def cheapest_window(
    timeline: Sequence[PriceInterval],
    duration: timedelta,
    *,
    earliest: datetime,
    latest: datetime | None = None,
) -> PriceWindow:
    """The cheapest window of ``duration`` that starts at ``earliest`` or later and ends by
    ``latest`` (default: as far as prices are known); raises WindowError when there is none."""
    if duration <= timedelta(0):
        raise WindowError(WindowProblem.INVALID_DURATION)
    if latest is not None and latest - earliest < duration:
        raise WindowError(WindowProblem.INVALID_RANGE)
    coverage = _Coverage(timeline)
    if not coverage.known_after(earliest):
        raise WindowError(WindowProblem.NO_PRICES)
    starts = {earliest} | {start for start in coverage.candidates(duration) if start >= earliest}
    if latest is not None:
        starts = {start for start in starts | {latest - duration} if start + duration <= latest}
    if (best := coverage.cheapest(starts, duration)) is None:
        raise WindowError(WindowProblem.NOT_COVERED)
    return best


def next_cheapest_window(
    timeline: Sequence[PriceInterval],
    duration: timedelta,
    now: datetime,
    previous: PriceWindow | None = None,
) -> PriceWindow | None:
    """The cheapest window of ``duration`` that has not started; once started, it stays until
    it ends (``previous`` is the one given before), so that automations can act on its start.

    Windows start where a price changes, or end where one does; between two such moments
    the answer therefore stays the same.
    """
    if duration <= timedelta(0):
        return None
    coverage = _Coverage(timeline)
    if (
        previous is not None
        and previous.end - previous.start == duration
        and previous.start <= now < previous.end
        and (average := coverage.average(previous.start, previous.end)) is not None
    ):
        return PriceWindow(start=previous.start, end=previous.end, average=average)
    return coverage.cheapest(
        (start for start in coverage.candidates(duration) if start >= now), duration
    )


def summarise(
    timeline: Sequence[PriceInterval],
    now: datetime,
    *,
    day_start: datetime,
    day_end: datetime,
    window: timedelta,
    previous_window: PriceWindow | None = None,
) -> PriceSummary:
    """The day's prices, the current price's level and the next cheapest window of ``window``."""
    today = day_prices(timeline, day_start, day_end)
    price = price_at(timeline, now)
    return PriceSummary(
        today=today,
        level=price_level(price.value, today.average) if price and today else None,
        cheapest_window=next_cheapest_window(timeline, window, now, previous_window),
    )
