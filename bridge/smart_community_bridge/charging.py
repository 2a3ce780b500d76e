"""EV charging management: the community shares each transformer's headroom among charging EVs.

From the telemetry homes send, the community knows each transformer's load and how much of it is
EV charging (``DEMAND`` and ``X_EV_POWER`` in the homes' latest buckets). When the chargers would
take a transformer past its planned load (``margin`` of its rating), each charging home gets a
fair share of what is left (a water-filling: no home is given more than it draws, the rest is
split evenly, none below ``min_kw``), sent as a community-signed ``X_EV_CHARGING_LIMIT`` event for
the home under the grid's delegation; the home's Home Assistant holds its charger to it. Once the
transformer has room again the limits are withdrawn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import logging
import time

from smart_community_protocol import DelegationError, Operation, format_datetime

from .authority import CommunityAuthority
from .config import ChargingConfig
from .fusion import Rollup
from .intake import SignalIntake
from .ledger import HomeRecord

_LOGGER = logging.getLogger(__name__)

LIMIT = "X_EV_CHARGING_LIMIT"
CHARGING_FROM_KW = 0.5  # a home drawing this much for its EV is charging
# A limit is sent again only when it changes by this share (a charger is not rewritten for less).
CHANGE_SHARE = 0.1
LIMIT_LIFETIME = timedelta(minutes=15)  # a limit not renewed lapses by itself


def allocate(
    headroom_kw: float, demands: Mapping[str, float], min_kw: float
) -> dict[str, float] | None:
    """Each charging home's share of ``headroom_kw``; None when all fit as they are."""
    if sum(demands.values()) <= headroom_kw:
        return None
    shares: dict[str, float] = {}
    left, waiting = headroom_kw, sorted(demands.items(), key=lambda item: item[1])
    while waiting:
        fair = left / len(waiting)
        home, demand = waiting[0]
        if demand > fair:
            break
        shares[home] = demand  # takes less than its share: the others share what it leaves
        left -= demand
        waiting.pop(0)
    for home, _ in waiting:
        shares[home] = max(min_kw, left / len(waiting))
    return shares


@dataclass(frozen=True, slots=True)
class TransformerLoad:
    """A transformer's load now, and its homes' EV charging."""

    transformer: str
    base_kw: float  # everything but EV charging
    charging: Mapping[str, float]  # home -> kW its EV draws


def loads(rollup: Rollup, homes: Iterable[HomeRecord]) -> list[TransformerLoad]:
    """Per transformer, from the homes' latest buckets."""
    demand = rollup.latest_means("home", "DEMAND")
    ev = rollup.latest_means("home", "X_EV_POWER")
    grouped: dict[str, list[str]] = {}
    for record in homes:
        if not record.revoked:
            grouped.setdefault(record.transformer, []).append(record.home_id)
    result = []
    for transformer, members in sorted(grouped.items()):
        charging = {h: ev[h] for h in members if ev.get(h, 0.0) >= CHARGING_FROM_KW}
        base = sum(demand.get(h, 0.0) - ev.get(h, 0.0) for h in members)
        result.append(TransformerLoad(transformer, base, charging))
    return result


@dataclass(frozen=True, slots=True)
class _Sent:
    kw: float
    at: float


class ChargingManager:
    """Allocates every ``interval`` seconds and keeps the homes' limits up to date."""

    def __init__(
        self,
        community: str,
        config: ChargingConfig,
        authority: CommunityAuthority,
        intake: SignalIntake,
        rollup: Callable[[], Rollup],
    ) -> None:
        """Share headroom by ``config``; sign under ``authority``; relay through ``intake``;
        read loads from the ingest's current ``rollup()``."""
        self._community = community
        self._config = config
        self._authority = authority
        self._intake = intake
        self._rollup = rollup
        self._sent: dict[str, _Sent] = {}

    @property
    def limits(self) -> dict[str, float]:
        """The limits in force: home -> kW."""
        return {home: sent.kw for home, sent in self._sent.items()}

    async def allocate(self, homes: Iterable[HomeRecord]) -> None:
        """One round: limits where a transformer is short, withdrawals where it is not."""
        delegation = self._authority.current
        grant = delegation.grant(LIMIT) if delegation else None
        if grant is None:
            return  # without the grid's delegation the community sets no limits
        wanted: dict[str, float] = {}
        for load in loads(self._rollup(), homes):
            rating = self._config.rating(load.transformer)
            if rating is None or not load.charging:
                continue
            headroom = self._config.margin * rating - load.base_kw
            shares = allocate(headroom, load.charging, self._config.min_kw)
            if shares is None:
                continue
            _LOGGER.info(
                "transformer %s: %.1f kW left for %d chargers drawing %.1f kW",
                load.transformer, headroom, len(shares), sum(load.charging.values()),
            )  # fmt: skip
            wanted.update(
                {home: min(grant.maximum, max(grant.minimum, kw)) for home, kw in shares.items()}
            )
        now = time.time()
        renew_after = LIMIT_LIFETIME.total_seconds() / 2
        for home, kw in wanted.items():
            sent = self._sent.get(home)
            if (
                sent is not None
                and abs(kw - sent.kw) <= CHANGE_SHARE * sent.kw
                and now - sent.at < renew_after
            ):
                continue
            operation = Operation.CREATE if sent is None else Operation.UPDATE
            if await self._send(home, kw, operation):
                self._sent[home] = _Sent(kw, now)
        for home in [h for h in self._sent if h not in wanted]:
            if await self._send(home, self._sent[home].kw, Operation.DELETE):
                del self._sent[home]

    async def _send(self, home: str, kw: float, operation: Operation) -> bool:
        now = datetime.now(UTC)
        target = f"home:{self._community}/{home}"
        event = {
            "id": f"ev-limit-{home}",
            "objectType": "EVENT",
            "createdDateTime": format_datetime(now),
            "modificationDateTime": format_datetime(now),
            "programID": "X_COMMUNITY",
            "eventName": "EV charging share of the transformer",
            "targets": [target],
            "payloadDescriptors": [
                {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": LIMIT, "units": "KW"}
            ],
            "intervalPeriod": {
                "start": format_datetime(now),
                "duration": f"PT{int(LIMIT_LIFETIME.total_seconds())}S",
            },
            "intervals": [{"id": 0, "payloads": [{"type": LIMIT, "values": [round(kw, 2)]}]}],
        }
        try:
            signed = self._authority.sign_event(event, audience=[target], operation=operation)
        except DelegationError as err:
            _LOGGER.info("no EV charging limit for %s: %s", home, err)
            return False
        return await self._intake.accept(signed, operation) is not None

    async def run(self, homes: Callable[[], Awaitable[list[HomeRecord]]]) -> None:
        """Allocate every interval until cancelled (a round also renews the limits it keeps)."""
        while True:
            await asyncio.sleep(self._config.interval)
            await self.allocate(await homes())
