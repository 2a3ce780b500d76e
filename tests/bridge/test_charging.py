"""EV charging management: a transformer's headroom shared among its charging EVs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient
import pytest

from smart_community_bridge import homes
from smart_community_bridge.authority import DELEGATION, community_issuer
from smart_community_bridge.charging import allocate
from smart_community_bridge.state import AUTHORITY, CHARGING, LEDGER
from smart_community_protocol import Grant, Operation, Placement, Signer, Verifier, issue_delegation

from .conftest import BridgeFactory, auth
from .test_telemetry import bucket_now, format_datetime_epoch


def test_shares_are_fair_and_never_more_than_a_home_draws() -> None:
    assert allocate(30, {"a": 7, "b": 11}, 1.4) is None  # all fit
    assert allocate(20, {"a": 11, "b": 11}, 1.4) == {"a": 10, "b": 10}
    # A home drawing less than its share keeps what it draws; the others share the rest.
    assert allocate(20, {"a": 4, "b": 11, "c": 11}, 1.4) == {"a": 4, "b": 8, "c": 8}
    # Too little for everyone's minimum: each still gets the minimum a charger needs.
    assert allocate(2, {"a": 7, "b": 7}, 1.4) == {"a": 1.4, "b": 1.4}


def telemetry(demand_kw: float, ev_kw: float) -> dict[str, Any]:
    start = format_datetime_epoch(bucket_now())
    return {
        "eventID": "X_TELEMETRY",
        "clientName": "home",
        "resources": [
            {
                "resourceName": "home",
                "intervalPeriod": {"start": start, "duration": "PT10S"},
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [
                            {"type": "DEMAND", "values": [demand_kw]},
                            {"type": "X_EV_POWER", "values": [ev_kw]},
                        ],
                    }
                ],
            }
        ],
    }


@pytest.fixture(name="managed")
async def managed_fixture(make_bridge: BridgeFactory, signer: Signer) -> TestClient[Any, Any]:
    """A bridge managing transformer t5 (30 kW, planned to 90 %) under the grid's delegation."""
    bridge = await make_bridge(ev_charging={"transformer_kw": {"t5": 30}})
    authority = bridge.app[AUTHORITY]
    token = issue_delegation(
        signer, delegate=community_issuer("c1"), community="c1", key=authority.key,
        grants=[Grant("X_EV_CHARGING_LIMIT", 1.4, 22)], lifetime=3600,
    )  # fmt: skip
    assert await authority.accept({"attributes": [{"type": DELEGATION, "values": [token]}]})
    return bridge


async def test_chargers_over_a_transformer_get_shares_and_lose_them_when_it_has_room(
    managed: TestClient[Any, Any], signer: Signer
) -> None:
    ledger = managed.app[LEDGER]
    places = [
        Placement(community="c1", feeder="f1", transformer="t5", home=f"e{i}") for i in range(3)
    ]
    credentials = [await homes.add_home(ledger, place) for place in places]
    watcher = await managed.ws_connect("/ws", headers=auth(credentials[0]))
    await watcher.receive_json()
    # e0 and e1 charge at 11 kW on top of 3 kW each of other load; e2 uses 2 kW, no EV.
    for credential, (demand, ev) in zip(credentials, ((14, 11), (14, 11), (2, 0)), strict=True):
        response = await managed.post(
            "/reports", json=telemetry(demand, ev), headers=auth(credential)
        )
        assert response.status == 201
    charging = managed.app[CHARGING]
    await charging.allocate(await ledger.homes())
    # 27 kW planned, 8 kW of other load: 19 kW for two chargers.
    assert charging.limits == {"e0": 9.5, "e1": 9.5}

    async with asyncio.timeout(5):
        while (message := json.loads((await watcher.receive()).data))["type"] != "signal":
            pass
    home = Verifier([signer.public_key], audience=places[0].targets)
    verified = home.verify(message["notification"]["object"], operation=Operation.CREATE)
    assert verified.object["id"] == "ev-limit-e0"
    assert verified.object["intervals"][0]["payloads"] == [
        {"type": "X_EV_CHARGING_LIMIT", "values": [9.5]}
    ]

    await charging.allocate(await ledger.homes())  # nothing changed: nothing sent again
    assert charging.limits == {"e0": 9.5, "e1": 9.5}

    # e1's car is full: the bucket's mean of its EV power halves (5.5 kW), and with e0's 11 kW
    # both fit in the 19 kW left: the limits are withdrawn.
    await managed.post("/reports", json=telemetry(3, 0), headers=auth(credentials[1]))
    await charging.allocate(await ledger.homes())
    assert charging.limits == {}
    async with asyncio.timeout(5):
        while (message := json.loads((await watcher.receive()).data))["type"] != "signal":
            pass
    assert message["notification"]["operation"] == "DELETE"
    await watcher.close()


async def test_no_limits_without_the_grids_delegation(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge(ev_charging={"default_transformer_kw": 5})
    ledger = bridge.app[LEDGER]
    credential = await homes.add_home(
        ledger, Placement(community="c1", feeder="f1", transformer="t5", home="e0")
    )
    await bridge.post("/reports", json=telemetry(14, 11), headers=auth(credential))
    charging = bridge.app[CHARGING]
    await charging.allocate(await ledger.homes())
    assert charging.limits == {}
