"""Grid delegations: a community's own signals verify under the grid's delegation, and only so."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from smart_community_protocol import (
    SIGNATURE_FIELD,
    Grant,
    Operation,
    RejectReason,
    SignalRejected,
    Signer,
    Verifier,
    issue_delegation,
)
from smart_community_protocol.signing import b64url, b64url_decode

from .test_signing import HOME_TARGETS, NOW, mutate

GRANTS = (
    Grant("EXPORT_CAPACITY_LIMIT", 0, 10),
    Grant("IMPORT_CAPACITY_LIMIT", 1.4, 11),
    Grant("ALERT_POSSIBLE_OUTAGE", text=True),
)


def limit_event(
    payload_type: str = "EXPORT_CAPACITY_LIMIT", value: object = 5.0, event_id: str = "grant-1"
) -> dict[str, Any]:
    """A community event: a limit for one home."""
    return {
        "id": event_id,
        "objectType": "EVENT",
        "createdDateTime": "2027-01-15T08:00:00Z",
        "modificationDateTime": "2027-01-15T08:00:00Z",
        "programID": "X_COMMUNITY",
        "targets": ["home:c1/h1"],
        "payloadDescriptors": [
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": payload_type, "units": "KW"}
        ],
        "intervalPeriod": {"start": "2027-01-15T09:00:00Z", "duration": "P9999Y"},
        "intervals": [{"id": 0, "payloads": [{"type": payload_type, "values": [value]}]}],
    }


@pytest.fixture(name="grid")
def grid_fixture() -> Signer:
    return Signer.generate("grid-1")


@pytest.fixture(name="community")
def community_fixture(grid: Signer) -> Signer:
    """The bridge of community c1, holding a day's delegation from the grid."""
    bridge = Signer.generate("community:c1")
    bridge.delegation = issue_delegation(
        grid,
        delegate=bridge.issuer,
        community="c1",
        key=bridge.public_key,
        grants=GRANTS,
        hosting_kw={"transformer:c1/t1": 60.0},
        lifetime=86_400,
        issued_at=NOW - 60,
    )
    return bridge


def sign(signer: Signer, obj: dict[str, Any], **claims: Any) -> dict[str, Any]:
    return signer.sign(
        obj,
        audience=claims.get("aud", obj["targets"]),
        not_before=claims.get("nbf", NOW - 60),
        expires=claims.get("exp", NOW + 3_600),
        operation=Operation.CREATE,
        issued_at=NOW - 10,
    )


def home_verifier(grid: Signer) -> Verifier:
    """A home that pinned only the grid's key."""
    return Verifier([grid.public_key], audience=HOME_TARGETS, clock=lambda: NOW)


def rejection(verifier: Verifier, obj: Any) -> RejectReason:
    with pytest.raises(SignalRejected) as refused:
        verifier.verify(obj)
    return refused.value.reason


def test_a_community_signal_under_its_delegation_is_accepted(
    grid: Signer, community: Signer
) -> None:
    alert = limit_event("ALERT_POSSIBLE_OUTAGE", "transformer t1 lost supply", event_id="alert-1")
    assert home_verifier(grid).verify(sign(community, alert)).delegation is not None
    alert = limit_event("ALERT_POSSIBLE_OUTAGE", "transformer t1 lost supply", event_id="alert-1")
    assert home_verifier(grid).verify(sign(community, alert)).delegation is not None
    verified = home_verifier(grid).verify(sign(community, limit_event()))
    assert verified.claims.iss == "community:c1"
    assert verified.delegation is not None
    assert verified.delegation.grid == "grid-1"
    assert verified.delegation.hosting_kw == {"transformer:c1/t1": 60.0}
    assert verified.delegation.grant("IMPORT_CAPACITY_LIMIT") == GRANTS[1]


def test_what_the_delegation_does_not_cover_is_refused(grid: Signer, community: Signer) -> None:
    verifier = home_verifier(grid)
    for obj, claims in (
        (limit_event(value=12.0), {}),  # above the grant
        (limit_event("IMPORT_CAPACITY_LIMIT", 0.5), {}),  # below the grant
        (limit_event("SIMPLE", 3), {}),  # a type not granted
        (limit_event(value="x" * 10), {}),  # text where a number is granted
        (limit_event("ALERT_POSSIBLE_OUTAGE", "y" * 501), {}),  # a text too long
        (limit_event(value="x" * 10), {}),  # text where a number is granted
        (limit_event("ALERT_POSSIBLE_OUTAGE", "y" * 501), {}),  # a text too long
        ({**limit_event(), "objectType": "PROGRAM"}, {}),
        (limit_event(), {"aud": ["home:c2/h1", "home:c1/h1"]}),  # outside the community
        (limit_event(), {"exp": NOW + 2 * 86_400}),  # outlives the delegation
    ):
        assert rejection(verifier, sign(community, obj, **claims)) in {
            RejectReason.BEYOND_DELEGATION,
            RejectReason.MALFORMED,
        }, obj
    refused = sign(community, limit_event(value=12.0))
    with pytest.raises(SignalRejected, match=r"outside its grant \[0, 10\]"):
        verifier.verify(refused)


def test_a_delegation_must_come_from_a_pinned_grid_key_and_name_the_signing_key(
    grid: Signer, community: Signer
) -> None:
    verifier = home_verifier(grid)
    undelegated = Signer.generate("community:c1")
    assert rejection(verifier, sign(undelegated, limit_event())) is RejectReason.UNKNOWN_KEY

    impostor = Signer.generate("grid-1")  # not the pinned grid key
    self_made = Signer.generate("community:c1")
    self_made.delegation = issue_delegation(
        impostor, delegate=self_made.issuer, community="c1", key=self_made.public_key,
        grants=GRANTS, lifetime=86_400, issued_at=NOW,
    )  # fmt: skip
    assert rejection(verifier, sign(self_made, limit_event())) is RejectReason.INVALID_DELEGATION

    borrowed = Signer.generate("community:c1")
    borrowed.delegation = community.delegation  # another key's delegation
    assert rejection(verifier, sign(borrowed, limit_event())) is RejectReason.INVALID_DELEGATION

    renamed = Signer(issuer="community:c9", private_key=community.private_key)
    renamed.delegation = community.delegation
    assert rejection(verifier, sign(renamed, limit_event())) is RejectReason.WRONG_ISSUER


def test_an_expired_or_altered_delegation_is_refused(grid: Signer, community: Signer) -> None:
    signed = sign(community, limit_event(), exp=NOW + 60)
    later = Verifier([grid.public_key], audience=HOME_TARGETS, clock=lambda: NOW + 2 * 86_400)
    assert rejection(later, signed) in {RejectReason.INVALID_DELEGATION, RejectReason.EXPIRED}

    assert community.delegation is not None
    header, claims, signature = community.delegation.split(".")
    widened = json.loads(b64url_decode(claims))
    widened["X_grants"]["EXPORT_CAPACITY_LIMIT"]["max"] = 1000
    community.delegation = f"{header}.{b64url(json.dumps(widened).encode())}.{signature}"
    verifier = home_verifier(grid)
    assert rejection(verifier, sign(community, limit_event())) is RejectReason.INVALID_DELEGATION
    community.delegation = "not-a-token"
    assert rejection(verifier, sign(community, limit_event())) is RejectReason.INVALID_DELEGATION


def test_unpinning_the_grid_key_withdraws_what_it_delegated(
    grid: Signer, community: Signer
) -> None:
    verifier = home_verifier(grid)
    verifier.verify(sign(community, limit_event(event_id="a")))
    verifier.pin([Signer.generate("grid-1").public_key])  # the grid rotated away from that key
    assert rejection(verifier, sign(community, limit_event(event_id="b"))) in {
        RejectReason.INVALID_DELEGATION
    }


def test_forged_community_signals_zero_accepted(grid: Signer, community: Signer) -> None:
    """Mutations of community-signed signals (content, claims, signature, the delegation within
    the header): none is accepted, every genuine one is."""
    rng = random.Random(20261201)
    verifier = home_verifier(grid)
    rejected = 0
    for index in range(600):
        signed = sign(
            community, limit_event(value=round(rng.uniform(0, 10), 2), event_id=f"g{index}")
        )
        for _ in range(4):
            forged = mutate(signed, rng)
            with pytest.raises(SignalRejected):
                verifier.verify(forged)
            rejected += 1
        verifier.verify(signed)
    assert rejected == 2_400
    assert SIGNATURE_FIELD in signed
