"""Homes: enrollment codes, credentials, rotation and revocation.

An operator issues a single-use, expiring enrollment code for a place in the topology (home,
transformer, feeder); the home exchanges it once for its own credential. Codes and credentials
are random and stored only hashed (they carry 120 and 256 random bits, so a fast hash is as
strong as a slow one and keeps every request's lookup cheap).
"""

from __future__ import annotations

import base64
import secrets
import time

from smart_community_protocol import Placement

from .access import HOME_PREFIX, new_token, token_hash
from .ledger import Ledger

DEFAULT_CODE_TTL = 7 * 24 * 3600


def new_code() -> str:
    """A human-typable enrollment code: 24 base32 characters (120 bits) in groups of four."""
    text = base64.b32encode(secrets.token_bytes(15)).decode("ascii").rstrip("=")
    return "-".join(text[i : i + 4] for i in range(0, len(text), 4))


def normalise_code(code: str) -> str:
    """A code as typed (any case, with or without dashes and spaces) in its canonical form."""
    return "".join(code.split()).replace("-", "").upper()


async def issue_code(
    ledger: Ledger, placement: Placement, ttl: float = DEFAULT_CODE_TTL
) -> tuple[str, float]:
    """A new enrollment code for a place; returns it (shown once) and when it expires."""
    code = new_code()
    expires_at = time.time() + ttl
    await ledger.add_enrollment_code(
        token_hash(normalise_code(code)),
        placement.home,
        placement.feeder,
        placement.transformer,
        expires_at,
    )
    return code, expires_at


async def redeem_code(ledger: Ledger, community: str, code: str) -> tuple[Placement, str] | None:
    """Exchange a valid, unused code for the home's credential; None when it is not valid."""
    credential = new_token(HOME_PREFIX)
    record = await ledger.redeem_enrollment_code(
        token_hash(normalise_code(code)), token_hash(credential), time.time()
    )
    if record is None:
        return None
    placement = Placement(
        community=community,
        feeder=record.feeder,
        transformer=record.transformer,
        home=record.home_id,
    )
    return placement, credential


async def add_home(ledger: Ledger, placement: Placement) -> str:
    """Register a home directly (tests, benchmarks, migrations); returns its credential."""
    credential = new_token(HOME_PREFIX)
    await ledger.add_home(
        placement.home, placement.feeder, placement.transformer, token_hash(credential)
    )
    return credential


async def rotate_credential(ledger: Ledger, home_id: str) -> str | None:
    """A new credential for a home; the old one stops working at once."""
    credential = new_token(HOME_PREFIX)
    return credential if await ledger.replace_credential(home_id, token_hash(credential)) else None
