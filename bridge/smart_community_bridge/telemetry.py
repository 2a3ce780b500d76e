"""Telemetry ingest: reports from homes, committed in batches, rolled up as they arrive.

A report is acknowledged only once its batch is committed, so nothing acknowledged is lost;
batching keeps the cost to one transaction (and one fsync) per batch however many homes report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import json
import logging
import secrets
import time
from typing import Any

from smart_community_protocol import ModelError, Placement, ReportRequest, TimingError
from smart_community_protocol.validation import check_body

from .config import FusionConfig
from .fusion import Reading, Rollup, readings
from .ledger import Ledger

_LOGGER = logging.getLogger(__name__)


class ReportRejected(ValueError):
    """A report is not a valid OpenADR reportRequest; the message names what is wrong."""


@dataclass(slots=True)
class _Pending:
    report_id: str
    home: Placement
    event_id: str
    body: str
    found: list[Reading]
    received_at: float
    done: asyncio.Future[None]


class TelemetryIngest:
    """Validates reports, queues them, and commits them in batches."""

    def __init__(self, ledger: Ledger, community: str, config: FusionConfig) -> None:
        """Write to ledger; roll up into buckets of the configured size."""
        self._ledger = ledger
        self._config = config
        self.rollup = Rollup(community, config.bucket_seconds, config.bucket_grace)
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self.ingested = 0
        self.readings = 0
        self.late = 0

    @property
    def queued(self) -> int:
        """Reports waiting for their batch."""
        return len(self._queue)

    def parse(self, data: Any) -> ReportRequest:
        """A report as a home sent it, checked strictly; ReportRejected names the problem."""
        try:
            check_body(ReportRequest, data)
            return ReportRequest.parse(data)
        except (ModelError, TimingError) as err:
            raise ReportRejected(str(err)) from err

    async def submit(self, home: Placement, data: Any) -> str:
        """Take one report from a home; returns its id once it is durably stored."""
        report = self.parse(data)
        received_at = time.time()
        try:
            found = readings(report, home, received_at)
        except TimingError as err:
            raise ReportRejected(str(err)) from err
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        report_id = f"report-{secrets.token_hex(8)}"
        body = json.dumps(data, separators=(",", ":"))
        self._queue.append(
            _Pending(report_id, home, report.event_id, body, found, received_at, done)
        )
        self._wakeup.set()
        await asyncio.shield(done)
        return report_id

    async def restore(self) -> None:
        """Rebuild the open buckets from stored readings (after a restart)."""
        now = time.time()
        rows = await self._ledger.readings_since(
            now - self._config.bucket_seconds - self._config.bucket_grace
        )
        self.rollup.add((Reading(*row) for row in rows), now)
        self.rollup.take_touched(now)  # already stored as they are

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
        now = time.time()
        for pending in batch:
            self.late += self.rollup.add(pending.found, now)
        rollups = [
            (*key, bucket.total, bucket.count, len(bucket.homes), bucket.minimum, bucket.maximum)
            for key, bucket in self.rollup.take_touched(now)
        ]
        try:
            await self._ledger.append_telemetry(
                [(p.report_id, p.home.home, p.event_id, p.received_at, p.body) for p in batch],
                [
                    (r.home, r.feeder, r.transformer, r.payload_type, r.start, r.duration, r.value)
                    for p in batch
                    for r in p.found
                ],
                rollups,
            )
        except Exception as err:  # a failed commit fails every report in it, loudly
            _LOGGER.exception("telemetry batch of %d reports not stored", len(batch))
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(err)
            return
        self.ingested += len(batch)
        self.readings += sum(len(p.found) for p in batch)
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(None)

    async def prune(self) -> None:
        """Apply the retention periods."""
        now = time.time()
        await self._ledger.prune_telemetry(
            now - self._config.raw_retention_hours * 3600,
            now - self._config.rollup_retention_days * 86400,
        )
