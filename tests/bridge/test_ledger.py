"""The ledger's two connections: what the writer commits, the reader sees at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
import time

from smart_community_bridge.ledger import Ledger


async def test_reads_overlapping_without_pause_still_see_every_commit(tmp_path: Path) -> None:
    """Hundreds of coroutines reading at once (a reconnect storm) must not pin an old snapshot."""
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3")
    stop = asyncio.Event()

    async def read_without_pause() -> None:
        while not stop.is_set():
            await ledger.signals_since(0, now=time.time())

    readers = [asyncio.create_task(read_without_pause()) for _ in range(200)]
    try:
        await asyncio.sleep(0.05)
        for version in range(1, 6):
            stored = await ledger.append_signal(
                object_type="EVENT",
                object_id="e1",
                operation="UPDATE",
                issuer="grid",
                version=version,
                audience=["community:c1"],
                expires=2**40,
                body="{}",
            )
            assert stored is not None
            assert await ledger.last_seq() == stored.seq
            assert [s.seq for s in await ledger.signals_since(stored.seq - 1, now=0)] == [
                stored.seq
            ]
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await ledger.close()
