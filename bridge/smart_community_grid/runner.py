"""The scenario runner: what the grid publishes by itself, and when.

At start it creates the scenario's programs (the interconnection program among them) and today's
and tomorrow's tariff events; each demand-response event follows at its ``publish_after``, and a
new tariff day after every local midnight. All of it goes through the same path as a BL client's
POST, so it is signed and announced alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import contextlib
from datetime import date, datetime, time, timedelta
import logging

from aiohttp import web

from .app_keys import CLOCK, SCENARIO, VTN
from .demand_response import DemandResponse
from .errors import ProblemError
from .interconnection import interconnection_program
from .oauth import Principal
from .scenario import EventPlan, Scenario
from .tariff import tariff_day_event, tariff_program
from .vtn import Vtn, utc_now

_LOGGER = logging.getLogger(__name__)


class ScenarioRunner:
    """Publishes a scenario through the VTN, acting as the grid's own business logic."""

    def __init__(
        self, scenario: Scenario, vtn: Vtn, clock: Callable[[], datetime] = utc_now
    ) -> None:
        """Publish ``scenario`` into ``vtn``; its times count from now."""
        self._scenario = scenario
        self._vtn = vtn
        self._clock = clock
        # The grid publishes its scenario as its own business-logic client.
        self._operator = Principal.grid(scenario.grid)
        self._program_ids: dict[str, str] = {}
        self._tariff_days: set[date] = set()
        self._started = clock()

    def start(self) -> None:
        """Create the programs and publish the tariff's current days."""
        tariff = self._scenario.tariff
        if tariff is not None:
            self._create_program(tariff.program, tariff_program(tariff))
        for plan in self._scenario.programs:
            body: dict[str, object] = {"programName": plan.name}
            if plan.targets:
                body["targets"] = list(plan.targets)
            self._create_program(plan.name, body)
        if self._scenario.interconnection is not None:
            name = self._scenario.interconnection.program
            self._create_program(name, interconnection_program(name))
        if tariff is not None:
            self._publish_tariff_days()

    async def run(self) -> None:
        """Publish the demand-response events and later tariff days, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._publish_events())
            if self._scenario.tariff is not None:
                group.create_task(self._roll_tariff())

    def _create_program(self, name: str, body: dict[str, object]) -> None:
        program = self._vtn.create_program(body)
        self._program_ids[name] = program["id"]
        _LOGGER.info("created program %s (%s)", name, program["id"])

    def _publish_tariff_days(self) -> None:
        tariff = self._scenario.tariff
        assert tariff is not None
        today = self._clock().astimezone(tariff.timezone).date()
        for day in (today, today + timedelta(days=1)):
            if day in self._tariff_days:
                continue
            event = self._vtn.create_event(
                self._operator, tariff_day_event(tariff, self._program_ids[tariff.program], day)
            )
            self._tariff_days.add(day)
            _LOGGER.info("published tariff for %s (%s)", day, event["id"])

    async def _roll_tariff(self) -> None:
        tariff = self._scenario.tariff
        assert tariff is not None
        while True:
            local = self._clock().astimezone(tariff.timezone)
            midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tariff.timezone)
            await asyncio.sleep((midnight - local).total_seconds())
            self._publish_tariff_days()

    async def _publish_events(self) -> None:
        for plan in sorted(self._scenario.events, key=lambda plan: plan.publish_after):
            due = self._started + timedelta(seconds=plan.publish_after)
            await asyncio.sleep(max(0.0, (due - self._clock()).total_seconds()))
            try:
                self._publish(plan)
            except ProblemError as err:
                _LOGGER.warning("scenario event %s was refused: %s", plan.name, err.detail)

    def _publish(self, plan: EventPlan) -> None:
        signal = DemandResponse(
            program_id=self._program_ids[plan.program],
            name=plan.name,
            payload_type=plan.payload_type,
            value=plan.value,
            start=self._started + timedelta(seconds=plan.start_after),
            duration=plan.duration,
            randomize_start=plan.randomize_start,
            units=plan.units,
            priority=plan.priority,
            targets=plan.targets,
            report_descriptors=plan.report_descriptors,
        )
        event = self._vtn.create_event(self._operator, signal.event_body())
        _LOGGER.info("published %s (%s), starting %s", plan.name, event["id"], signal.start)


async def scenario_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: publish the scenario's start state, then run it in the background."""
    runner = ScenarioRunner(app[SCENARIO], app[VTN], app[CLOCK])
    runner.start()
    task = asyncio.create_task(runner.run(), name="scenario")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
