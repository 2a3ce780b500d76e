"""Fault response: where in the community supply is lost, judged on site within seconds.

Homes report faults (a report with eventID ``X_FAULT``: OPERATING_STATE ``ERROR`` and an
``X_FAULT_CODE``). A home that loses supply also drops off its push channel, unless it runs on
a battery. The community knows where each home sits, so it can tell one home's problem from a
transformer's or a feeder's: when, within ``WINDOW`` seconds, enough of a transformer's homes
report a loss of supply or of voltage quality, or report it and drop off together, that
transformer has a fault; when two or more transformers of a feeder have one (and at least half
of them), the feeder has. A device fault stays the home's own.

This module only judges (pure, no I/O). ``FaultResponse`` below turns its judgements into
notices: a community-signed alert to the homes around the fault, and the fault's state on a
resource of the bridge's VEN at the grid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
import logging
import time

from smart_community_protocol import DelegationError, Operation, format_datetime

from .authority import CommunityAuthority
from .intake import SignalIntake
from .ledger import HomeRecord
from .upstream import GridClient, GridUnavailable

_LOGGER = logging.getLogger(__name__)

FAULT_CODE = "X_FAULT_CODE"
# Codes that speak of the supply, which the place a home sits in shares with its neighbours.
SUPPLY_CODES = frozenset({"LOSS_OF_SUPPLY", "VOLTAGE_QUALITY"})
WINDOW = 120.0  # seconds within which reports and drops count together
SHARE = 0.3  # of a transformer's homes, at least ``MINIMUM_HOMES``
MINIMUM_HOMES = 2
CLEARED_SHARE = 0.7  # of the affected homes back on their push channel: the fault is over
ALERT = "ALERT_OTHER"


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault the community located: at a transformer or a feeder."""

    level: str  # "transformer" or "feeder"
    place: str
    feeder: str
    code: str  # LOSS_OF_SUPPLY or VOLTAGE_QUALITY
    homes: frozenset[str]  # the homes that told of it
    since: float

    @property
    def key(self) -> tuple[str, str]:
        """Which place the fault is at."""
        return (self.level, self.place)


@dataclass(slots=True)
class _Evidence:
    code: str
    at: float
    reported: bool  # True: a fault report; False: only a drop off the push channel


@dataclass(slots=True)
class FaultLocator:
    """Collects homes' fault reports and drops, and tells which places have a fault.

    Evidence older than ``window`` is forgotten, unless it belongs to a fault located before:
    that fault holds until most of its homes are back on their push channel.
    """

    window: float = WINDOW
    evidence: dict[str, _Evidence] = field(default_factory=dict)
    back: set[str] = field(default_factory=set)  # homes back since their evidence
    located: dict[tuple[str, str], Fault] = field(default_factory=dict)

    def report(self, home: str, code: str, at: float) -> None:
        """A home reported a fault."""
        if code in SUPPLY_CODES:
            self.evidence[home] = _Evidence(code, at, reported=True)
            self.back.discard(home)

    def dropped(self, home: str, at: float) -> None:
        """A home's push channel ended (it may have lost supply)."""
        if home not in self.evidence:
            self.evidence[home] = _Evidence("LOSS_OF_SUPPLY", at, reported=False)

    def returned(self, home: str) -> None:
        """A home is back on its push channel."""
        if home in self.evidence:
            self.back.add(home)

    def assess(self, now: float, homes: Iterable[HomeRecord]) -> list[Fault]:
        """The faults now: transformers, then the feeders that several of them make."""
        held = {home for fault in self.located.values() for home in fault.homes}
        for home in [h for h, e in self.evidence.items() if e.at < now - self.window]:
            if home not in held:
                del self.evidence[home]
                self.back.discard(home)
        members: dict[str, list[str]] = {}
        feeder_of: dict[str, str] = {}
        for record in homes:
            if not record.revoked:
                members.setdefault(record.transformer, []).append(record.home_id)
                feeder_of[record.transformer] = record.feeder
        faults = [
            fault
            for transformer, its_homes in sorted(members.items())
            if (fault := self._at_transformer(transformer, feeder_of[transformer], its_homes))
        ]
        transformers_of: dict[str, list[str]] = {}
        for transformer, feeder in feeder_of.items():
            transformers_of.setdefault(feeder, []).append(transformer)
        for feeder, transformers in sorted(transformers_of.items()):
            hit = [fault for fault in faults if fault.feeder == feeder]
            if len(hit) >= 2 and len(hit) * 2 >= len(transformers):
                faults.append(
                    Fault(
                        "feeder",
                        feeder,
                        feeder,
                        _most_common(fault.code for fault in hit),
                        frozenset().union(*(fault.homes for fault in hit)),
                        min(fault.since for fault in hit),
                    )
                )
        self.located = {fault.key: fault for fault in faults}
        return faults

    def _at_transformer(self, transformer: str, feeder: str, homes: list[str]) -> Fault | None:
        told = {home: self.evidence[home] for home in homes if home in self.evidence}
        if not any(evidence.reported for evidence in told.values()):
            return None  # drops alone are a network's matter, not proof of a fault
        if len(told) < max(MINIMUM_HOMES, SHARE * len(homes)):
            return None
        if len(self.back & told.keys()) >= CLEARED_SHARE * len(told):
            for home in told:  # most are back: the fault is over
                del self.evidence[home]
                self.back.discard(home)
            return None
        return Fault(
            "transformer",
            transformer,
            feeder,
            _most_common(evidence.code for evidence in told.values()),
            frozenset(told),
            min(evidence.at for evidence in told.values()),
        )


def _most_common(codes: Iterable[str]) -> str:
    counted = list(codes)
    return max(sorted(set(counted)), key=counted.count)


class FaultResponse:
    """Keeps the located faults, and tells the homes around them and the grid."""

    def __init__(
        self,
        community: str,
        authority: CommunityAuthority,
        intake: SignalIntake,
        *,
        client: GridClient,
        ven_id: Callable[[], str | None],
        homes: Callable[[], Awaitable[list[HomeRecord]]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Judge within ``community``; alert through ``intake``; tell the grid through
        ``client`` (the bridge's VEN being ``ven_id()``); read the topology from ``homes``."""
        self.locator = FaultLocator()
        self._community = community
        self._authority = authority
        self._intake = intake
        self._client = client
        self._ven_id = ven_id
        self._homes = homes
        self._clock = clock
        self.active: dict[tuple[str, str], Fault] = {}
        self._grid_resources: dict[tuple[str, str], str] = {}
        self.located = 0

    def report(self, home: str, code: str) -> None:
        """A home's fault report (stored by the ingest)."""
        self.locator.report(home, code, self._clock())

    def dropped(self, home: str) -> None:
        """A home's push channel ended."""
        self.locator.dropped(home, self._clock())

    def returned(self, home: str) -> None:
        """A home is back."""
        self.locator.returned(home)

    async def assess(self) -> None:
        """Judge now; alert on new faults, withdraw the alerts of ended ones."""
        if not self.locator.evidence and not self.active:
            return  # nothing told of a fault: the topology need not be read
        faults = {f.key: f for f in self.locator.assess(self._clock(), await self._homes())}
        for key, fault in faults.items():
            if key not in self.active:
                self.located += 1
                _LOGGER.warning(
                    "%s at %s %s since %s: %d homes told of it",
                    fault.code, fault.level, fault.place,
                    time.strftime("%H:%M:%S", time.gmtime(fault.since)), len(fault.homes),
                )  # fmt: skip
                await self._alert(fault, Operation.CREATE)
                await self._tell_grid(fault, ended=False)
        for key, fault in list(self.active.items()):
            if key not in faults:
                _LOGGER.warning("%s at %s %s is over", fault.code, fault.level, fault.place)
                await self._alert(fault, Operation.DELETE)
                await self._tell_grid(fault, ended=True)
        self.active = faults

    def _targets(self, fault: Fault) -> list[str]:
        c = self._community
        place = f"{fault.level}:{c}/{fault.place}"
        return [place] if fault.level == "feeder" else [place, f"feeder:{c}/{fault.feeder}"]

    async def _alert(self, fault: Fault, operation: Operation) -> None:
        """A community-signed notice to the homes at and around the fault (its feeder)."""
        now = datetime.now(UTC)
        what = "Supply lost" if fault.code == "LOSS_OF_SUPPLY" else "Voltage out of bounds"
        text = (
            f"{what} at {fault.level} {fault.place} since "
            f"{format_datetime(datetime.fromtimestamp(fault.since, UTC))}; the grid is told."
        )
        event = {
            "id": f"fault-{fault.level}-{fault.place}",
            "objectType": "EVENT",
            "createdDateTime": format_datetime(now),
            "modificationDateTime": format_datetime(now),
            "programID": "X_COMMUNITY",
            "eventName": text,
            "targets": self._targets(fault),
            "payloadDescriptors": [
                {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": ALERT}
            ],
            "intervalPeriod": {"start": format_datetime(now), "duration": "P9999Y"},
            "intervals": [{"id": 0, "payloads": [{"type": ALERT, "values": [text]}]}],
        }
        try:
            signed = self._authority.sign_event(
                event, audience=self._targets(fault), operation=operation
            )
        except DelegationError as err:
            _LOGGER.info("no notice to homes of the fault at %s: %s", fault.place, err)
            return
        await self._intake.accept(signed, operation)

    async def _tell_grid(self, fault: Fault, *, ended: bool) -> None:
        """The fault's state on a resource of the bridge's VEN (a place of the community)."""
        ven_id = self._ven_id()
        if ven_id is None:
            return
        body = {
            "objectType": "VEN_RESOURCE_REQUEST",
            "resourceName": f"{fault.level}:{self._community}/{fault.place}",
            "venID": ven_id,
            "targets": [f"{fault.level}:{self._community}/{fault.place}"],
            "attributes": [
                {"type": "OPERATING_STATE", "values": ["NORMAL" if ended else "ERROR"]},
                {"type": FAULT_CODE, "values": [fault.code]},
                {"type": "X_HOMES_AFFECTED", "values": [len(fault.homes)]},
                {
                    "type": "X_SINCE",
                    "values": [format_datetime(datetime.fromtimestamp(fault.since, UTC))],
                },
            ],
        }
        try:
            existing = self._grid_resources.get(fault.key)
            stored = await (
                self._client.post_resource(body)
                if existing is None
                else self._client.put_resource(existing, body)
            )
            self._grid_resources[fault.key] = str(stored["id"])
        except GridUnavailable as err:
            _LOGGER.warning("the grid was not told of the fault at %s: %s", fault.place, err)

    async def run(self, every: float = 5.0) -> None:
        """Judge every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            await self.assess()
