"""The bridge's garbage-collection policy: settled objects frozen, a full pass when it pays."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
import gc
import weakref

import pytest

from smart_community_bridge import heap
from smart_community_bridge.heap import HeapKeeper


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.collect()


def frozen_garbage(keeper: HeapKeeper) -> weakref.ref[Cycle]:
    """Cyclic garbage that was alive, and so frozen, at the last settling."""
    garbage = Cycle()
    keeper.settle()
    seen = weakref.ref(garbage)
    del garbage
    gc.collect()
    return seen


def test_what_settles_is_frozen_and_reclaimed_once_enough_homes_left() -> None:
    departures, connected, clock = [0], [1000], Clock()
    keeper = HeapKeeper(lambda: departures[0], lambda: connected[0], clock=clock)
    keeper.settle()  # the first settling is a full pass
    assert keeper.full_passes == 1
    assert keeper.frozen == gc.get_freeze_count() > 0

    left_behind = frozen_garbage(keeper)
    assert left_behind() is not None  # out of the collector's sight
    assert keeper.full_passes == 1

    departures[0] = 249  # fewer than a quarter of the connected homes
    keeper.settle()
    assert keeper.full_passes == 1
    assert left_behind() is not None
    departures[0] = 250
    keeper.settle()
    assert keeper.full_passes == 2
    assert left_behind() is None


def test_a_full_pass_at_least_every_hour_however_few_homes_leave() -> None:
    departures, clock = [0], Clock()
    keeper = HeapKeeper(lambda: departures[0], lambda: 10, clock=clock)
    keeper.settle()
    departures[0] = heap.CHURN_MINIMUM - 1  # most of these ten homes' connections, but few
    left_behind = frozen_garbage(keeper)
    assert left_behind() is not None
    clock.now += heap.FULL_PASS_SECONDS
    keeper.settle()
    assert keeper.full_passes == 2
    assert left_behind() is None


async def test_running_takes_over_the_older_generations_and_gives_them_back() -> None:
    before = gc.get_threshold()
    keeper = HeapKeeper(lambda: 0, lambda: 0)
    task = asyncio.create_task(keeper.run(every=0.01))
    await asyncio.sleep(0.05)
    assert gc.get_threshold() == (before[0], heap.NEVER, heap.NEVER)
    assert keeper.full_passes == 1  # the first settling, then freezing only
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gc.get_threshold() == before
