"""Verifying signed OpenADR objects: signature, issuer, audience, time window and version.

Every rejection carries a machine-readable reason and a message a person can act on. The order
of the checks matters: nothing in the header is trusted before the signature over it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
import time
from typing import Any

import jwt
from rfc8785 import CanonicalizationError

from .delegation import Delegation, DelegationError
from .models import Operation
from .signing import (
    ALGORITHM,
    DELEGATION_HEADER,
    SIGNATURE_FIELD,
    Claims,
    PublicKey,
    canonical_payload,
    decode_header,
)
from .targets import within_community


class RejectReason(StrEnum):
    """Why a signed object was not accepted."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    MISSING_CLAIM = "missing_claim"
    WRONG_ISSUER = "wrong_issuer"
    OPERATION_MISMATCH = "operation_mismatch"
    WRONG_AUDIENCE = "wrong_audience"
    ISSUED_IN_FUTURE = "issued_in_future"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    OLDER_VERSION = "older_version"
    INVALID_DELEGATION = "invalid_delegation"
    BEYOND_DELEGATION = "beyond_delegation"


class SignalRejected(Exception):
    """A signed object failed verification."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        """Carry the reason code and the human message."""
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class VerifiedObject:
    """An object whose signature and claims hold."""

    object: dict[str, Any]
    claims: Claims
    kid: str
    # Set when the community signed it, under this delegation of the grid.
    delegation: Delegation | None = None

    @property
    def object_type(self) -> str:
        """The object's objectType."""
        return str(self.object["objectType"])

    @property
    def object_id(self) -> str:
        """The object's id."""
        return str(self.object["id"])


type VersionKey = tuple[str, str, str]  # issuer, objectType, id


@dataclass(slots=True)
class ReplayGuard:
    """The highest sequence accepted per issuer and object, so old versions cannot come back.

    Entries are kept until their signature has expired (after which the time check rejects a
    replay anyway); ``export``/``load`` let the owner persist them across restarts.
    """

    _latest: dict[VersionKey, tuple[int, int]] = field(default_factory=dict)

    def check(self, key: VersionKey, seq: int) -> RejectReason | None:
        """REPLAYED for the version already accepted, OLDER_VERSION for an earlier one."""
        latest = self._latest.get(key)
        if latest is None or seq > latest[0]:
            return None
        return RejectReason.REPLAYED if seq == latest[0] else RejectReason.OLDER_VERSION

    def record(self, key: VersionKey, seq: int, expires: int) -> None:
        """Remember an accepted version."""
        self._latest[key] = (seq, expires)

    def latest(self, key: VersionKey) -> int | None:
        """The sequence of the accepted version of an object, if any."""
        entry = self._latest.get(key)
        return entry[0] if entry else None

    def prune(self, now: float) -> int:
        """Forget versions whose signatures have expired; returns how many."""
        stale = [key for key, (_, exp) in self._latest.items() if exp < now]
        for key in stale:
            del self._latest[key]
        return len(stale)

    def export(self) -> list[list[Any]]:
        """A JSON-serialisable form."""
        return [[*key, seq, exp] for key, (seq, exp) in self._latest.items()]

    def load(self, rows: Iterable[list[Any]]) -> None:
        """Restore what export produced (unusable rows are skipped)."""
        for row in rows:
            if len(row) == 5:
                iss, object_type, object_id, seq, exp = row
                self._latest[(str(iss), str(object_type), str(object_id))] = (int(seq), int(exp))


_STATE_OPERATIONS = frozenset({Operation.CREATE, Operation.UPDATE})
_DELEGATIONS_KEPT = 16


class Verifier:
    """Checks signed objects against pinned keys, an audience and the clock."""

    def __init__(
        self,
        keys: Iterable[PublicKey],
        *,
        audience: Iterable[str] | Callable[[str], bool],
        clock: Callable[[], float] | None = None,
        leeway: float = 60.0,
        guard: ReplayGuard | None = None,
    ) -> None:
        """Trust ``keys``; accept what is addressed to ``audience``.

        ``audience`` is the set of targets that name this receiver (a home), or a predicate over
        one target (a bridge accepts anything within its community). ``leeway`` tolerates clock
        skew, in seconds.
        """
        self._keys = {key.kid: key for key in keys}
        self._delegations: dict[str, Delegation] = {}
        if callable(audience):
            self._addressed: Callable[[str], bool] = audience
            self._audience_text = "this receiver"
        else:
            names = frozenset(audience)
            self._addressed = names.__contains__
            self._audience_text = ", ".join(sorted(names))
        # time.time looked up now, not when this module was imported: a clock replaced since
        # (as tests that move time do) is the one that counts.
        self._clock = clock if clock is not None else time.time
        self._leeway = leeway
        self.guard = guard if guard is not None else ReplayGuard()

    @property
    def pinned(self) -> tuple[PublicKey, ...]:
        """The keys trusted now."""
        return tuple(self._keys.values())

    def pin(self, keys: Iterable[PublicKey]) -> None:
        """Trust exactly these keys from now on (rotation pins the new set)."""
        self._keys = {key.kid: key for key in keys}
        self._delegations.clear()  # what a key no longer pinned vouched for counts no more

    def verify(
        self, obj: object, *, operation: Operation | None = None, record: bool = True
    ) -> VerifiedObject:
        """Verify a decoded JSON object; raise SignalRejected, or return it with its claims.

        ``operation`` is what the carrier announces (a notification's operation); None means the
        object is read as current state. With ``record`` the version is remembered, so the same
        or an older version is rejected from then on.
        """
        if not isinstance(obj, Mapping):
            raise SignalRejected(RejectReason.MALFORMED, "a signed object must be a JSON object")
        token = obj.get(SIGNATURE_FIELD)
        if token is None:
            raise SignalRejected(RejectReason.UNSIGNED, f"object carries no '{SIGNATURE_FIELD}'")
        header = _header(token)
        algorithm = header.get("alg")
        if algorithm != ALGORITHM:
            raise SignalRejected(
                RejectReason.ALGORITHM_NOT_ALLOWED, f"algorithm {algorithm!r} is not {ALGORITHM}"
            )
        key, delegation = self._signing_key(header)
        try:
            payload = canonical_payload(obj)
        except (CanonicalizationError, TypeError, ValueError) as err:
            raise SignalRejected(
                RejectReason.MALFORMED, f"object cannot be canonicalised: {err}"
            ) from err
        try:
            jwt.api_jws.decode_complete(
                token, key.key, algorithms=[ALGORITHM], detached_payload=payload
            )
        except jwt.InvalidTokenError as err:
            raise SignalRejected(
                RejectReason.BAD_SIGNATURE, f"signature does not match the content: {err}"
            ) from err
        claims = _claims(header)
        self._check_claims(claims, key, obj, operation)
        if delegation is not None:
            _check_delegated(obj, claims, delegation)
        version = (claims.iss, str(obj["objectType"]), str(obj["id"]))
        if (stale := self.guard.check(version, claims.seq)) is not None:
            raise SignalRejected(
                stale,
                f"{version[1]} {version[2]} version {claims.seq} is "
                + (
                    "already applied"
                    if stale is RejectReason.REPLAYED
                    else "older than the one applied"
                )
                + f" ({self.guard.latest(version)})",
            )
        if record:
            self.guard.record(version, claims.seq, claims.exp)
        return VerifiedObject(object=dict(obj), claims=claims, kid=key.kid, delegation=delegation)

    def _signing_key(self, header: Mapping[str, Any]) -> tuple[PublicKey, Delegation | None]:
        """A pinned grid key, or the community key a grid delegation in the header vouches for."""
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is not None:
            return key, None
        token = header.get(DELEGATION_HEADER)
        if token is None:
            raise SignalRejected(
                RejectReason.UNKNOWN_KEY,
                f"signed with key {kid!r}, which is not pinned"
                f" (pinned: {', '.join(sorted(self._keys))})",
            )
        delegation = self._delegation(token)
        if delegation.key.kid != kid:
            raise SignalRejected(
                RejectReason.INVALID_DELEGATION,
                f"signed with key {kid!r}, not the key {delegation.key.kid!r} its delegation names",
            )
        return delegation.key, delegation

    def _delegation(self, token: object) -> Delegation:
        if not isinstance(token, str):
            raise SignalRejected(RejectReason.INVALID_DELEGATION, "delegation is not a string")
        now = self._clock()
        delegation = self._delegations.get(token)
        if delegation is None:
            try:
                delegation = Delegation.read(token, self._keys, now=now, leeway=self._leeway)
            except DelegationError as err:
                raise SignalRejected(RejectReason.INVALID_DELEGATION, str(err)) from err
            # Every community signal carries the same few delegations: check each once.
            if len(self._delegations) >= _DELEGATIONS_KEPT:
                self._delegations.clear()
            self._delegations[token] = delegation
        if delegation.expires < now - self._leeway:
            raise SignalRejected(
                RejectReason.INVALID_DELEGATION,
                f"delegation of {delegation.delegate} expired {now - delegation.expires:.0f} s ago",
            )
        return delegation

    def _check_claims(
        self, claims: Claims, key: PublicKey, obj: Mapping[str, Any], operation: Operation | None
    ) -> None:
        if claims.iss != key.issuer:
            raise SignalRejected(
                RejectReason.WRONG_ISSUER,
                f"issuer {claims.iss!r} may not sign with the key of {key.issuer!r}",
            )
        if not isinstance(obj.get("id"), str) or not isinstance(obj.get("objectType"), str):
            raise SignalRejected(
                RejectReason.MALFORMED, "signed object has no 'id' and 'objectType'"
            )
        if operation is Operation.DELETE and claims.op is not Operation.DELETE:
            raise SignalRejected(
                RejectReason.OPERATION_MISMATCH,
                f"a DELETE needs a DELETE signature, got {claims.op}",
            )
        if operation is not Operation.DELETE and claims.op not in _STATE_OPERATIONS:
            raise SignalRejected(
                RejectReason.OPERATION_MISMATCH,
                f"a {claims.op} signature cannot carry current state",
            )
        if not any(self._addressed(target) for target in claims.aud):
            raise SignalRejected(
                RejectReason.WRONG_AUDIENCE,
                f"addressed to {', '.join(claims.aud) or 'nobody'}, not to {self._audience_text}",
            )
        now = self._clock()
        if claims.iat > now + self._leeway:
            raise SignalRejected(
                RejectReason.ISSUED_IN_FUTURE,
                f"issued {claims.iat - now:.0f} s in the future; check the clocks",
            )
        if claims.nbf > now + self._leeway:
            raise SignalRejected(
                RejectReason.NOT_YET_VALID, f"valid only in {claims.nbf - now:.0f} s"
            )
        if claims.exp < now - self._leeway:
            raise SignalRejected(RejectReason.EXPIRED, f"expired {now - claims.exp:.0f} s ago")


def _header(token: object) -> dict[str, Any]:
    if not isinstance(token, str):
        raise SignalRejected(RejectReason.MALFORMED, f"'{SIGNATURE_FIELD}' is not a string")
    try:
        return decode_header(token)
    except ValueError as err:
        raise SignalRejected(RejectReason.MALFORMED, f"signature header unreadable: {err}") from err


def _claims(header: Mapping[str, Any]) -> Claims:
    def integer(name: str) -> int:
        value = header.get(name)
        if type(value) is not int:
            raise SignalRejected(
                RejectReason.MISSING_CLAIM, f"claim '{name}' is missing or not an integer"
            )
        return value

    iss = header.get("iss")
    aud = header.get("aud")
    op = header.get("op")
    if not isinstance(iss, str) or not iss:
        raise SignalRejected(RejectReason.MISSING_CLAIM, "claim 'iss' is missing")
    if not isinstance(aud, list) or not all(isinstance(a, str) for a in aud):
        raise SignalRejected(
            RejectReason.MISSING_CLAIM, "claim 'aud' is missing or not a list of targets"
        )
    if not isinstance(op, str) or op not in Operation.__members__:
        raise SignalRejected(RejectReason.MISSING_CLAIM, f"claim 'op' {op!r} is not an operation")
    return Claims(
        iss=iss,
        aud=tuple(aud),
        iat=integer("iat"),
        nbf=integer("nbf"),
        exp=integer("exp"),
        seq=integer("seq"),
        op=Operation(op),
    )


def _check_delegated(obj: Mapping[str, Any], claims: Claims, delegation: Delegation) -> None:
    """A community-signed object must keep within its delegation: events only, inside the
    community, no longer valid than the delegation, only granted payload types and values."""

    def beyond(why: str) -> SignalRejected:
        return SignalRejected(
            RejectReason.BEYOND_DELEGATION, f"{delegation.delegate} may not sign this: {why}"
        )

    if obj.get("objectType") != "EVENT":
        raise beyond(f"a delegation covers events, not a {obj.get('objectType')}")
    outside = [t for t in claims.aud if not within_community(t, delegation.community)]
    if outside:
        raise beyond(f"addressed to {', '.join(outside)}, outside {delegation.community}")
    if claims.exp > delegation.expires:
        raise beyond("its signature outlives the delegation")
    for descriptor in obj.get("payloadDescriptors") or ():
        kind = descriptor.get("payloadType") if isinstance(descriptor, Mapping) else None
        if not isinstance(kind, str) or delegation.grant(kind) is None:
            raise beyond(f"payload type {kind!r} is not granted")
    for interval in obj.get("intervals") or ():
        payloads = interval.get("payloads") if isinstance(interval, Mapping) else None
        for payload in payloads if isinstance(payloads, list) else ():
            kind = payload.get("type") if isinstance(payload, Mapping) else None
            grant = delegation.grant(kind) if isinstance(kind, str) else None
            if grant is None:
                raise beyond(f"payload type {kind!r} is not granted")
            values = payload.get("values")
            for value in values if isinstance(values, list) else [values]:
                if not grant.admits(value):
                    shown = f"{value!r}"[:60]
                    raise beyond(
                        f"{kind} value {shown} is outside its grant"
                        f" [{grant.minimum:g}, {grant.maximum:g}]"
                        + (" or texts" if grant.text else "")
                    )
