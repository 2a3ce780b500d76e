"""Telemetry ingest: reports from homes, committed in batches, rolled up as they arrive.

A report is acknowledged only once its batch is committed, so nothing acknowledged is lost;
batching keeps the cost to one transaction (and one fsync) per batch however many homes report.

What is kept of a report: its readings, in the home's own time buckets (and the buckets of its
transformer, feeder and community); the raw report too when it answers an event (the upstream
reporter reads those), and the raw readings that came too late for their bucket.

A report's id is a digest of the home and the report's content, so a home that sends a report
again (its answer was lost) is answered with the same id, and the copy is not counted twice:
the bridge remembers each home's last ``RECENT_REPORTS`` reports, and a raw report is stored
once. (A copy that comes after the bridge restarted between storing a report and answering
it, a window of milliseconds, is counted again.)
"""

from __future__ import annotations

from array import array
import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
import hashlib
import logging
import time
from typing import Any

import orjson

from smart_community_protocol import ModelError, Placement, ReportRequest, TimingError
from smart_community_protocol.validation import check_body

from .config import FusionConfig
from .fusion import Reading, Rollup, readings
from .ledger import Ledger, TelemetryBatch

_LOGGER = logging.getLogger(__name__)
# The event ids of telemetry that answers no event, and of fault reports (docs/protocol.md).
TELEMETRY_EVENT = "X_TELEMETRY"
FAULT_EVENT = "X_FAULT"
# Answers sent in one go: each is a write to a home's socket, and a batch holds thousands.
ANSWER_SLICE = 128
# Reports of each home remembered to recognise a copy: a home resends after a lost answer,
# within a reconnection, so this covers minutes of a home's telemetry.
RECENT_REPORTS = 32


class ReportRejected(ValueError):
    """A report is not a valid OpenADR reportRequest; the message names what is wrong."""


# Called once the report's batch is committed, with the id the report is stored under (its
# first copy's for a resend), or with the error that failed the batch.
type Stored = Callable[[str | Exception], None]


@dataclass(slots=True)
class _Pending:
    report_id: str
    home: Placement
    event_id: str
    digest: int
    body: bytes | None  # the report as JSON, when it is kept raw
    fault: str | None  # the X_FAULT_CODE of a fault report
    found: list[Reading]
    received_at: float
    done: Stored


class RecentReports:
    """The digests of each home's last ``RECENT_REPORTS`` reports, a few hundred bytes a home."""

    def __init__(self) -> None:
        """Remember nothing yet."""
        self._digests: dict[str, array[int]] = {}
        self._next: dict[str, int] = {}

    def __contains__(self, key: tuple[str, int]) -> bool:
        """Whether (home, digest) is among the home's recent reports."""
        home, digest = key
        digests = self._digests.get(home)
        return digests is not None and digest in digests

    def add(self, home: str, digest: int) -> None:
        """Remember a report of a home, forgetting its oldest."""
        digests = self._digests.get(home)
        if digests is None:
            digests = self._digests[home] = array("Q", bytes(8 * RECENT_REPORTS))
        position = self._next.get(home, 0)
        digests[position] = digest
        self._next[home] = (position + 1) % RECENT_REPORTS

    def discard(self, home: str, digest: int) -> None:
        """Forget a report (its batch failed: a copy is to be taken as new)."""
        digests = self._digests.get(home)
        if digests is not None and digest in digests:
            digests[digests.index(digest)] = 0


def _fault_code(data: Mapping[str, Any]) -> str | None:
    """The X_FAULT_CODE a fault report gives (in any of its intervals)."""
    for resource in data["resources"]:
        for interval in resource["intervals"]:
            for payload in interval["payloads"]:
                values = payload["values"]
                if payload["type"] == "X_FAULT_CODE" and values and isinstance(values[0], str):
                    return str(values[0])
    return None


def report_digest(home: str, data: Any) -> int:
    """A report's identity: its home and its content, whatever the order of its keys."""
    content = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(content, digest_size=8, person=home.encode()[:16]).digest()
    # Never 0, which marks an empty place among a home's recent reports.
    return int.from_bytes(digest) | 1


class TelemetryIngest:
    """Validates reports, queues them, and commits them in batches."""

    def __init__(self, ledger: Ledger, community: str, config: FusionConfig) -> None:
        """Write to ledger; roll up into buckets of the configured size."""
        self._ledger = ledger
        self._config = config
        self._community = community
        self.rollup = Rollup(community, config.bucket_seconds, config.bucket_grace)
        self._recent = RecentReports()
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        # Told of each stored fault report: (home, X_FAULT_CODE).
        self.on_fault: Callable[[str, str], None] | None = None
        self.ingested = 0
        self.repeated = 0
        self.readings = 0
        self.late = 0

    @property
    def queued(self) -> int:
        """Reports waiting for their batch."""
        return len(self._queue)

    def enqueue(self, home: Placement, data: Any, done: Stored) -> str:
        """Queue one report from a home for the next batch; returns the id it will have.

        Raises ReportRejected (nothing queued) naming what is wrong when the report is not a
        valid OpenADR reportRequest; ``done`` is called once the batch that holds it is
        committed, or has failed (a copy of a report the bridge has is answered at once).
        """
        received_at = time.time()
        try:
            check_body(ReportRequest, data)
            found = readings(data, home, received_at)
        except (ModelError, TimingError) as err:
            raise ReportRejected(str(err)) from err
        digest = report_digest(home.home, data)
        report_id = f"report-{digest:016x}"
        if (home.home, digest) in self._recent:
            self.repeated += 1
            done(report_id)
            return report_id
        self._recent.add(home.home, digest)
        event_id = data["eventID"]
        self._queue.append(
            _Pending(
                report_id,
                home,
                event_id,
                digest,
                None if event_id == TELEMETRY_EVENT else orjson.dumps(data),
                _fault_code(data) if event_id == FAULT_EVENT else None,
                found,
                received_at,
                done,
            )
        )
        self._wakeup.set()
        return report_id

    async def submit(self, home: Placement, data: Any) -> str:
        """Take one report from a home; returns its id once it is durably stored."""
        stored: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def done(result: str | Exception) -> None:
            if stored.done():
                return
            if isinstance(result, Exception):
                stored.set_exception(result)
            else:
                stored.set_result(result)

        self.enqueue(home, data, done)
        return await asyncio.shield(stored)

    async def restore(self) -> None:
        """Rebuild the open buckets from the homes' stored buckets (after a restart)."""
        self.rollup = Rollup(
            self._community, self._config.bucket_seconds, self._config.bucket_grace
        )
        rows = await self._ledger.home_buckets_since(self.rollup.oldest_open(time.time()))
        placements = {h.home_id: (h.feeder, h.transformer) for h in await self._ledger.homes()}
        self.rollup.restore(rows, placements)

    async def run(self) -> None:
        """Commit queued reports in batches until cancelled."""
        while True:
            await self._wakeup.wait()
            # Let a batch gather: many homes report at once, and one commit serves them all.
            await asyncio.sleep(self._config.batch_seconds)
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Commit whatever is queued now (also at shutdown, before the ledger closes)."""
        batch, self._queue = self._queue, []
        if batch:
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            async with self._ledger.telemetry_batch() as transaction:
                await self._store(transaction, batch)
        except Exception as err:  # a failed commit fails every report in it, loudly
            _LOGGER.exception("telemetry batch of %d reports not stored", len(batch))
            # The open buckets took in what was not committed: read them back as stored.
            await self.restore()
            for pending in batch:
                self._recent.discard(pending.home.home, pending.digest)
                pending.done(err)
            return
        for pending in batch:
            if pending.fault is not None and self.on_fault is not None:
                self.on_fault(pending.home.home, pending.fault)
        for start in range(0, len(batch), ANSWER_SLICE):
            if start:
                await asyncio.sleep(0)  # the rest of the loop's work between slices
            for pending in batch[start : start + ANSWER_SLICE]:
                pending.done(pending.report_id)

    async def _store(self, transaction: TelemetryBatch, batch: list[_Pending]) -> None:
        now = time.time()
        late: list[Reading] = []
        for pending in batch:
            late.extend(self.rollup.add(pending.found, now))
        rollups: list[tuple[str, str, str, float, float, int, int, float, float]] = []
        home_buckets: list[tuple[float, str, str, float, int, float, float]] = []
        for (level, place, payload_type, start), bucket in self.rollup.take_touched(now):
            if level == "home":
                home_buckets.append(
                    (
                        start,
                        place,
                        payload_type,
                        bucket.total,
                        bucket.count,
                        bucket.minimum,
                        bucket.maximum,
                    )
                )
            else:
                rollups.append(
                    (
                        level,
                        place,
                        payload_type,
                        start,
                        bucket.total,
                        bucket.count,
                        bucket.home_count,
                        bucket.minimum,
                        bucket.maximum,
                    )
                )
        await transaction.store(
            reports=[
                (p.report_id, p.home.home, p.event_id, p.received_at, p.body)
                for p in batch
                if p.body is not None
            ],
            late=[
                (r.home, r.feeder, r.transformer, r.payload_type, r.start, r.duration, r.value)
                for r in late
            ],
            rollups=rollups,
            home_buckets=home_buckets,
        )
        self.ingested += len(batch)
        self.readings += sum(len(p.found) for p in batch) - len(late)
        self.late += len(late)

    async def prune(self) -> None:
        """Apply the retention periods."""
        now = time.time()
        await self._ledger.prune_telemetry(
            now - self._config.raw_retention_hours * 3600,
            now - self._config.rollup_retention_days * 86400,
        )
