"""The rules of inverter power-limit writes, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from custom_components.smart_community.power_limit import (
    LimitAction,
    LimitRules,
    LimitWrite,
    PowerLimitPlanner,
)
from custom_components.smart_community.sunspec import PowerLimitState

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
RULES = LimitRules(
    revert=timedelta(minutes=10),
    refresh=timedelta(minutes=5),
    min_interval=timedelta(seconds=10),
)
HOLD_50 = LimitWrite(action=LimitAction.HOLD, percent=50)
RELEASE = LimitWrite(action=LimitAction.RELEASE, percent=100)


def _device(percent: float, *, enabled: bool) -> PowerLimitState:
    return PowerLimitState(
        percent=percent,
        enabled=enabled,
        revert_seconds=600,
        window_seconds=0,
        ramp_seconds=0,
        scale_factor=-1,
    )


FREE = _device(100, enabled=False)


def test_rules_must_refresh_before_the_limit_lapses() -> None:
    """A refresh at or after the revert time would let the limit lapse."""
    with pytest.raises(ValueError, match="refresh"):
        LimitRules(
            revert=timedelta(minutes=5),
            refresh=timedelta(minutes=5),
            min_interval=RULES.min_interval,
        )
    with pytest.raises(ValueError, match="refresh"):
        LimitRules(
            revert=RULES.revert, refresh=timedelta(seconds=1), min_interval=RULES.min_interval
        )


def test_nothing_without_a_request() -> None:
    """After a restart a limit left on the inverter lapses by its own timer: no write."""
    planner = PowerLimitPlanner(RULES)
    held = _device(30, enabled=True)
    assert planner.due(held, T0) is None
    assert planner.next_check(held, T0) is None


def test_hold_refresh_release() -> None:
    """Written once, left alone while fresh, written again before it lapses, released at 100."""
    planner = PowerLimitPlanner(RULES)
    planner.request(50)
    assert planner.due(FREE, T0) == HOLD_50
    planner.written(HOLD_50, T0)
    held = _device(50, enabled=True)

    # Unchanged: the inverter holds it and it is fresh.
    planner.request(50)
    assert planner.due(held, T0 + timedelta(minutes=1)) is None
    assert planner.next_check(held, T0 + timedelta(minutes=1)) == T0 + RULES.refresh

    # The refresh falls due halfway through the revert timer.
    assert planner.due(held, T0 + RULES.refresh) == HOLD_50
    planner.written(HOLD_50, T0 + RULES.refresh)

    planner.request(100)
    release_at = T0 + RULES.refresh + timedelta(minutes=1)
    assert planner.due(held, release_at) == RELEASE
    planner.written(RELEASE, release_at)
    assert planner.due(FREE, release_at + timedelta(minutes=1)) is None
    assert planner.next_check(FREE, release_at + timedelta(minutes=1)) is None


def test_a_lapsed_limit_is_written_again() -> None:
    """If the inverter dropped the limit (it restarted, its timer ran out), it goes out again."""
    planner = PowerLimitPlanner(RULES)
    planner.request(50)
    planner.written(HOLD_50, T0)
    assert planner.due(FREE, T0 + timedelta(minutes=1)) == HOLD_50
    assert planner.due(_device(80, enabled=True), T0 + timedelta(minutes=1)) == HOLD_50


def test_writes_are_rate_limited_and_the_latest_request_wins() -> None:
    """A request within the minimum interval waits; only the latest one is written."""
    planner = PowerLimitPlanner(RULES)
    planner.request(50)
    planner.written(HOLD_50, T0)
    soon = T0 + timedelta(seconds=3)
    planner.request(40)
    assert planner.due(_device(50, enabled=True), soon) is None
    assert planner.next_check(_device(50, enabled=True), soon) == T0 + RULES.min_interval
    planner.request(30)
    assert planner.due(_device(50, enabled=True), T0 + RULES.min_interval) == LimitWrite(
        action=LimitAction.HOLD, percent=30
    )


def test_full_power_releases_only_what_is_held() -> None:
    """100 % with no limit on the inverter writes nothing; with one, releases it."""
    planner = PowerLimitPlanner(RULES)
    planner.request(100)
    assert planner.due(FREE, T0) is None
    assert planner.due(_device(60, enabled=True), T0) == RELEASE


def test_requests_are_bounded() -> None:
    """A limit is a percentage of the inverter's maximum."""
    planner = PowerLimitPlanner(RULES)
    for percent in (-1, 100.5):
        with pytest.raises(ValueError, match="out of 0-100"):
            planner.request(percent)
    assert planner.target is None
