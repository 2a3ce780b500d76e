"""The scenario runner publishes the tariff at start and each event at its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from smart_community_grid.issuer import Issuer
from smart_community_grid.oauth import Principal
from smart_community_grid.runner import ScenarioRunner
from smart_community_grid.scenario import parse_scenario
from smart_community_grid.vtn import Page, Vtn
from smart_community_grid.webhooks import Webhooks
from smart_community_protocol import Operation, Signer, parse_datetime

from .conftest import GridFactory, Receiver, scenario_dict, subscription


async def test_tariff_and_programs_exist_at_start(make_grid: GridFactory) -> None:
    grid = await make_grid()
    names = [p["programName"] for p in await grid.ok("GET", "/programs", as_="ven2")]
    assert names == ["tou", "dr"]
    tariff_id = await grid.program_id("tou")
    events = await grid.ok("GET", "/events", params={"programID": tariff_id})
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    assert [e["eventName"] for e in events] == [f"tou {today}", f"tou {today + timedelta(days=1)}"]
    starts = [parse_datetime(e["intervalPeriod"]["start"]) for e in events]
    assert starts[1] - starts[0] == timedelta(days=1)


async def test_each_new_day_brings_the_day_after(tmp_path: Path) -> None:
    scenario = parse_scenario(scenario_dict(), tmp_path)
    zone = ZoneInfo("Asia/Shanghai")
    now = [datetime(2026, 3, 1, 23, 59, tzinfo=zone)]
    async with aiohttp.ClientSession() as session:
        vtn = Vtn(
            clients=scenario.clients,
            communities=scenario.communities,
            issuer=Issuer(Signer.generate("g"), scenario.communities),
            webhooks=Webhooks(session, scenario.webhooks),
            clock=lambda: now[0],
        )
        runner = ScenarioRunner(scenario, vtn, clock=lambda: now[0])
        runner.start()
        now[0] += timedelta(minutes=2)
        runner._publish_tariff_days()
        runner._publish_tariff_days()
    bl = Principal.of(scenario.clients[0])
    names = [
        e["eventName"]
        for e in vtn.list_events(bl, program_id=None, targets=[], active=False, page=Page())
    ]
    assert names == ["tou 2026-03-01", "tou 2026-03-02", "tou 2026-03-03"]


async def test_events_are_published_on_schedule(make_grid: GridFactory, receiver: Receiver) -> None:
    events = [
        {
            "name": "later",
            "program": "dr",
            "publish_after": 0.7,
            "start_after": 600,
            "duration": "PT15M",
            "type": "IMPORT_CAPACITY_LIMIT",
            "value": 5.5,
            "units": "KW",
            "randomize_start": "PT2M",
            "targets": ["transformer:c1/t1"],
        },
        {
            "name": "sooner",
            "program": "dr",
            "publish_after": 0.5,
            "start_after": 120,
            "duration": "PT30M",
            "type": "SIMPLE",
            "value": 2,
        },
    ]
    started = datetime.now(UTC)
    grid = await make_grid(events=events)
    await grid.ok("POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("ven")))
    verifier = await grid.verifier("c1")
    # Subscribed before the runner's first publication, which comes half a second after start.
    first = (await receiver.next("ven", within=2)).body
    second = (await receiver.next("ven", within=2)).body
    assert [first["object"]["eventName"], second["object"]["eventName"]] == ["sooner", "later"]
    for notification in (first, second):
        assert notification["operation"] == "CREATE"
        assert verifier.verify(notification["object"]).claims.op is Operation.CREATE
    sooner, later = first["object"], second["object"]
    assert sooner["targets"] == ["community:c1", "community:c2"]
    assert sooner["intervals"][0]["payloads"] == [{"type": "SIMPLE", "values": [2]}]
    start = parse_datetime(sooner["intervalPeriod"]["start"])
    assert abs(start - (started + timedelta(seconds=120))) < timedelta(seconds=5)
    assert later["intervalPeriod"]["randomizeStart"] == "PT2M"
    assert later["payloadDescriptors"] == [
        {
            "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
            "payloadType": "IMPORT_CAPACITY_LIMIT",
            "units": "KW",
        }
    ]
    assert later["targets"] == ["transformer:c1/t1"]
    assert (
        await grid.ok("GET", "/events", as_="ven2", params={"programID": sooner["programID"]})
    ) == [sooner]
