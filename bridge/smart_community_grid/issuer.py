"""The grid as the issuer of signed programs and events: its key and the claims it signs with."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
import logging
import os
from pathlib import Path
from typing import Any

from smart_community_protocol import Event, Operation, Signer, event_window

from .targeting import audience

_LOGGER = logging.getLogger(__name__)
# Receivers' clocks may run a little behind the grid's.
NOT_BEFORE_SKEW = timedelta(seconds=60)
# A signature outlives the event it carries by this much (late deliveries still verify).
AFTER_LIFESPAN = timedelta(hours=1)
# Programs and open-ended events are re-signed on every change; this bounds how long one
# signature may be replayed.
OPEN_ENDED = timedelta(days=30)


def load_signer(issuer: str, path: Path) -> Signer:
    """The grid's Ed25519 key from a PKCS#8 PEM file, generated (mode 0600) when absent."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            _LOGGER.warning("signing key %s is readable by others; chmod 600 it", path)
        return Signer.from_pem(issuer, path.read_bytes())
    signer = Signer.generate(issuer)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: never overwrite a key another process wrote in the meantime.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(signer.private_pem())
    _LOGGER.info("generated signing key %s (kid %s)", path, signer.public_key.kid)
    return signer


class Issuer:
    """Signs the grid's objects with the claims docs/protocol.md prescribes."""

    def __init__(self, signer: Signer, communities: Collection[str]) -> None:
        """Sign with ``signer``; untargeted objects are addressed to all ``communities``."""
        self.signer = signer
        self._communities = tuple(communities)

    def sign_program(
        self, program: Mapping[str, Any], operation: Operation, now: datetime
    ) -> dict[str, Any]:
        """A signed copy of a program (valid for OPEN_ENDED from now)."""
        return self._sign(program, operation, now, now + OPEN_ENDED)

    def sign_event(
        self, event: Mapping[str, Any], model: Event, operation: Operation, now: datetime
    ) -> dict[str, Any]:
        """A signed copy of an event, valid until an hour after its lifespan ends.

        An event that has already ended (a late update or delete) still gets an hour, so the
        signature is not expired on arrival.
        """
        window = event_window(model, received_at=now)
        end = window[1] if window else None
        expires = now + OPEN_ENDED if end is None else max(end, now) + AFTER_LIFESPAN
        return self._sign(event, operation, now, expires)

    def _sign(
        self, obj: Mapping[str, Any], operation: Operation, now: datetime, expires: datetime
    ) -> dict[str, Any]:
        targets = obj.get("targets")
        issued = int(now.timestamp())
        return self.signer.sign(
            obj,
            audience=audience(targets if isinstance(targets, list) else None, self._communities),
            not_before=issued - int(NOT_BEFORE_SKEW.total_seconds()),
            expires=int(expires.timestamp()),
            operation=operation,
            issued_at=issued,
        )
