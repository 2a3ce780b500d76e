"""Health, Prometheus metrics, event-loop lag and structured logs.

Domain objects keep plain counters; a collector reads them at scrape time, so nothing on the
hot path touches the metrics library. Each application has its own registry (no globals).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
import contextlib
from datetime import UTC, datetime
import json
import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .access import allow
from .state import (
    AUTHORITY,
    CHARGING,
    CONFIG,
    FAULTS,
    HEAP,
    INGEST,
    INTAKE,
    LEDGER,
    RELAY,
    REPORTER,
    UPSTREAM,
)

REGISTRY = web.AppKey("registry", CollectorRegistry)
LOOP_LAG = web.AppKey("loop_lag", Histogram)
LAG_PROBE_INTERVAL = 0.25


class BridgeCollector(Collector):
    """Reads the bridge's own counters when Prometheus scrapes."""

    def __init__(self, app: web.Application) -> None:
        """Collect from this application's objects."""
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The current values."""
        app = self._app
        relay = app[RELAY]
        yield GaugeMetricFamily(
            "smart_community_homes_connected",
            "Homes connected over WebSocket",
            value=relay.connected,
        )
        buffered = relay.buffered_bytes()
        yield GaugeMetricFamily(
            "smart_community_home_send_buffer_max_bytes",
            "Bytes waiting to be sent to the home with the most unsent",
            value=max(buffered, default=0),
        )
        yield GaugeMetricFamily(
            "smart_community_home_send_buffer_bytes",
            "Bytes waiting to be sent to all homes",
            value=sum(buffered),
        )
        yield CounterMetricFamily(
            "smart_community_signals_relayed", "Signal frames queued to homes", value=relay.relayed
        )
        yield CounterMetricFamily(
            "smart_community_homes_dropped", "Homes dropped for not reading", value=relay.dropped
        )
        if INTAKE in app:
            intake = app[INTAKE]
            yield CounterMetricFamily(
                "smart_community_signals_accepted",
                "Grid signals verified and committed",
                value=intake.accepted,
            )
            failures = CounterMetricFamily(
                "smart_community_verification_failures",
                "Grid signals dropped by verification, by reason",
                labels=["reason"],
            )
            for reason, count in sorted(intake.rejected.items()):
                failures.add_metric([reason], count)
            yield failures
        if INGEST in app:
            ingest = app[INGEST]
            yield CounterMetricFamily(
                "smart_community_reports_ingested", "Home reports stored", value=ingest.ingested
            )
            yield CounterMetricFamily(
                "smart_community_readings_ingested",
                "Time-series values stored",
                value=ingest.readings,
            )
            yield GaugeMetricFamily(
                "smart_community_ingest_queue_depth",
                "Reports waiting for their batch",
                value=ingest.queued,
            )
        if REPORTER in app:
            reporter = app[REPORTER]
            sent = CounterMetricFamily(
                "smart_community_upstream_reports_sent",
                "Reports the grid accepted, by kind (telemetry, responses)",
                labels=["kind"],
            )
            for kind in ("telemetry", "responses"):
                sent.add_metric([kind], reporter.sent[kind])
            yield sent
            yield CounterMetricFamily(
                "smart_community_upstream_report_failures",
                "Report posts the grid refused or did not answer",
                value=reporter.failures,
            )
        if HEAP in app:
            heap = app[HEAP]
            yield GaugeMetricFamily(
                "smart_community_gc_frozen_objects",
                "Objects kept after the last full collection, where collections no longer look",
                value=heap.frozen,
            )
            yield CounterMetricFamily(
                "smart_community_gc_full_passes",
                "Passes over every object, reclaiming what departed homes left behind",
                value=heap.full_passes,
            )
            yield GaugeMetricFamily(
                "smart_community_gc_settle_seconds",
                "How long the last settling of the heap paused the bridge",
                value=heap.last_pause,
            )
        if AUTHORITY in app:
            authority = app[AUTHORITY]
            delegation = authority.current
            yield GaugeMetricFamily(
                "smart_community_delegation_expires_seconds",
                "Seconds the grid's delegation to the community holds (0: none)",
                value=max(0.0, delegation.expires - time.time()) if delegation else 0.0,
            )
            yield CounterMetricFamily(
                "smart_community_delegations_refused",
                "Delegations offered by the grid that did not verify",
                value=authority.refused,
            )
        if FAULTS in app:
            faults = app[FAULTS]
            yield GaugeMetricFamily(
                "smart_community_faults_active",
                "Faults the community has located that are not over",
                value=len(faults.active),
            )
            yield CounterMetricFamily(
                "smart_community_faults_located", "Faults located", value=faults.located
            )
        if CHARGING in app:
            yield GaugeMetricFamily(
                "smart_community_ev_charging_limits",
                "Homes whose EV charging is limited to a share of their transformer",
                value=len(app[CHARGING].limits),
            )
        if UPSTREAM in app:
            yield GaugeMetricFamily(
                "smart_community_grid_connected",
                "1 while the bridge holds a token and subscription at the grid",
                value=int(app[UPSTREAM].connected),
            )


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: measure how late the event loop wakes a sleeper (event-loop lag)."""
    histogram = app[LOOP_LAG]

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE_INTERVAL)
            histogram.observe(max(0.0, loop.time() - started - LAG_PROBE_INTERVAL))

    task = asyncio.create_task(probe(), name="loop-lag-probe")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_metrics(app: web.Application) -> None:
    """Give the application its registry, collector and lag histogram."""
    registry = CollectorRegistry()
    registry.register(BridgeCollector(app))
    app[REGISTRY] = registry
    app[LOOP_LAG] = Histogram(
        "smart_community_event_loop_lag_seconds",
        "How late the event loop ran a timer",
        buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
        registry=registry,
    )
    app.cleanup_ctx.append(loop_lag_ctx)


@allow()
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@allow()
async def live(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"})


@allow()
async def ready(request: web.Request) -> web.Response:
    """Readiness: the ledger answers, so homes can connect and resync."""
    app = request.app
    try:
        await app[LEDGER].last_seq()
    except Exception as err:  # noqa: BLE001 - any failure of the database means not ready
        return web.json_response({"status": "not ready", "ledger": str(err)}, status=503)
    return web.json_response(
        {
            "status": "ready",
            "community": app[CONFIG].community,
            "grid_connected": app[UPSTREAM].connected if UPSTREAM in app else False,
            "homes_connected": app[RELAY].connected,
        }
    )


def add_routes(app: web.Application) -> None:
    """Mount health and metrics."""
    app.router.add_get("/health", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/metrics", metrics)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON: time, level, logger, message (and exception)."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """Log to stderr as text or JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
