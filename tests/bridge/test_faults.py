"""Fault response: the community locates a fault at a transformer or feeder, tells the homes
around it (a community-signed alert) and ends the notice once supply is back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
import json
from typing import Any

from aiohttp.test_utils import TestClient

from smart_community_bridge import homes
from smart_community_bridge.authority import DELEGATION, community_issuer
from smart_community_bridge.faults import FaultLocator
from smart_community_bridge.ledger import HomeRecord
from smart_community_bridge.state import AUTHORITY, FAULTS, LEDGER
from smart_community_protocol import (
    Grant,
    Operation,
    Placement,
    Signer,
    Verifier,
    format_datetime,
    issue_delegation,
)

from .conftest import auth

TOPOLOGY = [
    HomeRecord(f"h{i}", "f1" if i < 8 else "f2", f"t{i // 4}", revoked=False) for i in range(12)
]  # t0, t1 on feeder f1; t2 on f2; four homes each


def test_reports_from_enough_homes_of_a_transformer_locate_a_fault() -> None:
    locator = FaultLocator()
    locator.report("h0", "LOSS_OF_SUPPLY", at=100)
    assert locator.assess(101, TOPOLOGY) == []  # one home: its own problem, perhaps
    locator.report("h1", "DEVICE_FAULT", at=100)  # a device fault stays the home's own
    assert locator.assess(101, TOPOLOGY) == []
    locator.dropped("h1", at=100.5)  # ...but its drop off the push channel adds up
    (fault,) = locator.assess(101, TOPOLOGY)
    assert (fault.level, fault.place, fault.feeder, fault.code) == (
        "transformer",
        "t0",
        "f1",
        "LOSS_OF_SUPPLY",
    )
    assert fault.homes == {"h0", "h1"}
    assert fault.since == 100

    # Drops alone, even many, are the network's, not a fault.
    for home in ("h8", "h9", "h10", "h11"):
        locator.dropped(home, at=101)
    assert [f.place for f in locator.assess(102, TOPOLOGY)] == ["t0"]

    # A second transformer of the feeder: the feeder has the fault.
    locator.report("h4", "LOSS_OF_SUPPLY", at=103)
    locator.report("h5", "VOLTAGE_QUALITY", at=103)
    located = {(f.level, f.place) for f in locator.assess(104, TOPOLOGY)}
    assert located == {("transformer", "t0"), ("transformer", "t1"), ("feeder", "f1")}

    # It holds past the window, until most of its homes are back.
    assert ("transformer", "t0") in {f.key for f in locator.assess(500, TOPOLOGY)}
    locator.returned("h0")
    locator.returned("h1")
    assert ("transformer", "t0") not in {f.key for f in locator.assess(501, TOPOLOGY)}


def test_old_evidence_alone_is_forgotten() -> None:
    locator = FaultLocator()
    locator.report("h0", "LOSS_OF_SUPPLY", at=0)
    locator.report("h1", "LOSS_OF_SUPPLY", at=200)  # too long after the first
    assert locator.assess(201, TOPOLOGY) == []


def fault_report(start: str) -> dict[str, Any]:
    return {
        "eventID": "X_FAULT",
        "clientName": "home",
        "resources": [
            {
                "resourceName": "home",
                "intervals": [
                    {
                        "id": 0,
                        "intervalPeriod": {"start": start},
                        "payloads": [
                            {"type": "OPERATING_STATE", "values": ["ERROR"]},
                            {"type": "X_FAULT_CODE", "values": ["LOSS_OF_SUPPLY"]},
                        ],
                    }
                ],
            }
        ],
    }


async def test_a_located_fault_alerts_the_feeder_and_ends_when_supply_is_back(
    bridge: TestClient[Any, Any], signer: Signer
) -> None:
    authority = bridge.app[AUTHORITY]
    token = issue_delegation(
        signer, delegate=community_issuer("c1"), community="c1", key=authority.key,
        grants=[Grant("ALERT_OTHER", text=True)], lifetime=3600,
    )  # fmt: skip
    assert await authority.accept({"attributes": [{"type": DELEGATION, "values": [token]}]})
    ledger = bridge.app[LEDGER]
    places = [
        Placement(community="c1", feeder="f1", transformer="t9", home=f"n{i}") for i in range(3)
    ]
    credentials = [await homes.add_home(ledger, place) for place in places]
    neighbour = Placement(community="c1", feeder="f1", transformer="t8", home="m0")
    watcher = await bridge.ws_connect("/ws", headers=auth(await homes.add_home(ledger, neighbour)))
    await watcher.receive_json()

    now = format_datetime(datetime.now(UTC))
    for credential in credentials[:2]:
        response = await bridge.post("/reports", json=fault_report(now), headers=auth(credential))
        assert response.status == 201, await response.text()
    faults = bridge.app[FAULTS]
    await faults.assess()
    assert [(f.level, f.place) for f in faults.active.values()] == [("transformer", "t9")]
    assert faults.located == 1

    async def next_signal() -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                message = json.loads((await watcher.receive()).data)
                if message["type"] == "signal":
                    return message["notification"]

    alert = await next_signal()  # the neighbour on the same feeder hears of it
    home = Verifier([signer.public_key], audience=neighbour.targets)
    verified = home.verify(alert["object"], operation=Operation(alert["operation"]))
    assert verified.delegation is not None
    (payload,) = verified.object["intervals"][0]["payloads"]
    assert payload["type"] == "ALERT_OTHER"
    assert "Supply lost at transformer t9" in payload["values"][0]
    assert set(verified.object["targets"]) == {"transformer:c1/t9", "feeder:c1/f1"}

    operator_token = homes.new_token("sco_")
    await ledger.add_operator_token("ops", homes.token_hash(operator_token))
    listed = await (await bridge.get("/operator/faults", headers=auth(operator_token))).json()
    assert [(f["place"], f["code"], f["homes"]) for f in listed] == [
        ("t9", "LOSS_OF_SUPPLY", ["n0", "n1"])
    ]
    metrics = await (await bridge.get("/metrics")).text()
    assert "smart_community_faults_active 1.0" in metrics
    assert "smart_community_faults_located_total 1.0" in metrics

    # Supply is back: the homes reconnect, the notice is withdrawn.
    sockets = [await bridge.ws_connect("/ws", headers=auth(c)) for c in credentials[:2]]
    await faults.assess()
    assert faults.active == {}
    withdrawn = await next_signal()
    assert withdrawn["operation"] == "DELETE"
    home.verify(withdrawn["object"], operation=Operation.DELETE)
    for socket in (*sockets, watcher):
        await socket.close()
