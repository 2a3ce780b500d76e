"""Grid connections: the community grants within its delegation, forwards the rest, and a home
reaches only its own resources."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient
import pytest

from smart_community_bridge.authority import DELEGATION, community_issuer
from smart_community_bridge.interconnection import ResourceRejected, decide, read_request
from smart_community_bridge.state import AUTHORITY, LEDGER
from smart_community_protocol import (
    Delegation,
    Grant,
    Operation,
    Signer,
    Verifier,
    issue_delegation,
)

from .conftest import HOME_A, HOME_B, auth

HOSTING = {"transformer:c1/t1": 12.0}


def pv_request(kw: float, name: str = "roof") -> dict[str, Any]:
    return {
        "resourceName": name,
        "attributes": [
            {"type": "MAX_POWER_EXPORT", "values": [kw]},
            {"type": "X_INVERTER", "values": ["Acme", "PV-5000", "SN123"]},
        ],
    }


async def delegate(bridge: TestClient[Any, Any], grid: Signer, **kwargs: Any) -> Delegation:
    """The grid delegates to the bridge (as its VEN at the grid would carry it)."""
    authority = bridge.app[AUTHORITY]
    token = issue_delegation(
        grid,
        delegate=kwargs.get("delegate", community_issuer("c1")),
        community="c1",
        key=kwargs.get("key", authority.key),
        grants=[Grant("EXPORT_CAPACITY_LIMIT", 0, 10)],
        hosting_kw=HOSTING,
        lifetime=kwargs.get("lifetime", 86_400),
    )
    accepted = await authority.accept({"attributes": [{"type": DELEGATION, "values": [token]}]})
    assert accepted is not None
    return accepted


async def signals(ws: Any, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(5):
        while len(found) < count:
            message = json.loads((await ws.receive()).data)
            if message["type"] == "signal":
                found.append(message["notification"])
    return found


def test_the_community_grants_only_within_its_delegation_and_capacity(signer: Signer) -> None:
    community = Signer.generate(community_issuer("c1"))
    token = issue_delegation(
        signer, delegate=community.issuer, community="c1", key=community.public_key,
        grants=[Grant("EXPORT_CAPACITY_LIMIT", 0, 10)], hosting_kw=HOSTING, lifetime=3600,
    )  # fmt: skip
    delegation = Delegation.read(
        token, {signer.public_key.kid: signer.public_key}, now=0.0 + __import__("time").time()
    )
    assert decide(5, "transformer:c1/t1", 0, delegation).grant
    assert decide(5, "transformer:c1/t1", 7, delegation).grant
    refused = decide(5, "transformer:c1/t1", 7.5, delegation)
    assert not refused.grant
    assert "4.5 kW" in refused.why
    assert not decide(11, "transformer:c1/t1", 0, delegation).grant  # beyond the grant
    assert not decide(1, "transformer:c1/t2", 0, delegation).grant  # no capacity allotted
    assert not decide(1, "transformer:c1/t1", 0, None).grant


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ([], "body"),
        ({"resourceName": "x", "id": "r1"}, "id"),
        ({"resourceName": "x", "venID": "b"}, "venID"),
        ({"resourceName": ""}, "resourceName"),
        ({"resourceName": "x", "objectType": "BL_RESOURCE_REQUEST"}, "objectType"),
        ({"resourceName": "x", "attributes": {}}, "attributes"),
        (
            {
                "resourceName": "x",
                "attributes": [{"type": "X_CONNECTION_STATUS", "values": ["GRANTED"]}],
            },
            "set by the bridge",
        ),
        (
            {"resourceName": "x", "attributes": [{"type": "MAX_POWER_EXPORT", "values": [0]}]},
            "attributes[0].values",
        ),
        (
            {"resourceName": "x", "attributes": [{"type": "MAX_POWER_EXPORT", "values": ["5"]}]},
            "attributes[0].values",
        ),
        (
            {"resourceName": "x", "attributes": [{"type": "MAX_POWER_EXPORT"}]},
            "attributes[0].values",
        ),
    ],
)
def test_bad_requests_are_refused_naming_the_property(body: Any, where: str) -> None:
    with pytest.raises(ResourceRejected, match=where.replace("[", r"\[").replace("]", r"\]")):
        read_request(body, HOME_A)


async def test_a_grant_within_capacity_reaches_the_home_signed_by_the_community(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    await delegate(bridge, signer)
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    await ws.receive_json()

    response = await bridge.post("/resources", json=pv_request(5), headers=auth(credentials["a"]))
    assert response.status == 201, await response.text()
    granted = await response.json()
    attributes = {a["type"]: a["values"] for a in granted["attributes"]}
    assert attributes["X_CONNECTION_STATUS"] == ["GRANTED"]
    assert attributes["X_GRANTED_KW"] == [5]
    assert granted["venID"] == "a"
    assert granted["targets"] == ["home:c1/a"]

    # The export limit the home applies, verifiable with nothing but the grid's key.
    (notification,) = await signals(ws, 1)
    home = Verifier([signer.public_key], audience=HOME_A.targets)
    verified = home.verify(notification["object"], operation=Operation(notification["operation"]))
    assert verified.delegation is not None
    assert verified.object["intervals"][0]["payloads"] == [
        {"type": "EXPORT_CAPACITY_LIMIT", "values": [5]}
    ]

    # More than the transformer has left goes to the grid instead.
    response = await bridge.post(
        "/resources", json=pv_request(8, "shed"), headers=auth(credentials["a"])
    )
    forwarded = {a["type"]: a["values"] for a in (await response.json())["attributes"]}
    assert forwarded["X_CONNECTION_STATUS"] == ["REQUESTED"]

    listed = await (await bridge.get("/resources", headers=auth(credentials["a"]))).json()
    assert [r["resourceName"] for r in listed] == ["roof", "shed"]
    vens = await (await bridge.get("/vens", headers=auth(credentials["a"]))).json()
    assert [(v["id"], v["objectType"]) for v in vens] == [("a", "VEN")]

    # Withdrawing the granted connection withdraws its export limit.
    response = await bridge.delete(f"/resources/{granted['id']}", headers=auth(credentials["a"]))
    assert response.status == 200
    (cancelled,) = await signals(ws, 1)
    assert cancelled["operation"] == "DELETE"
    assert cancelled["object"]["id"] == f"grant-{granted['id']}"
    home.verify(cancelled["object"], operation=Operation.DELETE)
    await ws.close()


async def test_a_home_reaches_only_its_own_resources(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    created = await (
        await bridge.post("/resources", json=pv_request(3), headers=auth(credentials["a"]))
    ).json()
    other = auth(credentials["b"])
    assert await (await bridge.get("/resources", headers=other)).json() == []
    assert (await bridge.get(f"/resources/{created['id']}", headers=other)).status == 404
    assert (await bridge.delete(f"/resources/{created['id']}", headers=other)).status == 404
    assert (
        await bridge.get(f"/resources/{created['id']}", headers=auth(credentials["a"]))
    ).status == 200
    vens = await (await bridge.get("/vens", headers=other)).json()
    assert [v["id"] for v in vens] == [HOME_B.home]


async def test_without_a_delegation_every_request_goes_to_the_grid(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    response = await bridge.post("/resources", json=pv_request(1), headers=auth(credentials["a"]))
    attributes = {a["type"]: a["values"] for a in (await response.json())["attributes"]}
    assert attributes["X_CONNECTION_STATUS"] == ["REQUESTED"]
    stored = await bridge.app[LEDGER].home_resources("a")
    assert [(r.status, r.upstream_id) for r in stored] == [("REQUESTED", None)]  # posted later


async def test_the_authority_keeps_its_key_and_refuses_delegations_not_for_it(
    make_bridge: Any, signer: Signer
) -> None:
    first = await make_bridge()
    key = first.app[AUTHORITY].key
    await delegate(first, signer)
    # Pinned in the ledger, as the bridge pins the grid's keys (the fixture pins in memory).
    await first.app[LEDGER].pin_grid_key(
        signer.public_key.kid, signer.issuer, signer.public_key.to_jwk()
    )
    await first.close()

    second = await make_bridge()
    authority = second.app[AUTHORITY]
    assert authority.key == key  # the same key after a restart...
    assert authority.current is not None  # ...and the delegation it held

    stranger = Signer.generate(community_issuer("c1")).public_key
    for token in (
        issue_delegation(signer, delegate=community_issuer("c1"), community="c1", key=stranger,
                         grants=[Grant("EXPORT_CAPACITY_LIMIT")], lifetime=60),
        issue_delegation(signer, delegate="community:c2", community="c1", key=key,
                         grants=[Grant("EXPORT_CAPACITY_LIMIT")], lifetime=60),
        issue_delegation(Signer.generate("test-grid"), delegate=community_issuer("c1"),
                         community="c1", key=key, grants=[Grant("EXPORT_CAPACITY_LIMIT")],
                         lifetime=60),
    ):  # fmt: skip
        assert (
            await authority.accept({"attributes": [{"type": DELEGATION, "values": [token]}]})
            is None
        )
    assert authority.refused == 3
