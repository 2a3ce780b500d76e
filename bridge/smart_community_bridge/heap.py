"""Short garbage-collector pauses for a process that holds thousands of long-lived connections.

CPython's cyclic collector visits every tracked object of the generations it collects. Its
young collections are short; but with thousands of homes connected and reporting, objects that
live a second (each connection's pending read, reports waiting for their batch) keep surviving
into the older generations, so collections of those, of tens to hundreds of thousands of objects
that find nothing to free, come every fraction of a second and stall the event loop for tens to
hundreds of milliseconds each time. So the bridge keeps the young collections, never lets the
older ones run by themselves, and every second moves whatever has survived a young collection
into the permanent generation (``gc.freeze``), where collections never look.

Frozen objects that later become cyclic garbage are reclaimed by one pass over everything
(``gc.unfreeze`` and a full collection). Nearly all of that garbage is what homes that left
leave behind (a few dozen objects each), so the pass runs once a quarter of the homes (at least
``CHURN_MINIMUM``) have left since the last one, and at least every ``FULL_PASS_SECONDS`` for
whatever else there is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import gc
import logging
import time

_LOGGER = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0
CHURN_SHARE = 0.25  # of the connected homes that have left since the last full pass
CHURN_MINIMUM = 200
FULL_PASS_SECONDS = 3600.0
# A collection count the older generations never reach: only settle() collects them.
NEVER = 2**30


class HeapKeeper:
    """Freezes what survives young collections; reclaims the frozen heap when it pays."""

    def __init__(
        self,
        departures: Callable[[], int],
        connected: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Watch the relay's running count of departed connections and the connected count."""
        self._departures = departures
        self._connected = connected
        self._clock = clock
        self._departed_at_full_pass = departures()
        self._full_pass_at: float | None = None
        self.frozen = 0
        self.full_passes = 0
        self.last_pause = 0.0

    def settle(self) -> None:
        """Freeze what survived the young collections; a pass over everything when it pays."""
        started = self._clock()
        departed = self._departures() - self._departed_at_full_pass
        full = (
            self._full_pass_at is None
            or departed >= max(CHURN_MINIMUM, CHURN_SHARE * self._connected())
            or started - self._full_pass_at >= FULL_PASS_SECONDS
        )
        collected = 0
        if full:
            gc.unfreeze()
            collected = gc.collect()
        gc.freeze()
        if full:
            # Counting walks the whole frozen heap (tens of ms for thousands of homes): the
            # count (a metric) is taken with the pass that has just walked it anyway.
            self.frozen = gc.get_freeze_count()
        self.last_pause = self._clock() - started
        if full:
            self.full_passes += 1
            self._departed_at_full_pass += departed
            self._full_pass_at = started
            _LOGGER.info(
                "collected everything in %.0f ms: %d objects freed, %d live; %d homes left"
                " since the last time",
                self.last_pause * 1000,
                collected,
                self.frozen,
                departed,
            )

    async def run(self, every: float = SETTLE_SECONDS) -> None:
        """Take over the older generations' collections; settle every ``every`` seconds."""
        young, *older = gc.get_threshold()
        gc.set_threshold(young, NEVER, NEVER)
        try:
            while True:
                await asyncio.sleep(every)
                self.settle()
        finally:
            gc.set_threshold(young, *older)
