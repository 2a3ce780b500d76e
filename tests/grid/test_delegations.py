"""Grid delegations: issued in the VEN's answers, verifiable, renewed, and only where granted."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from smart_community_protocol import (
    Delegation,
    Grant,
    Operation,
    RejectReason,
    SignalRejected,
    Signer,
    Verifier,
    format_datetime,
)

from .conftest import (
    BASE_SCENARIO,
    Clock,
    Grid,
    GridFactory,
    attribute,
    delegate_key,
    ven_request,
)

LIFETIME = 3600
DELEGATION = {
    "lifetime": LIFETIME,
    "grants": {
        "EXPORT_CAPACITY_LIMIT": {"min": 0, "max": 10},
        "IMPORT_CAPACITY_LIMIT": {"min": 1.4, "max": 22},
        "ALERT_POSSIBLE_OUTAGE": {"text": True},
    },
    "hosting_kw": {"t1": 50, "t2": 80.5},
}


def _clients() -> list[dict[str, Any]]:
    clients = copy.deepcopy(BASE_SCENARIO["clients"])
    clients[1]["delegation"] = DELEGATION  # ven1, community c1; ven2 has none
    return clients


@pytest.fixture
def clock() -> Clock:
    """The grid's clock."""
    return Clock()


@pytest.fixture
async def delegating(make_grid: GridFactory, clock: Clock) -> Grid:
    """A grid that delegates to ven1's bridge."""
    return await make_grid(clock=clock, clients=_clients())


@pytest.fixture
def bridge() -> Signer:
    """The key ven1's bridge signs community signals with."""
    return Signer.generate("bridge-c1")


async def _bridge_ven(grid: Grid, bridge: Signer) -> dict[str, Any]:
    """ven1's VEN, naming the bridge's key."""
    body = ven_request("c1-bridge", attributes=[delegate_key(bridge.public_key)])
    return dict(await grid.ok("POST", "/vens", as_="ven1", json=body))


async def _read(grid: Grid, ven: dict[str, Any], clock: Clock) -> Delegation:
    """The VEN's delegation, verified against the grid's published keys."""
    (token,) = attribute(ven, "X_DELEGATION") or [None]
    assert isinstance(token, str), ven
    keys = {key.kid: key for key in await grid.keys()}
    return Delegation.read(token, keys, now=clock.timestamp())


async def test_the_ven_carries_a_delegation_the_grid_signed(
    delegating: Grid, bridge: Signer, clock: Clock
) -> None:
    ven = await _bridge_ven(delegating, bridge)
    assert [a["type"] for a in ven["attributes"]] == ["X_DELEGATE_KEY", "X_DELEGATION"]
    delegation = await _read(delegating, ven, clock)
    assert (delegation.grid, delegation.delegate, delegation.community) == (
        "test-grid",
        "bridge-c1",
        "c1",
    )
    assert delegation.key.kid == bridge.public_key.kid
    assert dict(delegation.grants) == {
        "EXPORT_CAPACITY_LIMIT": Grant("EXPORT_CAPACITY_LIMIT", 0, 10),
        "IMPORT_CAPACITY_LIMIT": Grant("IMPORT_CAPACITY_LIMIT", 1.4, 22),
        "ALERT_POSSIBLE_OUTAGE": Grant("ALERT_POSSIBLE_OUTAGE", text=True),
    }
    assert dict(delegation.hosting_kw) == {"transformer:c1/t1": 50, "transformer:c1/t2": 80.5}
    assert delegation.not_before == int(clock.now.timestamp())
    assert delegation.expires == delegation.not_before + LIFETIME
    # Reading the VEN again answers with the same delegation while it is fresh.
    assert await delegating.ok("GET", f"/vens/{ven['id']}", as_="ven1") == ven
    assert await delegating.ok("GET", "/vens", as_="ven1") == [ven]


async def test_a_community_signal_verifies_under_the_delegation_and_only_within_it(
    delegating: Grid, bridge: Signer, clock: Clock
) -> None:
    ven = await _bridge_ven(delegating, bridge)
    bridge.delegation = (await _read(delegating, ven, clock)).token
    verifier = Verifier(await delegating.keys(), audience={"home:c1/h1"}, clock=clock.timestamp)

    def limit(kilowatts: float) -> dict[str, Any]:
        now = int(clock.now.timestamp())
        event = {
            "id": f"limit-{kilowatts}",
            "objectType": "EVENT",
            "createdDateTime": format_datetime(clock.now),
            "modificationDateTime": format_datetime(clock.now),
            "programID": "community",
            "targets": ["home:c1/h1"],
            "intervals": [
                {"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [kilowatts]}]}
            ],
        }
        return bridge.sign(
            event,
            audience=["home:c1/h1"],
            not_before=now,
            expires=now + 600,
            operation=Operation.CREATE,
            issued_at=now,
        )

    accepted = verifier.verify(limit(6))
    assert accepted.delegation is not None
    assert accepted.delegation.delegate == "bridge-c1"
    with pytest.raises(SignalRejected) as beyond:
        verifier.verify(limit(12))
    assert beyond.value.reason is RejectReason.BEYOND_DELEGATION


async def test_a_read_past_half_its_lifetime_renews_the_delegation(
    delegating: Grid, bridge: Signer, clock: Clock
) -> None:
    ven = await _bridge_ven(delegating, bridge)
    first = await _read(delegating, ven, clock)
    clock.advance(LIFETIME / 2 - 1)
    held = await delegating.ok("GET", f"/vens/{ven['id']}", as_="ven1")
    assert (await _read(delegating, held, clock)).token == first.token
    clock.advance(2)
    renewed = await delegating.ok("GET", f"/vens/{ven['id']}", as_="ven1")
    second = await _read(delegating, renewed, clock)
    assert second.token != first.token
    assert second.not_before == int(clock.now.timestamp())
    assert second.expires == second.not_before + LIFETIME
    assert await delegating.ok("GET", "/vens", as_="ven1") == [renewed]
    # Where the first has run out, the renewed one still holds.
    clock.advance(LIFETIME / 2 + 120)
    with pytest.raises(ValueError, match="expired"):
        await _read(delegating, ven, clock)
    assert (await _read(delegating, renewed, clock)).expires > clock.timestamp()


async def test_an_update_keeps_the_delegation_unless_the_key_changes(
    delegating: Grid, bridge: Signer, clock: Clock
) -> None:
    ven = await _bridge_ven(delegating, bridge)
    first = await _read(delegating, ven, clock)
    # The bridge writes back what it read, its delegation included: the grid's stands.
    clock.advance(60)
    echoed = await delegating.ok(
        "PUT", f"/vens/{ven['id']}", as_="ven1", json={**ven, "objectType": "VEN_VEN_REQUEST"}
    )
    assert attribute(echoed, "X_DELEGATION") == [first.token]
    rotated = Signer.generate("bridge-c1")
    body = ven_request("c1-bridge", attributes=[delegate_key(rotated.public_key)])
    moved = await delegating.ok("PUT", f"/vens/{ven['id']}", as_="ven1", json=body)
    assert (await _read(delegating, moved, clock)).key.kid == rotated.public_key.kid
    without = await delegating.ok(
        "PUT", f"/vens/{ven['id']}", as_="ven1", json=ven_request("c1-bridge")
    )
    assert "attributes" not in without


async def test_a_client_cannot_plant_a_delegation(
    delegating: Grid, bridge: Signer, clock: Clock
) -> None:
    forged = {"type": "X_DELEGATION", "values": ["eyJ.forged.token"]}
    body = ven_request("c1-bridge", attributes=[forged, delegate_key(bridge.public_key)])
    ven = await delegating.ok("POST", "/vens", as_="ven1", json=body)
    assert (await _read(delegating, ven, clock)).token != "eyJ.forged.token"
    plain = await delegating.ok(
        "POST", "/vens", as_="ven2", json=ven_request("c2", attributes=[forged])
    )
    assert attribute(plain, "X_DELEGATION") is None


async def test_no_delegation_where_the_scenario_grants_none(delegating: Grid) -> None:
    key = delegate_key(Signer.generate("bridge-c2").public_key)
    ven = await delegating.ok("POST", "/vens", as_="ven2", json=ven_request("c2", attributes=[key]))
    assert ven["attributes"] == [key]
    without_key = await delegating.ok("POST", "/vens", as_="ven1", json=ven_request("c1"))
    assert "attributes" not in without_key


async def test_a_bl_created_ven_gets_its_clients_delegation(
    delegating: Grid, bridge: Signer, clock: Clock
) -> None:
    body = {
        "objectType": "BL_VEN_REQUEST",
        "clientID": "ven1",
        "venName": "c1-bridge",
        "attributes": [delegate_key(bridge.public_key)],
    }
    ven = await delegating.ok("POST", "/vens", json=body)
    assert (await _read(delegating, ven, clock)).community == "c1"


async def test_a_key_sent_as_an_object_is_stored_as_its_json_text(
    delegating: Grid, bridge: Signer, clock: Clock
) -> None:
    jwk = bridge.public_key.to_jwk()
    body = ven_request("c1-bridge", attributes=[{"type": "X_DELEGATE_KEY", "values": [jwk]}])
    ven = await delegating.ok("POST", "/vens", as_="ven1", json=body)
    (stored,) = attribute(ven, "X_DELEGATE_KEY") or []
    assert json.loads(stored) == jwk
    assert (await _read(delegating, ven, clock)).key.kid == bridge.public_key.kid


def _jwk(**changes: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = {**Signer.generate("bridge-c1").public_key.to_jwk(), **changes}
    return {key: value for key, value in jwk.items() if value is not None}


@pytest.mark.parametrize(
    ("values", "detail"),
    [
        (["not json"], "the value is not a JWK"),
        (["[1, 2]"], "the value is not a JWK (a JSON object)"),
        ([7], "the value is not a JWK (a JSON object)"),
        ([_jwk(kty="RSA")], "key is not an Ed25519 JWK"),
        ([_jwk(x="AAAA")], "JWK 'x' is not an Ed25519 public key"),
        ([_jwk(kid="other")], "JWK 'kid' 'other' is not its thumbprint"),
        ([_jwk(iss=None)], "JWK names no issuer ('iss')"),
        ([_jwk(d="c2VjcmV0")], "the JWK holds a private key ('d')"),
        ([_jwk(iss="test-grid")], "'iss' is 'test-grid', the grid's own name"),
        ([_jwk(), _jwk()], "give exactly one key"),
    ],
)
async def test_an_unusable_key_is_refused_naming_the_attribute(
    delegating: Grid, values: list[Any], detail: str
) -> None:
    body = ven_request("c1-bridge", attributes=[{"type": "X_DELEGATE_KEY", "values": values}])
    reply = await delegating.call("POST", "/vens", as_="ven1", json=body)
    assert reply.status == 400
    assert reply.body["detail"].startswith("attributes X_DELEGATE_KEY: "), reply.body
    assert detail in reply.body["detail"]
    assert await delegating.ok("GET", "/vens", as_="ven1") == []


async def test_two_key_attributes_are_refused(delegating: Grid, bridge: Signer) -> None:
    key = delegate_key(bridge.public_key)
    reply = await delegating.call(
        "POST", "/vens", as_="ven1", json=ven_request("c1", attributes=[key, key])
    )
    assert reply.status == 400
    assert reply.body["detail"] == "attributes X_DELEGATE_KEY: give exactly one key (one value)"
