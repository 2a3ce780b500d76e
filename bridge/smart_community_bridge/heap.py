"""Short garbage-collector pauses for a process that holds thousands of long-lived connections.

CPython's cyclic collector decides by itself when to run and visits every tracked object of
the generations it collects. With thousands of homes connected and reporting, objects that live
a second (each connection's pending read, reports waiting for their batch) keep reaching the
older generations, so collections of tens to hundreds of thousands of objects, which find
nothing to free, come every fraction of a second: the event loop stalls for tens to hundreds of
milliseconds each time. So the bridge turns automatic collection off and collects on its own
clock, every few seconds, after moving what has survived a collection into the permanent
generation (``gc.freeze``), where collections never look: a collection then costs only what
arrived since the last one.

Frozen objects that later become cyclic garbage (the sockets and requests of homes that left,
anything that was in flight when it was frozen) are reclaimed by one pass over everything
(``gc.unfreeze`` and a full collection). It runs when it is worth its pause: once the frozen
heap has grown by a quarter since the last such pass, or a quarter of the homes have left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import gc
import logging
import time

_LOGGER = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0
# Counting the frozen heap walks it, so the growth rule looks only every this many settlings.
COUNT_EVERY = 30
GROWTH_SHARE = 0.25  # of the frozen heap since the last full pass
CHURN_SHARE = 0.25  # of the connected homes that have left since the last full pass
CHURN_MINIMUM = 200


class HeapKeeper:
    """Collects on a clock, freezes what survives, and reclaims the frozen heap when it pays."""

    def __init__(
        self,
        departures: Callable[[], int],
        connected: Callable[[], int],
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Watch the relay's running count of departed connections and the connected count."""
        self._departures = departures
        self._connected = connected
        self._clock = clock
        self._departed_at_full_pass = departures()
        self._frozen_at_full_pass = 0
        self._settled = 0
        self.frozen = 0
        self.full_passes = 0
        self.last_pause = 0.0

    def settle(self) -> None:
        """Collect what is not frozen, then freeze the survivors; everything when it pays."""
        started = self._clock()
        departed = self._departures() - self._departed_at_full_pass
        grown = self.frozen - self._frozen_at_full_pass
        full = departed >= max(CHURN_MINIMUM, CHURN_SHARE * self._connected()) or (
            grown > GROWTH_SHARE * self._frozen_at_full_pass
        )
        if full:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        if full or self._settled % COUNT_EVERY == 0:
            self.frozen = gc.get_freeze_count()
        self._settled += 1
        self.last_pause = self._clock() - started
        if full:
            self.full_passes += 1
            self._departed_at_full_pass += departed
            self._frozen_at_full_pass = self.frozen
            _LOGGER.info(
                "collected everything in %.0f ms (%d homes left since the last time; %d objects"
                " live)",
                self.last_pause * 1000,
                departed,
                self.frozen,
            )

    async def run(self, every: float = SETTLE_SECONDS) -> None:
        """Take over collection from CPython and settle every ``every`` seconds until cancelled."""
        gc.disable()
        try:
            while True:
                await asyncio.sleep(every)
                self.settle()
        finally:
            gc.enable()
