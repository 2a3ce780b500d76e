"""The pure price logic: the day's prices, the price level and the cheapest window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from custom_components.smart_community.prices import (
    DayPrices,
    PriceLevel,
    PriceSummary,
    PriceWindow,
    WindowError,
    WindowProblem,
    cheapest_window,
    day_prices,
    next_cheapest_window,
    price_level,
    summarise,
)
from custom_components.smart_community.signals import Price, PriceInterval

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _timeline(
    *values: float | None, start: datetime = NOW, step: timedelta = HOUR
) -> tuple[PriceInterval, ...]:
    """Back-to-back intervals of ``step`` from ``start``; None leaves a gap."""
    return tuple(
        PriceInterval(
            start=start + step * index,
            end=start + step * (index + 1),
            price=Price(value=value, currency="CNY", event_id="tou"),
        )
        for index, value in enumerate(values)
        if value is not None
    )


def test_day_prices_weighted_by_time() -> None:
    """Minimum and maximum of the day, the average weighted by how long each price lasts."""
    timeline = (
        *_timeline(0.3, 0.3, 0.3, start=NOW),
        *_timeline(0.9, start=NOW + 3 * HOUR),
    )
    assert day_prices(timeline, NOW, NOW + 4 * HOUR) == DayPrices(
        minimum=0.3, maximum=0.9, average=pytest.approx(0.45)
    )


def test_day_prices_clipped_to_the_day() -> None:
    """Intervals reaching into the day count only with their part inside it."""
    timeline = (
        *_timeline(1.0, start=NOW - HOUR),  # yesterday
        *_timeline(0.2, start=NOW - HOUR / 2, step=HOUR),  # half of it today
        *_timeline(0.6, start=NOW + HOUR / 2),
    )
    today = day_prices(timeline, NOW, NOW + 24 * HOUR)
    assert today == DayPrices(minimum=0.2, maximum=0.6, average=pytest.approx(0.7 / 1.5))


def test_day_prices_open_ended() -> None:
    """A price until further notice counts up to the end of the day."""
    forever = PriceInterval(
        start=NOW, end=None, price=Price(value=0.5, currency=None, event_id="flat")
    )
    assert day_prices([forever], NOW - HOUR, NOW + HOUR) == DayPrices(
        minimum=0.5, maximum=0.5, average=0.5
    )


def test_day_prices_unknown() -> None:
    """No interval inside the day: nothing to say."""
    assert day_prices(_timeline(0.5, start=NOW - 2 * HOUR), NOW, NOW + HOUR) is None


@pytest.mark.parametrize(
    ("price", "level"),
    [
        (0.59, PriceLevel.VERY_CHEAP),
        (0.60, PriceLevel.VERY_CHEAP),
        (0.61, PriceLevel.CHEAP),
        (0.90, PriceLevel.CHEAP),
        (0.91, PriceLevel.NORMAL),
        (1.00, PriceLevel.NORMAL),
        (1.14, PriceLevel.NORMAL),
        (1.15, PriceLevel.EXPENSIVE),
        (1.39, PriceLevel.EXPENSIVE),
        (1.40, PriceLevel.VERY_EXPENSIVE),
        (-0.20, PriceLevel.VERY_CHEAP),
    ],
)
def test_price_level_bounds(price: float, level: PriceLevel) -> None:
    """The bounds are 40 % and 10 % below the average, 15 % and 40 % above it."""
    assert price_level(price, 1.0) is level


def test_price_level_around_zero_and_below() -> None:
    """A zero average compares by sign; a negative one by the distance from it."""
    assert price_level(0.0, 0.0) is PriceLevel.NORMAL
    assert price_level(-0.1, 0.0) is PriceLevel.VERY_CHEAP
    assert price_level(0.1, 0.0) is PriceLevel.VERY_EXPENSIVE
    assert price_level(-0.2, -0.1) is PriceLevel.VERY_CHEAP
    assert price_level(0.0, -0.1) is PriceLevel.VERY_EXPENSIVE


def test_cheapest_window_on_boundaries() -> None:
    """The cheapest stretch of the length, found where a price changes."""
    timeline = _timeline(0.9, 0.5, 0.2, 0.4, 0.8)
    assert cheapest_window(timeline, 2 * HOUR, earliest=NOW) == PriceWindow(
        start=NOW + 2 * HOUR, end=NOW + 4 * HOUR, average=pytest.approx(0.3)
    )


def test_cheapest_window_between_boundaries() -> None:
    """A window shorter than the intervals may end where the cheap stretch ends."""
    timeline = _timeline(0.9, 0.1, 0.5)
    window = cheapest_window(timeline, HOUR / 2, earliest=NOW)
    assert window.start == NOW + HOUR
    assert window.average == pytest.approx(0.1)
    # A window longer than an interval starts or ends where a price changes.
    window = cheapest_window(timeline, 90 * timedelta(minutes=1), earliest=NOW)
    assert window == PriceWindow(
        start=NOW + HOUR, end=NOW + 150 * timedelta(minutes=1), average=pytest.approx(7 / 30)
    )


def test_cheapest_window_earliest_start_off_boundary() -> None:
    """The window may start right at the earliest start, between boundaries."""
    timeline = _timeline(0.1, 0.9, 0.9)
    window = cheapest_window(timeline, HOUR / 2, earliest=NOW + HOUR / 4)
    assert window.start == NOW + HOUR / 4
    assert window.average == pytest.approx(0.1)


def test_cheapest_window_latest_end() -> None:
    """The window must end by the latest end, even where it falls between boundaries."""
    timeline = _timeline(0.9, 0.5, 0.1)
    window = cheapest_window(timeline, HOUR, earliest=NOW, latest=NOW + 2.5 * HOUR)
    assert window == PriceWindow(
        start=NOW + 1.5 * HOUR, end=NOW + 2.5 * HOUR, average=pytest.approx(0.3)
    )


def test_cheapest_window_ties_go_to_the_earliest() -> None:
    """Among equally cheap windows the earliest wins."""
    window = cheapest_window(_timeline(0.3, 0.3, 0.3, 0.3), HOUR, earliest=NOW)
    assert window.start == NOW


def test_cheapest_window_never_spans_a_gap() -> None:
    """Where no price is known, no window goes."""
    timeline = _timeline(0.1, None, 0.5, 0.6)
    window = cheapest_window(timeline, 2 * HOUR, earliest=NOW)
    assert window.start == NOW + 2 * HOUR
    assert window.average == pytest.approx(0.55)


def test_cheapest_window_open_ended() -> None:
    """A price until further notice covers any window after it starts."""
    forever = PriceInterval(
        start=NOW + HOUR, end=None, price=Price(value=0.2, currency=None, event_id="flat")
    )
    timeline = (*_timeline(0.9), forever)
    window = cheapest_window(timeline, 3 * HOUR, earliest=NOW)
    assert window == PriceWindow(start=NOW + HOUR, end=NOW + 4 * HOUR, average=0.2)


@pytest.mark.parametrize(
    ("timeline", "duration", "latest", "problem"),
    [
        (_timeline(0.5), timedelta(0), None, WindowProblem.INVALID_DURATION),
        (_timeline(0.5, 0.5), 2 * HOUR, NOW + HOUR, WindowProblem.INVALID_RANGE),
        ((), HOUR, None, WindowProblem.NO_PRICES),
        (_timeline(0.5, start=NOW - 2 * HOUR), HOUR, None, WindowProblem.NO_PRICES),
        (_timeline(0.5, 0.5), 3 * HOUR, None, WindowProblem.NOT_COVERED),
        (_timeline(0.5, None, 0.5), 2 * HOUR, None, WindowProblem.NOT_COVERED),
    ],
)
def test_cheapest_window_problems(
    timeline: tuple[PriceInterval, ...],
    duration: timedelta,
    latest: datetime | None,
    problem: WindowProblem,
) -> None:
    """Each question without an answer says why."""
    with pytest.raises(WindowError) as raised:
        cheapest_window(timeline, duration, earliest=NOW, latest=latest)
    assert raised.value.problem is problem


def test_next_cheapest_window_not_started() -> None:
    """Before it starts, the next cheapest window is the cheapest one ahead."""
    timeline = _timeline(0.1, 0.9, 0.2, 0.2, 0.9)
    assert next_cheapest_window(timeline, HOUR, NOW) == PriceWindow(
        start=NOW, end=NOW + HOUR, average=0.1
    )
    # Once it has started, without memory of it, the next one ahead is given.
    assert next_cheapest_window(timeline, HOUR, NOW + HOUR / 2) == PriceWindow(
        start=NOW + 2 * HOUR, end=NOW + 3 * HOUR, average=0.2
    )


def test_next_cheapest_window_stays_while_under_way() -> None:
    """A window that has started stays until it ends, at its price now."""
    timeline = _timeline(0.1, 0.9, 0.2, 0.2, 0.9)
    first = next_cheapest_window(timeline, HOUR, NOW)
    assert first is not None
    assert next_cheapest_window(timeline, HOUR, NOW + HOUR / 2, first) == first
    repriced = _timeline(0.3, 0.9, 0.2, 0.2, 0.9)
    assert next_cheapest_window(repriced, HOUR, NOW + HOUR / 2, first) == PriceWindow(
        start=NOW, end=NOW + HOUR, average=0.3
    )
    # Over: the next one.
    following = next_cheapest_window(timeline, HOUR, NOW + HOUR, first)
    assert following == PriceWindow(start=NOW + 2 * HOUR, end=NOW + 3 * HOUR, average=0.2)
    # A window of another length is no memory of this one.
    assert next_cheapest_window(timeline, 2 * HOUR, NOW + HOUR / 2, first) == PriceWindow(
        start=NOW + 2 * HOUR, end=NOW + 4 * HOUR, average=0.2
    )


def test_next_cheapest_window_none() -> None:
    """Without prices covering the length, or with no length, there is none."""
    assert next_cheapest_window(_timeline(0.1), 2 * HOUR, NOW) is None
    assert next_cheapest_window(_timeline(0.1), timedelta(0), NOW) is None


def test_summarise() -> None:
    """The day's prices, the level of the current price, and the next cheapest window."""
    timeline = _timeline(0.2, 0.4, 0.6, 1.2, start=NOW - HOUR)
    summary = summarise(timeline, NOW, day_start=NOW - HOUR, day_end=NOW + 3 * HOUR, window=HOUR)
    assert summary == PriceSummary(
        today=DayPrices(minimum=0.2, maximum=1.2, average=pytest.approx(0.6)),
        level=PriceLevel.CHEAP,
        cheapest_window=PriceWindow(start=NOW, end=NOW + HOUR, average=0.4),
    )
    assert summarise((), NOW, day_start=NOW, day_end=NOW + HOUR, window=HOUR) == PriceSummary()
