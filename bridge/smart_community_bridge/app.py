"""The community bridge as an aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib

import aiohttp
from aiohttp import web

from smart_community_protocol import PublicKey, Verifier, within_community

from . import downstream, observability, operator, webhook
from .access import access_middleware
from .authority import CommunityAuthority, VenRegistration
from .charging import ChargingManager
from .config import BridgeConfig
from .faults import FaultResponse
from .heap import HeapKeeper
from .intake import SignalIntake
from .interconnection import Interconnection
from .ledger import Ledger
from .problems import problems_middleware
from .relay import Relay
from .reporting import UpstreamReporter
from .state import (
    AUTHORITY,
    CHARGING,
    CONFIG,
    FAULTS,
    HEAP,
    INGEST,
    INTAKE,
    INTERCONNECTION,
    LEDGER,
    RELAY,
    REPORTER,
    UPSTREAM,
)
from .telemetry import TelemetryIngest
from .upstream import GridClient, UpstreamLink, pin_keys

MAX_BODY = 256 * 1024


async def _ledger_ctx(app: web.Application) -> AsyncIterator[None]:
    ledger = await Ledger.open(app[CONFIG].database)
    app[LEDGER] = ledger
    yield
    await ledger.close()


async def _link_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    ledger = app[LEDGER]
    pinned = [PublicKey.from_jwk(jwk) for jwk in await ledger.pinned_grid_keys()]
    verifier = Verifier(pinned, audience=lambda target: within_community(target, config.community))
    intake = SignalIntake(ledger, app[RELAY], verifier)
    await intake.restore()
    app[INTAKE] = intake
    authority = CommunityAuthority(ledger, config.community, lambda: verifier.pinned)
    await authority.restore()
    app[AUTHORITY] = authority
    keys_pinned = asyncio.Event()

    async def on_keys(offered: list[PublicKey]) -> None:
        verifier.pin(await pin_keys(ledger, offered, config.grid.key_fingerprints))
        await authority.reload()  # a delegation counts only while its grid key is pinned
        keys_pinned.set()

    async with aiohttp.ClientSession() as session:
        client = GridClient(session, config.grid)
        link = UpstreamLink(
            client,
            config.grid,
            f"{config.public_url}{webhook.CALLBACK_PATH}",
            intake.accept,
            on_keys,
        )
        app[UPSTREAM] = link
        registration = VenRegistration(client, authority, config.grid.client_id)
        interconnection = Interconnection(ledger, authority, intake, client, registration)
        app[INTERCONNECTION] = interconnection
        faults = FaultResponse(
            config.community,
            authority,
            intake,
            client=client,
            ven_id=lambda: registration.ven_id,
            homes=ledger.homes,
        )
        app[FAULTS] = faults
        app[INGEST].on_fault = faults.report
        app[RELAY].watch(faults.returned, faults.dropped)
        ingest = app[INGEST]
        charging = ChargingManager(
            config.community, config.ev_charging, authority, intake, lambda: ingest.rollup
        )
        app[CHARGING] = charging
        tasks = [
            asyncio.create_task(faults.run(), name="fault-response"),
            asyncio.create_task(charging.run(ledger.homes), name="ev-charging"),
            asyncio.create_task(link.run(), name="upstream-link"),
            asyncio.create_task(registration.run(keys_pinned), name="ven-registration"),
            asyncio.create_task(
                interconnection.run(config.grid.poll_interval), name="grid-connections"
            ),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def _ingest_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    ingest = TelemetryIngest(app[LEDGER], config.community, config.fusion)
    await ingest.restore()
    app[INGEST] = ingest

    async def retention() -> None:
        while True:
            await ingest.prune()
            await asyncio.sleep(3600)

    tasks = [
        asyncio.create_task(ingest.run(), name="telemetry-batches"),
        asyncio.create_task(retention(), name="telemetry-retention"),
    ]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await ingest.flush()  # what homes were promised, before the ledger closes


async def _report_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with aiohttp.ClientSession() as session:
        reporter = UpstreamReporter(
            app[LEDGER],
            GridClient(session, config.grid),
            community=config.community,
            client_name=config.grid.client_id,
            fusion=config.fusion,
        )
        await reporter.restore()
        app[REPORTER] = reporter
        task = (
            asyncio.create_task(reporter.run(), name="upstream-reports")
            if config.fusion.report_upstream
            else None  # no automatic reports (checks run only when called)
        )
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _heap_ctx(app: web.Application) -> AsyncIterator[None]:
    relay = app[RELAY]
    keeper = HeapKeeper(lambda: relay.departures, lambda: relay.connected)
    keeper.settle()  # what start-up made lives as long as the process
    app[HEAP] = keeper
    task = asyncio.create_task(keeper.run(), name="heap-settling")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_homes(app: web.Application) -> None:
    await app[RELAY].close_all()


def create_app(config: BridgeConfig) -> web.Application:
    """Build the bridge application."""
    app = web.Application(
        middlewares=[problems_middleware, access_middleware], client_max_size=MAX_BODY
    )
    app[CONFIG] = config
    app[RELAY] = Relay()
    app.cleanup_ctx.append(_ledger_ctx)
    app.cleanup_ctx.append(_ingest_ctx)
    app.cleanup_ctx.append(_link_ctx)
    app.cleanup_ctx.append(_report_ctx)
    app.cleanup_ctx.append(_heap_ctx)  # last: everything start-up made is settled
    app.on_shutdown.append(_close_homes)
    observability.setup_metrics(app)
    observability.add_routes(app)
    downstream.add_routes(app)
    operator.add_routes(app)
    webhook.add_routes(app)
    return app
