"""Grid delegations to community bridges, carried in the bridges' VEN objects.

A bridge names the key it signs community signals with in its VEN's ``X_DELEGATE_KEY``
attribute (a public Ed25519 JWK whose ``iss`` is the issuer name it signs under). Where the
scenario delegates to the bridge's client, every answer with that VEN carries the grid's
delegation as ``X_DELEGATION``; a read past half its lifetime brings a new one, so a bridge
that reads its VEN periodically always holds a current delegation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
import json
from typing import Any

from smart_community_protocol import KeyFormatError, PublicKey, Signer, issue_delegation
from smart_community_protocol.models import ValuesMap

from .errors import BadRequest
from .scenario import DelegationPlan
from .targeting import transformer_target

DELEGATE_KEY = "X_DELEGATE_KEY"
DELEGATION = "X_DELEGATION"


@dataclass(frozen=True, slots=True)
class IssuedDelegation:
    """A delegation the grid issued: the JWT, for which key, and its validity."""

    token: str
    key: PublicKey
    issued_at: int
    expires: int

    def renew_by(self, now: datetime) -> bool:
        """Whether less than half its lifetime is left at ``now``."""
        return self.expires - now.timestamp() < (self.expires - self.issued_at) / 2


def accept_attributes(body: dict[str, Any]) -> None:
    """Prepare a VEN request's attributes in place: the grid's own are dropped, a key is text.

    ``X_DELEGATION`` is the grid's to give, so a copy the client read and sends back is not
    stored. A JWK sent as an object is stored as its JSON text, since a valuesMap value is a
    number, string, boolean or point.
    """
    attributes = body.get("attributes")
    if not isinstance(attributes, list):
        return
    kept = []
    for attribute in attributes:
        if not isinstance(attribute, dict):
            kept.append(attribute)
        elif attribute.get("type") == DELEGATE_KEY and isinstance(attribute.get("values"), list):
            values = [
                json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
                for value in attribute["values"]
            ]
            kept.append({**attribute, "values": values})
        elif attribute.get("type") != DELEGATION:
            kept.append(attribute)
    body["attributes"] = kept


def delegate_key(attributes: list[ValuesMap] | None, grid: str) -> PublicKey | None:
    """The key a VEN's attributes ask the grid to delegate to; BadRequest when unusable."""
    listed = [attribute for attribute in attributes or () if attribute.type == DELEGATE_KEY]
    if not listed:
        return None
    if len(listed) > 1 or len(listed[0].values) != 1:
        raise BadRequest(f"attributes {DELEGATE_KEY}: give exactly one key (one value)")
    (value,) = listed[0].values
    try:
        jwk = json.loads(value) if isinstance(value, str) else None
    except ValueError as err:
        raise BadRequest(f"attributes {DELEGATE_KEY}: the value is not a JWK: {err}") from err
    if not isinstance(jwk, dict):
        raise BadRequest(f"attributes {DELEGATE_KEY}: the value is not a JWK (a JSON object)")
    if "d" in jwk:
        raise BadRequest(
            f"attributes {DELEGATE_KEY}: the JWK holds a private key ('d'); send the public key"
        )
    try:
        key = PublicKey.from_jwk(jwk)
    except KeyFormatError as err:
        raise BadRequest(f"attributes {DELEGATE_KEY}: {err}") from err
    if key.issuer == grid:
        raise BadRequest(
            f"attributes {DELEGATE_KEY}: 'iss' is '{grid}', the grid's own name; name the"
            " issuer the bridge signs under"
        )
    return key


def delegate(
    signer: Signer, plan: DelegationPlan, *, community: str, key: PublicKey, now: datetime
) -> IssuedDelegation:
    """A new delegation of ``plan`` to the bridge of ``community`` that signs with ``key``."""
    issued_at = int(now.timestamp())
    token = issue_delegation(
        signer,
        delegate=key.issuer,
        community=community,
        key=key,
        grants=plan.grants,
        hosting_kw={
            transformer_target(community, transformer): kilowatts
            for transformer, kilowatts in plan.hosting_kw.items()
        },
        lifetime=plan.lifetime,
        issued_at=issued_at,
    )
    return IssuedDelegation(token, key, issued_at, issued_at + plan.lifetime)


def with_delegation(ven: Mapping[str, Any], delegation: IssuedDelegation) -> dict[str, Any]:
    """The VEN as the grid answers with it: its attributes, then the delegation."""
    granted = {"type": DELEGATION, "values": [delegation.token]}
    return {**ven, "attributes": [*(ven.get("attributes") or ()), granted]}
