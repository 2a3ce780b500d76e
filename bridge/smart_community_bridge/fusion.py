"""Fusion of home telemetry: readings out of reports, rolled up per transformer, feeder, community.

Pure domain code (no I/O): the ingest path turns each report into readings and folds them into
time buckets at every level of the topology; storage and scheduling live elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from smart_community_protocol import Placement, ReportRequest, parse_duration

# Payload types whose values are numbers worth a time series. USAGE and BASELINE are energy per
# interval (summed across homes); the rest are levels or power (averaged per home, then summed).
ENERGY_TYPES = frozenset({"USAGE", "BASELINE", "DELTA_USAGE"})
SERIES_TYPES = ENERGY_TYPES | frozenset(
    {"DEMAND", "READING", "STORAGE_CHARGE_LEVEL", "X_PV_POWER", "X_EV_POWER", "X_BATTERY_POWER"}
)
LEVELS = ("transformer", "feeder", "community")


@dataclass(frozen=True, slots=True)
class Reading:
    """One numeric value a home reported for an interval."""

    home: str
    feeder: str
    transformer: str
    payload_type: str
    start: float
    duration: float
    value: float


def readings(report: ReportRequest, home: Placement, received_at: float) -> list[Reading]:
    """The time-series values in a report; intervals without a start are taken as 'now'."""
    found: list[Reading] = []
    for resource in report.resources:
        for interval in resource.intervals:
            period = interval.interval_period or resource.interval_period
            start = period.start.timestamp() if period and period.start else received_at
            duration = (
                parse_duration(period.duration).delta.total_seconds()
                if period and period.duration
                else 0.0
            )
            found.extend(
                Reading(
                    home.home, home.feeder, home.transformer, payload.type, start, duration, value
                )
                for payload in interval.payloads
                if payload.type in SERIES_TYPES
                for value in _numbers(payload.values)
            )
    return found


def _numbers(values: Iterable[object]) -> Iterator[float]:
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield float(value)


@dataclass(slots=True)
class Bucket:
    """What one place reported of one type in one time bucket."""

    total: float = 0.0
    count: int = 0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    homes: set[str] = field(default_factory=set)

    def add(self, reading: Reading) -> None:
        """Fold one reading in."""
        self.total += reading.value
        self.count += 1
        self.minimum = min(self.minimum, reading.value)
        self.maximum = max(self.maximum, reading.value)
        self.homes.add(reading.home)


type BucketKey = tuple[str, str, str, float]  # level, place, payload type, bucket start


@dataclass(slots=True)
class Rollup:
    """Open time buckets at every level of the topology, exact while they are open.

    A bucket stays in memory until ``grace`` seconds after it ends, so late readings still count
    and each flush writes the bucket's whole value (never an increment that a restart could
    double). After a restart the open buckets are rebuilt from the stored readings.
    """

    community: str
    bucket_seconds: float
    grace: float
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    touched: set[BucketKey] = field(default_factory=set)

    def add(self, found: Iterable[Reading], now: float) -> int:
        """Fold readings in; returns how many were too late for their bucket."""
        late = 0
        oldest = now - self.bucket_seconds - self.grace
        for reading in found:
            start = reading.start - reading.start % self.bucket_seconds
            if start < oldest:
                late += 1
                continue
            places = (
                ("transformer", reading.transformer),
                ("feeder", reading.feeder),
                ("community", self.community),
            )
            for level, place in places:
                key = (level, place, reading.payload_type, start)
                self.buckets.setdefault(key, Bucket()).add(reading)
                self.touched.add(key)
        return late

    def take_touched(self, now: float) -> list[tuple[BucketKey, Bucket]]:
        """Buckets changed since the last call; closed buckets past their grace are let go."""
        touched, self.touched = self.touched, set()
        changed = [(key, self.buckets[key]) for key in touched]
        oldest = now - self.bucket_seconds - self.grace
        for key in [key for key in self.buckets if key[3] < oldest]:
            del self.buckets[key]
        return changed


def aggregate_value(payload_type: str, total: float, count: int, homes: int) -> float:
    """A place's value for a bucket: energy sums; levels and power are per-home means summed."""
    if payload_type in ENERGY_TYPES or count == 0:
        return total
    return total / count * homes
