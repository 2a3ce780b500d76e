"""Fusion of home telemetry: readings out of reports, rolled up per transformer, feeder, community.

Pure domain code (no I/O): the ingest path turns each report into readings and folds them into
time buckets at every level of the topology; storage and scheduling live elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from smart_community_protocol import Placement, TimingError, parse_datetime, parse_duration

# Payload types whose values are numbers worth a time series. USAGE and BASELINE are energy per
# interval (summed across homes); the rest are levels or power (averaged per home, then summed).
ENERGY_TYPES = frozenset({"USAGE", "BASELINE", "DELTA_USAGE"})
SERIES_TYPES = ENERGY_TYPES | frozenset(
    {"DEMAND", "READING", "STORAGE_CHARGE_LEVEL", "X_PV_POWER", "X_EV_POWER", "X_BATTERY_POWER"}
)


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


# A reading may start this far ahead of the bridge's clock (clocks differ a little); further
# ahead it is not a measurement, and the report is refused.
FUTURE_TOLERANCE = 300.0


def readings(body: Mapping[str, Any], home: Placement, received_at: float) -> list[Reading]:
    """The time-series values in a reportRequest body that ``check_body`` has accepted.

    The body is read as it came (the strict check has vouched for the type of every property
    read here), which spares the ingest path a second walk into models. Intervals without a
    start are taken as starting when the report arrived. TimingError names an interval that
    starts in the future.
    """
    found: list[Reading] = []
    for r, resource in enumerate(body["resources"]):
        resource_period = resource.get("intervalPeriod")
        for i, interval in enumerate(resource["intervals"]):
            period = interval.get("intervalPeriod") or resource_period
            start, duration = _period(period, received_at)
            if start > received_at + FUTURE_TOLERANCE:
                raise TimingError(
                    f"resources[{r}].intervals[{i}]: starts {start - received_at:.0f} s after the"
                    " bridge received it; readings cannot come from the future"
                )
            for payload in interval["payloads"]:
                kind = payload["type"]
                if kind in SERIES_TYPES:
                    found.extend(
                        Reading(home.home, home.feeder, home.transformer, kind, start, duration, v)
                        for v in _numbers(payload["values"])
                    )
    return found


def _period(period: Mapping[str, Any] | None, received_at: float) -> tuple[float, float]:
    if not period:
        return received_at, 0.0
    start = period.get("start")
    duration = period.get("duration")
    return (
        parse_datetime(start).timestamp() if start else received_at,
        parse_duration(duration).delta.total_seconds() if duration else 0.0,
    )


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
    homes: set[str] | None = None  # which homes reported; None for a home's own bucket

    def add(self, reading: Reading) -> None:
        """Fold one reading in."""
        self.total += reading.value
        self.count += 1
        self.minimum = min(self.minimum, reading.value)
        self.maximum = max(self.maximum, reading.value)
        if self.homes is not None:
            self.homes.add(reading.home)

    @property
    def home_count(self) -> int:
        """How many homes reported into the bucket."""
        return 1 if self.homes is None else len(self.homes)


type BucketKey = tuple[str, str, str, float]  # level, place, payload type, bucket start


@dataclass(slots=True)
class Rollup:
    """Open time buckets of every home and every level of the topology, exact while open.

    A bucket stays in memory until ``grace`` seconds after it ends, so late readings still count
    and each flush writes the bucket's whole value (never an increment that a restart could
    double). After a restart the open buckets are rebuilt from the homes' stored buckets.
    """

    community: str
    bucket_seconds: float
    grace: float
    buckets: dict[BucketKey, Bucket] = field(default_factory=dict)
    touched: set[BucketKey] = field(default_factory=set)

    def oldest_open(self, now: float) -> float:
        """The start of the oldest bucket that still takes readings."""
        return now - self.bucket_seconds - self.grace

    def add(self, found: Iterable[Reading], now: float) -> list[Reading]:
        """Fold readings in; returns those too late for their bucket (left out)."""
        late: list[Reading] = []
        oldest = self.oldest_open(now)
        for reading in found:
            start = reading.start - reading.start % self.bucket_seconds
            if start < oldest:
                late.append(reading)
                continue
            places = (
                ("home", reading.home),
                ("transformer", reading.transformer),
                ("feeder", reading.feeder),
                ("community", self.community),
            )
            for level, place in places:
                key = (level, place, reading.payload_type, start)
                bucket = self.buckets.get(key)
                if bucket is None:
                    bucket = self.buckets[key] = Bucket(homes=None if level == "home" else set())
                bucket.add(reading)
                self.touched.add(key)
        return late

    def restore(
        self,
        home_buckets: Iterable[tuple[float, str, str, float, int, float, float]],
        placements: Mapping[str, tuple[str, str]],
    ) -> None:
        """Rebuild open buckets from homes' stored buckets; ``placements``: home -> (feeder,
        transformer). Nothing is marked touched: it is stored as it is."""
        for start, home, payload_type, total, count, minimum, maximum in home_buckets:
            feeder, transformer = placements.get(home, ("", ""))
            places = (
                ("home", home),
                ("transformer", transformer),
                ("feeder", feeder),
                ("community", self.community),
            )
            for level, place in places:
                if not place:
                    continue  # a home no longer registered counts for the community only
                key = (level, place, payload_type, start)
                bucket = self.buckets.get(key)
                if bucket is None:
                    bucket = self.buckets[key] = Bucket(homes=None if level == "home" else set())
                bucket.total += total
                bucket.count += count
                bucket.minimum = min(bucket.minimum, minimum)
                bucket.maximum = max(bucket.maximum, maximum)
                if bucket.homes is not None:
                    bucket.homes.add(home)

    def latest_means(self, level: str, payload_type: str) -> dict[str, float]:
        """Per place of a level, the mean of a payload type in its latest open bucket."""
        latest: dict[str, tuple[float, Bucket]] = {}
        for (bucket_level, place, kind, start), bucket in self.buckets.items():
            if (
                bucket_level == level
                and kind == payload_type
                and bucket.count
                and (place not in latest or start > latest[place][0])
            ):
                latest[place] = (start, bucket)
        return {place: bucket.total / bucket.count for place, (_, bucket) in latest.items()}

    def take_touched(self, now: float) -> list[tuple[BucketKey, Bucket]]:
        """Buckets changed since the last call; closed buckets past their grace are let go."""
        touched, self.touched = self.touched, set()
        changed = [(key, self.buckets[key]) for key in touched]
        oldest = self.oldest_open(now)
        for key in [key for key in self.buckets if key[3] < oldest]:
            del self.buckets[key]
        return changed


def aggregate_value(payload_type: str, total: float, count: int, homes: int) -> float:
    """A place's value for a bucket: energy sums; levels and power are per-home means summed."""
    if payload_type in ENERGY_TYPES or count == 0:
        return total
    return total / count * homes
