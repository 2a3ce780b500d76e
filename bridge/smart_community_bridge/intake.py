"""Where signals enter the community: verify, commit, then relay.

Whatever path a signal takes (the grid's by webhook notification or poll, or one the community
signs itself under the grid's delegation), it passes here: its signature (and delegation) and
claims are checked, it is committed to the ledger, and only then queued to homes. Anything
that fails is dropped and counted; the same version arriving twice (webhook and poll) is normal
and dropped quietly.
"""

from __future__ import annotations

import asyncio
from collections import Counter
import json
import logging
from typing import Any

from smart_community_protocol import (
    Operation,
    RejectReason,
    SignalRejected,
    VerifiedObject,
    Verifier,
)

from .ledger import Ledger, StoredSignal
from .relay import Relay

_LOGGER = logging.getLogger(__name__)
_QUIET = frozenset({RejectReason.REPLAYED, RejectReason.OLDER_VERSION})


class SignalIntake:
    """Verifies, commits and relays signals, one at a time so sequence order holds."""

    def __init__(self, ledger: Ledger, relay: Relay, verifier: Verifier) -> None:
        """Wire the intake to storage, fan-out and the grid's pinned keys."""
        self._ledger = ledger
        self._relay = relay
        self.verifier = verifier
        self._lock = asyncio.Lock()
        self.rejected: Counter[str] = Counter()
        self.accepted = 0

    async def restore(self) -> None:
        """Seed the replay guard from the ledger, so a restart does not re-accept old versions."""
        rows = await self._ledger.latest_versions()
        self.verifier.guard.load([list(row) for row in rows])

    async def accept(self, obj: Any, operation: Operation | None = None) -> StoredSignal | None:
        """Take one signed object; returns the committed signal, or None when dropped."""
        async with self._lock:
            try:
                verified = self.verifier.verify(obj, operation=operation, record=False)
            except SignalRejected as err:
                if err.reason not in _QUIET:
                    self.rejected[err.reason] += 1
                    _LOGGER.warning("dropped signal: %s", err)
                return None
            stored = await self._commit(verified, operation)
            self.verifier.guard.record(
                (verified.claims.iss, verified.object_type, verified.object_id),
                verified.claims.seq,
                verified.claims.exp,
            )
            if stored is not None:
                self.accepted += 1
                await self._relay.publish(stored)
            return stored

    async def _commit(
        self, verified: VerifiedObject, operation: Operation | None
    ) -> StoredSignal | None:
        claims = verified.claims
        return await self._ledger.append_signal(
            object_type=verified.object_type,
            object_id=verified.object_id,
            operation=str(operation or claims.op),
            issuer=claims.iss,
            version=claims.seq,
            audience=claims.aud,
            expires=claims.exp,
            body=json.dumps(verified.object, separators=(",", ":"), ensure_ascii=False),
        )
