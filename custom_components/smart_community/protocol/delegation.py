"""Grid delegations: what a community's bridge may sign itself, under the grid's authority.

Some signals originate in the community: a grid connection the community grants within the
hosting capacity the grid allotted it, a share of a transformer's headroom for an EV charger, a
notice of a fault nearby. The bridge signs those with its own key; a receiver accepts them only
under a delegation the grid signed, which names the community, the bridge (its issuer name and
key, as an RFC 7800 ``cnf`` confirmation key), the payload types it may issue with their
bounds, and an expiry.

A delegation is a JWT (RFC 7519) signed with a grid key (EdDSA). A community-signed object
carries it in its signature's protected header (``dlg``), so it verifies against nothing but
the grid keys a home pinned at enrollment: a bridge without a current delegation, or one that
exceeds it, signs nothing a home will apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import math
import time
from typing import Any, Self

import jwt

from .signing import ALGORITHM, PublicKey, Signer
from .targets import community_target, within_community

DELEGATION_TYPE = "openadr-delegation+jwt"
# Private claims: the payload types granted, and the export capacity per transformer.
_GRANTS = "X_grants"
_HOSTING = "X_hosting_kw"


class DelegationError(ValueError):
    """A delegation is not one the receiver can rely on; the message says why."""


# The longest text a granted text payload (an alert's message) may carry.
MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class Grant:
    """One payload type a delegate may issue, and what its values may be.

    Numbers within [minimum, maximum]; texts (an alert's message) only where ``text`` is
    granted, and no longer than ``MAX_TEXT``.
    """

    payload_type: str
    minimum: float = -math.inf
    maximum: float = math.inf
    text: bool = False

    def admits(self, value: object) -> bool:
        """Whether a payload value is within the grant."""
        if isinstance(value, str):
            return self.text and len(value) <= MAX_TEXT
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.minimum <= value <= self.maximum

    def to_claim(self) -> dict[str, float | bool]:
        """The grant as the delegation states it (open ends left out)."""
        claim: dict[str, float | bool] = {}
        if self.minimum > -math.inf:
            claim["min"] = self.minimum
        if self.maximum < math.inf:
            claim["max"] = self.maximum
        if self.text:
            claim["text"] = True
        return claim


@dataclass(frozen=True, slots=True)
class Delegation:
    """A verified delegation of the grid to a community's bridge."""

    grid: str  # the grid issuer that signed it
    delegate: str  # the issuer name the bridge signs under
    community: str
    key: PublicKey  # the bridge's key
    grants: Mapping[str, Grant]
    hosting_kw: Mapping[str, float]  # transformer target -> export capacity the community grants
    not_before: int
    expires: int
    token: str

    def grant(self, payload_type: str) -> Grant | None:
        """The grant for a payload type, if the delegation has one."""
        return self.grants.get(payload_type)

    @classmethod
    def read(
        cls, token: str, grid_keys: Mapping[str, PublicKey], *, now: float, leeway: float = 60.0
    ) -> Self:
        """Verify a delegation against the grid keys; DelegationError says what is wrong."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as err:
            raise DelegationError(f"delegation unreadable: {err}") from err
        if header.get("typ") != DELEGATION_TYPE:
            raise DelegationError(f"not a delegation (typ {header.get('typ')!r})")
        kid = header.get("kid")
        grid_key = grid_keys.get(kid) if isinstance(kid, str) else None
        if grid_key is None:
            raise DelegationError(f"delegation signed with key {kid!r}, which is not pinned")
        try:
            # The times are checked below, against the receiver's clock rather than PyJWT's.
            claims = jwt.decode(
                token,
                grid_key.key,
                algorithms=[ALGORITHM],
                options={
                    "require": ["iss", "sub", "aud", "nbf", "exp", "cnf"],
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
                issuer=grid_key.issuer,
            )
        except jwt.InvalidTokenError as err:
            raise DelegationError(f"delegation does not hold: {err}") from err
        return cls._from_claims(claims, grid_key, token, now=now, leeway=leeway)

    @classmethod
    def _from_claims(
        cls,
        claims: Mapping[str, Any],
        grid_key: PublicKey,
        token: str,
        *,
        now: float,
        leeway: float,
    ) -> Self:
        audience = claims["aud"]
        if not isinstance(audience, str) or not audience.startswith("community:"):
            raise DelegationError(f"delegation is for {audience!r}, not a community")
        community = audience.removeprefix("community:")
        delegate = claims["sub"]
        confirmation = claims["cnf"]
        if not isinstance(confirmation, Mapping) or not isinstance(
            confirmation.get("jwk"), Mapping
        ):
            raise DelegationError("delegation names no key (cnf.jwk)")
        try:
            key = PublicKey.from_jwk(confirmation["jwk"], issuer=str(delegate))
        except ValueError as err:
            raise DelegationError(f"delegation's key is unusable: {err}") from err
        times = (claims["nbf"], claims["exp"])
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
            raise DelegationError("delegation's nbf and exp are not times")
        if claims["nbf"] > now + leeway:
            raise DelegationError(f"delegation is valid only in {claims['nbf'] - now:.0f} s")
        if claims["exp"] < now - leeway:
            raise DelegationError(f"delegation expired {now - claims['exp']:.0f} s ago")
        return cls(
            grid=grid_key.issuer,
            delegate=str(delegate),
            community=community,
            key=key,
            grants=_grants(claims.get(_GRANTS)),
            hosting_kw=_hosting(claims.get(_HOSTING), community),
            not_before=int(claims["nbf"]),
            expires=int(claims["exp"]),
            token=token,
        )


def _grants(value: object) -> dict[str, Grant]:
    if not isinstance(value, Mapping) or not value:
        raise DelegationError(f"delegation grants nothing ('{_GRANTS}')")
    grants: dict[str, Grant] = {}
    for payload_type, bounds in value.items():
        if not isinstance(payload_type, str) or not isinstance(bounds, Mapping):
            raise DelegationError(f"delegation grant {payload_type!r} is not a type and bounds")
        low, high = bounds.get("min", -math.inf), bounds.get("max", math.inf)
        text = bounds.get("text", False)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise DelegationError(
                f"delegation grant {payload_type!r} has bounds that are no numbers"
            )
        if not isinstance(text, bool):
            raise DelegationError(f"delegation grant {payload_type!r}: 'text' is not true or false")
        grants[payload_type] = Grant(payload_type, float(low), float(high), text)
    return grants


def _hosting(value: object, community: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DelegationError(f"'{_HOSTING}' is not a map of transformers to kW")
    hosting: dict[str, float] = {}
    for target, kilowatts in value.items():
        if (
            not isinstance(target, str)
            or not target.startswith("transformer:")
            or not within_community(target, community)
        ):
            raise DelegationError(f"hosting capacity for {target!r}, not a transformer of it")
        if isinstance(kilowatts, bool) or not isinstance(kilowatts, int | float) or kilowatts < 0:
            raise DelegationError(f"hosting capacity of {target} is not a number of kW")
        hosting[target] = float(kilowatts)
    return hosting


def issue_delegation(
    grid: Signer,
    *,
    delegate: str,
    community: str,
    key: PublicKey,
    grants: Iterable[Grant],
    hosting_kw: Mapping[str, float] | None = None,
    lifetime: float,
    issued_at: float | None = None,
) -> str:
    """A delegation signed by the grid: ``delegate`` may sign with ``key`` what ``grants`` say."""
    now = int(time.time() if issued_at is None else issued_at)
    claims: dict[str, Any] = {
        "iss": grid.issuer,
        "sub": delegate,
        "aud": community_target(community),
        "iat": now,
        "nbf": now,
        "exp": now + int(lifetime),
        "cnf": {"jwk": {k: v for k, v in key.to_jwk().items() if k != "iss"}},
        _GRANTS: {grant.payload_type: grant.to_claim() for grant in grants},
    }
    if hosting_kw:
        claims[_HOSTING] = dict(hosting_kw)
    return jwt.encode(
        claims,
        grid.private_key,
        algorithm=ALGORITHM,
        headers={"kid": grid.public_key.kid, "typ": DELEGATION_TYPE},
    )
