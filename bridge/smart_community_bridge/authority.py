"""The community's own authority: its signing key, and the grid's delegation that backs it.

The bridge signs the signals that originate in the community (a grid connection it grants, a
notice of a fault nearby) with a key of its own, generated on first start and kept in the
ledger. Homes trust only the grid's keys, so such a signal counts only under the grid's
delegation (``smart_community_protocol.delegation``), which the bridge asks for by naming its
key on its VEN at the grid (attribute ``X_DELEGATE_KEY``); the grid answers with the delegation
on the VEN (``X_DELEGATION``). The bridge verifies it against the pinned grid keys before using
it, reads its VEN again before half its lifetime has passed, and signs nothing once none is
current: what the community cannot grant itself goes to the grid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
import logging
import time
from typing import Any

from smart_community_protocol import (
    Delegation,
    DelegationError,
    Operation,
    PublicKey,
    Signer,
)

from .ledger import Ledger
from .upstream import GridClient, GridUnavailable

_LOGGER = logging.getLogger(__name__)
DELEGATE_KEY = "X_DELEGATE_KEY"
DELEGATION = "X_DELEGATION"
# The bridge reads its VEN at the grid at least this often, for a delegation it lacks.
RETRY_SECONDS = 300.0


def community_issuer(community: str) -> str:
    """The issuer name the community's bridge signs under."""
    return f"community:{community}"


class CommunityAuthority:
    """The community's key and the delegation it may sign under now."""

    def __init__(
        self,
        ledger: Ledger,
        community: str,
        grid_keys: Callable[[], Iterable[PublicKey]],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Sign for ``community``; check delegations against ``grid_keys`` (the pinned ones)."""
        self._ledger = ledger
        self.community = community
        self._grid_keys = grid_keys
        self._clock = clock
        self._signer: Signer | None = None
        self.delegation: Delegation | None = None
        self.refused = 0  # delegations the grid offered that did not verify

    @property
    def key(self) -> PublicKey:
        """The community's public key."""
        assert self._signer is not None, "restore() first"
        return self._signer.public_key

    @property
    def current(self) -> Delegation | None:
        """The delegation in force now, if any."""
        delegation = self.delegation
        if delegation is None or delegation.expires <= self._clock():
            return None
        return delegation

    async def restore(self) -> None:
        """Load the community's key (making one on first start) and its last delegation."""
        stored = await self._ledger.community_key()
        if stored is None:
            signer = Signer.generate(community_issuer(self.community))
            await self._ledger.add_community_key(
                signer.public_key.kid, signer.issuer, signer.private_pem()
            )
            _LOGGER.info("made the community's signing key %s", signer.public_key.kid)
        else:
            signer = Signer.from_pem(stored[0], stored[1])
        self._signer = signer
        await self.reload()

    async def reload(self) -> None:
        """Check the stored delegation again (at start, and whenever the grid keys change)."""
        token = await self._ledger.delegation(self.key.kid)
        if token is None:
            return
        try:
            self._use(self._verified(token))
        except DelegationError as err:
            assert self._signer is not None
            self.delegation, self._signer.delegation = None, None
            _LOGGER.info("the stored delegation no longer holds: %s", err)

    def ven_attributes(self) -> list[dict[str, Any]]:
        """The attribute by which the bridge's VEN asks the grid for a delegation."""
        return [{"type": DELEGATE_KEY, "values": [self.key.to_jwk()]}]

    async def accept(self, ven: Mapping[str, Any]) -> Delegation | None:
        """Take the delegation on the bridge's VEN as the grid returned it, if it holds."""
        token = _attribute(ven, DELEGATION)
        if token is None:
            return None
        current = self.delegation
        if current is not None and current.token == token:
            return current
        try:
            delegation = self._verified(token)
        except DelegationError as err:
            self.refused += 1
            _LOGGER.warning("the grid's delegation does not hold, not using it: %s", err)
            return None
        await self._ledger.store_delegation(self.key.kid, token, delegation.expires)
        self._use(delegation)
        _LOGGER.info(
            "delegation of %s to %s until %s: %s",
            delegation.grid,
            delegation.delegate,
            time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(delegation.expires)),
            ", ".join(sorted(delegation.grants)),
        )
        return delegation

    def _verified(self, token: str) -> Delegation:
        keys = {key.kid: key for key in self._grid_keys()}
        delegation = Delegation.read(token, keys, now=self._clock())
        if delegation.key.kid != self.key.kid:
            raise DelegationError(f"it names key {delegation.key.kid}, not this bridge's")
        if delegation.community != self.community:
            raise DelegationError(f"it is for community {delegation.community}")
        if delegation.delegate != community_issuer(self.community):
            raise DelegationError(f"it is for issuer {delegation.delegate}")
        return delegation

    def _use(self, delegation: Delegation) -> None:
        assert self._signer is not None
        self.delegation = delegation
        self._signer.delegation = delegation.token

    def sign_event(
        self,
        event: Mapping[str, Any],
        *,
        audience: Iterable[str],
        operation: Operation = Operation.CREATE,
    ) -> dict[str, Any]:
        """Sign an event of the community's under the current delegation (valid while it is)."""
        delegation = self.current
        if delegation is None or self._signer is None:
            raise DelegationError("the community holds no current delegation")
        now = int(self._clock())
        return self._signer.sign(
            event,
            audience=audience,
            not_before=now - 60,
            expires=delegation.expires,
            operation=operation,
            issued_at=now,
        )

    def next_check(self) -> float:
        """Seconds until the bridge should read its VEN again."""
        delegation = self.current
        if delegation is None:
            return RETRY_SECONDS
        half_left = (delegation.expires - self._clock()) / 2
        return max(1.0, min(RETRY_SECONDS * 12, half_left))


class VenRegistration:
    """Keeps the bridge's VEN registered at the grid, and its delegation current."""

    def __init__(self, client: GridClient, authority: CommunityAuthority, name: str) -> None:
        """Register under ``name`` (the bridge's grid client id)."""
        self._client = client
        self._authority = authority
        self._name = name
        self.ven_id: str | None = None
        self.registered = asyncio.Event()

    async def register(self) -> None:
        """Create or update the VEN, asking for a delegation; take what the grid answers."""
        existing = await self._client.ven(self._name)
        body = {
            "objectType": "VEN_VEN_REQUEST",
            "venName": self._name,
            "attributes": self._authority.ven_attributes(),
        }
        stored = await self._client.register_ven(None if existing is None else existing["id"], body)
        self.ven_id = str(stored["id"])
        self.registered.set()
        await self._authority.accept(stored)

    async def refresh(self) -> None:
        """Read the VEN again: the grid renews the delegation on it."""
        if self.ven_id is None:
            await self.register()
            return
        await self._authority.accept(await self._client.read_ven(self.ven_id))

    async def run(self, wait_for_keys: asyncio.Event) -> None:
        """Register once the grid keys are pinned, then refresh, backing off while it is down."""
        await wait_for_keys.wait()
        failures = 0
        while True:
            try:
                await self.refresh()
                failures = 0
                delay = self._authority.next_check()
            except GridUnavailable as err:
                failures += 1
                delay = min(RETRY_SECONDS, 2.0 ** min(failures, 8))
                _LOGGER.warning(
                    "cannot reach the bridge's VEN at the grid (%s); again in %.0f s", err, delay
                )
            await asyncio.sleep(delay)


def _attribute(obj: Mapping[str, Any], name: str) -> str | None:
    for attribute in obj.get("attributes") or ():
        if isinstance(attribute, Mapping) and attribute.get("type") == name:
            values = attribute.get("values")
            if isinstance(values, list) and values and isinstance(values[0], str):
                return values[0]
    return None
