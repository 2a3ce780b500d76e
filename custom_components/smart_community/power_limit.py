"""When to write an inverter's active power limit: the safety rules, without I/O.

Pure domain logic with no Home Assistant import. Every limit goes out with the inverter's revert
timer, so it lapses by itself if Home Assistant stops; while a limit holds it is written again
before the timer runs out; 100 % releases it; a limit the inverter already holds is not written
again before its refresh is due; and no two writes come closer than a minimum interval (the
latest request waits for its turn instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from .sunspec import PowerLimitState

FULL_POWER: Final = 100.0
# A limit within this many percentage points of what the inverter holds is the same limit:
# the inverter's scale factor rounds what it stores.
_SAME: Final = 0.5


class LimitAction(StrEnum):
    """What a write does."""

    HOLD = "hold"  # set the limit with its revert timer
    RELEASE = "release"  # WMaxLim_Ena off


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitRules:
    """The timing of limit writes."""

    revert: timedelta  # the revert timer written with every limit
    refresh: timedelta  # a held limit is written again this long after the last write
    min_interval: timedelta  # between two writes

    def __post_init__(self) -> None:
        """A refresh must come before the limit lapses, and the interval must allow it."""
        if not self.min_interval <= self.refresh < self.revert:
            raise ValueError("need min_interval <= refresh < revert")


@dataclass(frozen=True, kw_only=True, slots=True)
class LimitWrite:
    """A write that is due now."""

    action: LimitAction
    percent: float  # FULL_POWER for a release


class PowerLimitPlanner:
    """Decides, from the requested limit and what the inverter holds, what to write and when."""

    def __init__(self, rules: LimitRules) -> None:
        """Start without a request: a limit left by an earlier run lapses by its own timer."""
        self.rules = rules
        self._target: float | None = None
        self._last_write: datetime | None = None
        self._last_hold: datetime | None = None

    @property
    def target(self) -> float | None:
        """The requested limit in percent; None until one is requested."""
        return self._target

    def request(self, percent: float) -> None:
        """Ask for a limit; FULL_POWER asks for none."""
        if not 0 <= percent <= FULL_POWER:
            raise ValueError(f"power limit {percent} % out of 0-100")
        self._target = percent

    def due(self, device: PowerLimitState | None, now: datetime) -> LimitWrite | None:
        """The write to make now, if any. ``device``: what the inverter last reported."""
        wanted = self._wanted(device, now)
        if wanted is None or not self._may_write(now):
            return None
        return wanted

    def written(self, write: LimitWrite, now: datetime) -> None:
        """Record a write the inverter accepted."""
        self._last_write = now
        self._last_hold = now if write.action is LimitAction.HOLD else None

    def next_check(self, device: PowerLimitState | None, now: datetime) -> datetime | None:
        """When a write next falls due, if nothing changes before: a refresh or a delayed write."""
        if self._wanted(device, now) is not None:
            return self._earliest_write(now)
        if self._last_hold is not None and self._holding():
            return max(self._last_hold + self.rules.refresh, self._earliest_write(now))
        return None

    def _holding(self) -> bool:
        return self._target is not None and self._target < FULL_POWER

    def _wanted(self, device: PowerLimitState | None, now: datetime) -> LimitWrite | None:
        if self._target is None:
            return None
        if not self._holding():
            if (device is not None and device.enabled) or self._last_hold is not None:
                return LimitWrite(action=LimitAction.RELEASE, percent=FULL_POWER)
            return None
        holds_it = (
            device is not None
            and device.enabled
            and device.percent is not None
            and abs(device.percent - self._target) < _SAME
        )
        fresh = self._last_hold is not None and now < self._last_hold + self.rules.refresh
        if holds_it and fresh:
            return None
        return LimitWrite(action=LimitAction.HOLD, percent=self._target)

    def _may_write(self, now: datetime) -> bool:
        return now >= self._earliest_write(now)

    def _earliest_write(self, now: datetime) -> datetime:
        if self._last_write is None:
            return now
        return max(now, self._last_write + self.rules.min_interval)
