"""Telemetry: reports stored once acknowledged, rolled up per transformer, feeder and community."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient
import pytest

from smart_community_bridge import homes
from smart_community_bridge.state import INGEST, LEDGER
from smart_community_protocol import Placement, format_datetime
from smart_community_protocol.push import encode_report

from .conftest import HOME_A, HOME_B, BridgeFactory, auth

BUCKET = 300


def report(
    demand_kw: float, usage_kwh: float, start: float, event_id: str = "X_TELEMETRY"
) -> dict[str, Any]:
    """A home's telemetry as an OpenADR reportRequest."""
    return {
        "eventID": event_id,
        "clientName": "home",
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "DEMAND", "units": "KW"},
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE", "units": "KWH"},
        ],
        "resources": [
            {
                "resourceName": "home",
                "intervalPeriod": {"start": format_datetime_epoch(start), "duration": "PT10S"},
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [
                            {"type": "DEMAND", "values": [demand_kw]},
                            {"type": "USAGE", "values": [usage_kwh]},
                            {"type": "OPERATING_STATE", "values": ["NORMAL"]},
                        ],
                    }
                ],
            }
        ],
    }


def format_datetime_epoch(moment: float) -> str:

    return format_datetime(datetime.fromtimestamp(moment, UTC))


def bucket_now() -> float:
    now = time.time()
    return now - now % BUCKET


async def rollup_of(
    bridge: TestClient[Any, Any], level: str, place: str, bucket: float
) -> dict[str, tuple[float, int, int]]:
    rows = await bridge.app[LEDGER].rollups(level, place, 0, 2**40)
    return {row[0]: (round(row[2], 6), row[3], row[4]) for row in rows if row[1] == bucket}


async def test_reports_are_stored_and_rolled_up_at_every_level(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    start = bucket_now()  # every sample falls in the same bucket
    for credential, demand, usage in (
        (credentials["a"], 2.0, 0.005),
        (credentials["b"], 3.0, 0.008),
    ):
        response = await bridge.post(
            "/reports", json=report(demand, usage, start), headers=auth(credential)
        )
        assert response.status == 201, await response.text()
        stored = await response.json()
        assert stored["objectType"] == "REPORT"
        assert stored["id"].startswith("report-")
    # A second sample from home A in the same bucket: its mean counts, not the sum of samples.
    await bridge.post(
        "/reports", json=report(4.0, 0.01, start + 10), headers=auth(credentials["a"])
    )

    community = await rollup_of(bridge, "community", "c1", start)
    assert community["DEMAND"] == (9.0, 3, 2)  # total of values, readings, homes
    assert community["USAGE"] == (0.023, 3, 2)
    assert "OPERATING_STATE" not in community
    assert (await rollup_of(bridge, "transformer", HOME_A.transformer, start))["DEMAND"] == (
        6.0,
        2,
        1,
    )
    assert (await rollup_of(bridge, "transformer", HOME_B.transformer, start))["DEMAND"] == (
        3.0,
        1,
        1,
    )
    assert (await rollup_of(bridge, "feeder", "f1", start))["USAGE"] == (0.023, 3, 2)
    assert bridge.app[INGEST].ingested == 3


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda r: r.pop("eventID"), "eventID"),
        (
            lambda r: r["resources"][0]["intervals"][0].update(id="zero"),
            "resources[0].intervals[0].id",
        ),
        (lambda r: r["resources"][0].update(intervals="none"), "resources[0].intervals"),
        (
            lambda r: r["resources"][0]["intervalPeriod"].update(duration="ten"),
            "resources[0].intervalPeriod.duration",
        ),
        (
            lambda r: r["resources"][0]["intervalPeriod"].update(start="yesterday"),
            "resources[0].intervalPeriod.start",
        ),
    ],
)
async def test_bad_reports_are_refused_naming_the_field(
    bridge: TestClient[Any, Any], credentials: dict[str, str], mutate: Any, where: str
) -> None:
    body = report(1.0, 0.1, time.time())
    mutate(body)
    response = await bridge.post("/reports", json=body, headers=auth(credentials["a"]))
    assert response.status == 400
    assert where in (await response.json())["detail"]
    assert bridge.app[INGEST].ingested == 0
    assert (await bridge.post("/reports", data=b"[", headers=auth(credentials["a"]))).status == 400


async def test_reports_over_the_push_channel(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    assert (await ws.receive_json())["type"] == "welcome"
    start = bucket_now()
    await ws.send_str(encode_report(1, report(1.5, 0.004, start)))
    await ws.send_str(encode_report(2, {"eventID": "x"}))
    results = {}
    async with asyncio.timeout(5):
        while len(results) < 2:
            message = json.loads((await ws.receive()).data)
            if message["type"] == "report_result":
                results[message["ref"]] = message
    assert results[1]["status"] == 201
    assert results[2]["status"] == 400
    assert "clientName" in results[2]["detail"]
    assert (await rollup_of(bridge, "community", "c1", start))["DEMAND"] == (1.5, 1, 1)
    await ws.close()


async def test_open_buckets_survive_a_restart_exactly(make_bridge: BridgeFactory) -> None:
    first = await make_bridge()
    placement = Placement(community="c1", feeder="f1", transformer="t1", home="h")
    credential = await homes.add_home(first.app[LEDGER], placement)
    start = bucket_now()
    await first.post("/reports", json=report(2.0, 0.01, start), headers=auth(credential))
    await first.close()

    second = await make_bridge()
    await second.post("/reports", json=report(4.0, 0.02, start + 10), headers=auth(credential))
    assert (await rollup_of(second, "transformer", "t1", start))["DEMAND"] == (
        6.0,
        2,
        1,
    )  # one home


async def test_late_readings_are_stored_but_not_rolled_up(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    old = time.time() - 3 * 3600
    response = await bridge.post(
        "/reports", json=report(2.0, 0.01, old), headers=auth(credentials["a"])
    )
    assert response.status == 201
    assert bridge.app[INGEST].late == 2
    assert await bridge.app[LEDGER].rollups("community", "c1", 0, 2**40) == []
    late = await bridge.app[LEDGER].late_readings_since(old - 1)
    assert sorted((row[0], row[3], row[6]) for row in late) == [
        ("a", "DEMAND", 2.0),
        ("a", "USAGE", 0.01),
    ]


async def test_readings_from_the_future_are_refused(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    response = await bridge.post(
        "/reports", json=report(2.0, 0.01, time.time() + 3600), headers=auth(credentials["a"])
    )
    assert response.status == 400
    assert "resources[0].intervals[0]" in (await response.json())["detail"]
    assert "future" in (await response.json())["detail"]
    assert bridge.app[INGEST].ingested == 0


async def test_numbers_json_does_not_have_are_refused(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    body = json.dumps(report(2.0, 0.01, time.time())).replace("2.0", "NaN")
    response = await bridge.post("/reports", data=body, headers=auth(credentials["a"]))
    assert response.status == 400
    assert "not JSON" in (await response.json())["detail"]
    ws = await bridge.ws_connect("/ws", headers=auth(credentials["a"]))
    assert (await ws.receive_json())["type"] == "welcome"
    await ws.send_str(encode_report(1, report(1.0, 0.01, time.time())).replace("1.0", "Infinity"))
    await ws.send_str(encode_report(2, report(1.0, 0.01, time.time())))
    async with asyncio.timeout(5):
        while (message := json.loads((await ws.receive()).data))["type"] != "report_result":
            pass
    assert (message["ref"], message["status"]) == (2, 201)  # the bad frame was ignored, loudly
    await ws.close()


async def test_telemetry_is_kept_as_buckets_and_event_answers_raw(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    ledger = bridge.app[LEDGER]
    start = bucket_now()
    for event_id in ("X_TELEMETRY", "e1"):
        response = await bridge.post(
            "/reports", json=report(2.0, 0.01, start, event_id), headers=auth(credentials["a"])
        )
        assert response.status == 201
    assert [value.event_id for value in await ledger.report_values(["e1"], 0, 2**40, ["DEMAND"])]
    assert await ledger.report_values(["X_TELEMETRY"], 0, 2**40, ["DEMAND"]) == []
    homes_buckets = await ledger.home_buckets_since(start)
    assert sorted((row[1], row[2], row[3], row[4]) for row in homes_buckets) == [
        ("a", "DEMAND", 4.0, 2),
        ("a", "USAGE", 0.02, 2),
    ]


async def test_a_report_sent_again_is_counted_once(make_bridge: BridgeFactory) -> None:
    bridge = await make_bridge()
    credential = await homes.add_home(bridge.app[LEDGER], HOME_A)
    other = await homes.add_home(bridge.app[LEDGER], HOME_B)
    start = bucket_now()
    sent = report(2.0, 0.01, start)
    first = await (await bridge.post("/reports", json=sent, headers=auth(credential))).json()
    # The same report again, its keys in another order: the answer was lost, say.
    again = await bridge.post(
        "/reports", json=dict(reversed(sent.items())), headers=auth(credential)
    )
    assert again.status == 201
    assert (await again.json())["id"] == first["id"]
    # Twice in a row over the push channel: the second is the first's copy.
    ws = await bridge.ws_connect("/ws", headers=auth(credential))
    await ws.receive_json()
    twice = report(3.0, 0.02, start + 10)
    await ws.send_str(encode_report(1, twice))
    await ws.send_str(encode_report(2, twice))
    answered: set[int] = set()
    async with asyncio.timeout(5):
        while answered != {1, 2}:
            message = json.loads((await ws.receive()).data)
            if message["type"] == "report_result":
                assert message["status"] == 201
                answered.add(message["ref"])
    await ws.close()
    # Another home reporting the very same figures is another report.
    await bridge.post("/reports", json=sent, headers=auth(other))
    assert bridge.app[INGEST].repeated == 2
    assert bridge.app[INGEST].ingested == 3
    assert (await rollup_of(bridge, "transformer", HOME_A.transformer, start))["DEMAND"] == (
        5.0,
        2,
        1,
    )
    assert (await rollup_of(bridge, "transformer", HOME_B.transformer, start))["DEMAND"] == (
        2.0,
        1,
        1,
    )


async def test_an_event_answer_sent_again_is_stored_once_even_after_a_restart(
    make_bridge: BridgeFactory,
) -> None:
    first = await make_bridge()
    credential = await homes.add_home(first.app[LEDGER], HOME_A)
    answer = report(2.0, 0.01, bucket_now(), event_id="e1")
    stored = await (await first.post("/reports", json=answer, headers=auth(credential))).json()
    await first.close()

    second = await make_bridge()
    again = await (await second.post("/reports", json=answer, headers=auth(credential))).json()
    assert again["id"] == stored["id"]
    values = await second.app[LEDGER].report_values(["e1"], 0, 2**40, ["DEMAND"])
    assert [value.value for value in values] == [2.0]


async def test_retention_prunes_old_telemetry(
    bridge: TestClient[Any, Any], credentials: dict[str, str]
) -> None:
    ledger = bridge.app[LEDGER]
    now = time.time()
    await bridge.post("/reports", json=report(2.0, 0.01, now), headers=auth(credentials["a"]))
    await bridge.post(
        "/reports", json=report(2.0, 0.01, now - 3 * 3600), headers=auth(credentials["a"])
    )
    await ledger.prune_telemetry(raw_before=now - 3600, rollups_before=0)
    assert len(await ledger.home_buckets_since(0)) == 2
    assert await ledger.late_readings_since(0) == []  # three hours old: past raw retention
    await ledger.prune_telemetry(raw_before=now + 600, rollups_before=now + 600)
    assert await ledger.home_buckets_since(0) == []
    assert await ledger.rollups("community", "c1", 0, 2**40) == []
    metrics = await (await bridge.get("/metrics")).text()
    assert "smart_community_reports_ingested_total 2.0" in metrics
