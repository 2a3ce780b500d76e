"""Roles and enrollment: each endpoint admits exactly its roles; homes reach only their own data."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
import pytest

from smart_community_bridge import homes
from smart_community_bridge.access import (
    OPERATOR_PREFIX,
    Role,
    declared_roles,
    new_token,
    token_hash,
)
from smart_community_bridge.state import LEDGER, RELAY, UPSTREAM

from .conftest import HOME_A, HOME_B, auth

type Identities = dict[str, str | None]


@pytest.fixture(name="identities")
async def identities_fixture(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> Identities:
    operator = new_token(OPERATOR_PREFIX)
    await bridge.app[LEDGER].add_operator_token("ops", token_hash(operator))
    return {
        "anonymous": None,
        "home A": credentials["a"],
        "home B": credentials["b"],
        "operator": operator,
        "grid": bridge.app[UPSTREAM].webhook_token,
    }


ROLE_OF = {"home A": Role.HOME, "home B": Role.HOME, "operator": Role.OPERATOR, "grid": Role.GRID}


def concrete(path: str) -> str:
    """A route's path with its parameters filled in (home B's id: home A would trespass)."""
    return re.sub(r"\{[^}]+\}", HOME_B.home, path)


async def test_every_endpoint_admits_exactly_its_roles(
    bridge: TestClient[Any, Any], identities: Identities
) -> None:
    checked = 0
    for route in bridge.app.router.routes():
        if route.method == "HEAD":
            continue
        roles = declared_roles(route.handler)
        assert roles is not None, f"{route.method} {route.resource.canonical} declares no roles"
        path = concrete(route.resource.canonical)
        for name, token in identities.items():
            headers = auth(token) if token else {}
            response = await bridge.request(route.method, path, headers=headers, json={})
            body = await response.json(content_type=None) if response.status in (401, 403) else {}
            refused = response.status == 401 or (
                response.status == 403 and " is for " in str(body.get("detail"))
            )
            admitted = not roles or (name in ROLE_OF and ROLE_OF[name] in roles)
            assert refused is not admitted, (route.method, path, name, response.status, body)
            if refused and token is None:
                assert response.status == 401
            checked += 1
    assert checked >= 5 * 12


def test_no_home_endpoint_takes_a_home_id(bridge: TestClient[Any, Any]) -> None:
    """A home is identified by its credential only, so it cannot name another home's data; the
    only ids it puts in a path are of its own resources (another home's are not found)."""
    for route in bridge.app.router.routes():
        roles = declared_roles(route.handler) or frozenset()
        if Role.HOME in roles:
            assert route.resource.canonical in {"/resources/{resourceID}"} or (
                "{" not in route.resource.canonical
            ), route.resource.canonical


async def test_enrollment_code_is_single_use_and_expires(
    bridge: TestClient[Any, Any], identities: Identities
) -> None:
    operator = auth(identities["operator"] or "")
    response = await bridge.post(
        "/operator/enrollment-codes",
        json={"home": "c", "feeder": "f2", "transformer": "t9"},
        headers=operator,
    )
    assert response.status == 201
    issued = await response.json()
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){5}", issued["code"])

    typed = issued["code"].lower().replace("-", " ")  # as a resident might type it
    response = await bridge.post("/enroll", json={"code": typed})
    assert response.status == 201
    enrolled = await response.json()
    assert (enrolled["home"], enrolled["feeder"], enrolled["transformer"]) == ("c", "f2", "t9")
    assert "transformer:c1/t9" in enrolled["targets"]
    home = await bridge.get("/home", headers=auth(enrolled["credential"]))
    assert (await home.json())["home"] == "c"

    again = await bridge.post("/enroll", json={"code": issued["code"]})
    assert again.status == 403
    assert "used or expired" in (await again.json())["detail"]

    expired = homes.new_code()
    await bridge.app[LEDGER].add_enrollment_code(
        token_hash(homes.normalise_code(expired)), "d", "f1", "t1", time.time() - 1
    )
    assert (await bridge.post("/enroll", json={"code": expired})).status == 403

    # Nothing about the stored code gives it away: only its hash is kept.
    assert issued["code"] not in str(await bridge.app[LEDGER].homes())


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "code"),
        ({"code": 7}, "code"),
        ({"code": "x" * 65}, "code"),
    ],
)
async def test_enroll_rejects_bad_bodies_naming_the_key(
    bridge: TestClient[Any, Any], body: dict[str, Any], where: str
) -> None:
    response = await bridge.post("/enroll", json=body)
    assert response.status == 400
    assert (await response.json())["detail"].startswith(where)
    assert (await bridge.post("/enroll", data=b"{nope")).status == 400


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"feeder": "f", "transformer": "t"}, "home"),
        ({"home": "h/1", "feeder": "f", "transformer": "t"}, "home"),
        ({"home": "h", "feeder": "f", "transformer": "t", "ttl": 5}, "ttl"),
        ({"home": "h", "feeder": "f", "transformer": "t", "extra": 1}, "extra"),
    ],
)
async def test_operator_enrollment_rejects_bad_bodies_naming_the_key(
    bridge: TestClient[Any, Any], identities: Identities, body: dict[str, Any], where: str
) -> None:
    response = await bridge.post(
        "/operator/enrollment-codes", json=body, headers=auth(identities["operator"] or "")
    )
    assert response.status == 400
    assert (await response.json())["detail"].startswith(where)


async def test_rotation_replaces_the_credential(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    response = await bridge.post("/home/credential", headers=auth(credentials["a"]))
    fresh = (await response.json())["credential"]
    assert fresh != credentials["a"]
    assert (await bridge.get("/home", headers=auth(credentials["a"]))).status == 401
    assert (await bridge.get("/home", headers=auth(fresh))).status == 200


async def test_revoked_home_is_disconnected_at_once_and_stays_out(
    bridge: TestClient[Any, Any], identities: Identities, credentials: dict[str, str]
) -> None:
    socket_a = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    socket_b = await bridge.ws_connect("/ws", headers=auth(credentials["b"]))
    await socket_a.receive_json()
    await socket_b.receive_json()
    operator = auth(identities["operator"] or "")

    response = await bridge.post(f"/operator/homes/{HOME_A.home}/revoke", headers=operator)
    assert await response.json() == {"home": "a", "revoked": True, "disconnected": 1}
    async with asyncio.timeout(5):
        closing = await socket_a.receive()
    assert closing.type is WSMsgType.CLOSE
    assert closing.data == 1008
    assert (await bridge.get("/home", headers=auth(credentials["a"]))).status == 401
    assert bridge.app[RELAY].connected_homes() == {"b"}  # the neighbour stays connected
    listing = await (await bridge.get("/operator/homes", headers=operator)).json()
    assert {h["home"]: (h["revoked"], h["connected"]) for h in listing} == {
        "a": (True, False),
        "b": (False, True),
    }
    assert (await bridge.post("/operator/homes/nobody/revoke", headers=operator)).status == 404

    # The operator can let the home back in with a new code; the old credential stays dead.
    code = (
        await (
            await bridge.post(
                "/operator/enrollment-codes",
                json={"home": "a", "feeder": HOME_A.feeder, "transformer": HOME_A.transformer},
                headers=operator,
            )
        ).json()
    )["code"]
    fresh = (await (await bridge.post("/enroll", json={"code": code})).json())["credential"]
    assert (await bridge.get("/home", headers=auth(fresh))).status == 200
    assert (await bridge.get("/home", headers=auth(credentials["a"]))).status == 401
    await socket_b.close()


async def test_status_and_openapi(bridge: TestClient[Any, Any], identities: Identities) -> None:
    response = await bridge.get("/operator/status", headers=auth(identities["operator"] or ""))
    status = await response.json()
    assert status["community"] == "c1"
    assert status["homes_connected"] == 0
    assert status["grid_connected"] is False  # its grid is unreachable in these tests
    assert status["delegation"] is None
    assert status["faults"] == 0
    document = await (await bridge.get("/operator/openapi.yaml")).text()
    assert "/operator/enrollment-codes" in document
