"""Homes and their credentials.

A credential is a random bearer token shown once; the bridge stores only its SHA-256 (the token
carries 256 random bits, so a fast hash is as strong as a slow one and keeps lookups cheap).
"""

from __future__ import annotations

import hashlib
import secrets

from smart_community_protocol import Placement

from .ledger import Ledger

CREDENTIAL_PREFIX = "sch_"


def new_credential() -> str:
    """A fresh home credential."""
    return CREDENTIAL_PREFIX + secrets.token_urlsafe(32)


def credential_hash(credential: str) -> str:
    """What the ledger stores of a credential."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


async def add_home(ledger: Ledger, placement: Placement) -> str:
    """Register a home at its place in the topology; returns its credential (shown once)."""
    credential = new_credential()
    await ledger.add_home(
        placement.home, placement.feeder, placement.transformer, credential_hash(credential)
    )
    return credential


async def authenticate(ledger: Ledger, community: str, credential: str) -> Placement | None:
    """The placement of the home holding this credential, or None (unknown or revoked)."""
    if not credential.startswith(CREDENTIAL_PREFIX):
        return None
    record = await ledger.home_by_credential(credential_hash(credential))
    if record is None or record.revoked:
        return None
    return Placement(
        community=community,
        feeder=record.feeder,
        transformer=record.transformer,
        home=record.home_id,
    )
