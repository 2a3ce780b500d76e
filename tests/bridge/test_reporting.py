"""Upstream reporting: telemetry the grid asked for and the homes' responses, as OpenADR reports.

The body builders are checked on their own (against the protocol's strict check and the OpenADR
``reportRequest`` schema); then a real mock grid and a real bridge run together with a clock the
test controls: the grid reads exactly the aggregated values it asked for, a restarted bridge
repeats nothing, and a grid that refuses or is down gets the report later.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
import json
import math
from pathlib import Path
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
import pytest
import yaml

from smart_community_bridge import homes, reporting
from smart_community_bridge.app import create_app
from smart_community_bridge.config import ConfigError
from smart_community_bridge.ledger import Ledger, ReportValue
from smart_community_bridge.reporting import (
    HOMES_ERROR,
    OPTED_OUT,
    PARTICIPATING,
    ResponseTally,
    Scope,
    UpstreamReporter,
    iso_duration,
    plan_batches,
    report_scope,
    report_window,
    responses_report,
    scope_places,
    series,
    telemetry_report,
    telemetry_requests,
)
from smart_community_bridge.state import LEDGER, REPORTER
from smart_community_bridge.upstream import GridClient
from smart_community_grid.app import create_app as create_grid
from smart_community_grid.scenario import parse_scenario
from smart_community_protocol import (
    Event,
    Placement,
    ReportDescriptor,
    ReportRequest,
    format_datetime,
)
from smart_community_protocol.validation import check_body
from tests.loopback import free_port
from tests.openadr_conformance import SPEC

from .conftest import COMMUNITY, auth, bridge_config

T0 = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(name="schema", scope="module")
def schema_fixture() -> Callable[[str, dict[str, Any]], None]:
    """Validate a body against a schema of the OpenADR 3.1 specification (skipped without it)."""
    if not SPEC.exists():
        pytest.skip(f"OpenADR 3.1 specification not found at {SPEC}")
    from openapi_schema_validator import OAS30Validator, oas30_format_checker

    components = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]

    def validate(name: str, body: dict[str, Any]) -> None:
        OAS30Validator(
            {"$ref": f"#/components/schemas/{name}", "components": components},
            format_checker=oas30_format_checker,
        ).validate(body)

    return validate


def valid_report(schema: Callable[[str, dict[str, Any]], None], body: dict[str, Any]) -> None:
    check_body(ReportRequest, body)  # what the grid checks
    ReportRequest.parse(body)
    schema("reportRequest", body)


def model_event(**extra: Any) -> Event:
    return Event.parse(
        {
            "id": "event-1",
            "objectType": "EVENT",
            "createdDateTime": format_datetime(T0),
            "modificationDateTime": format_datetime(T0),
            "programID": "program-1",
            "intervalPeriod": {"start": format_datetime(T0), "duration": "PT1H"},
            "intervals": [
                {"id": i, "payloads": [{"type": "SIMPLE", "values": [1]}]} for i in range(4)
            ],
            **extra,
        }
    )


# --- pure functions -----------------------------------------------------------------------------


def test_iso_durations() -> None:
    assert iso_duration(300) == "PT5M"
    assert iso_duration(3600) == "PT1H"
    assert iso_duration(5430) == "PT1H30M30S"
    assert iso_duration(0) == "PT0S"
    assert iso_duration(1.5) == "PT1.5S"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        # frequency 2: a report per two buckets, once both have closed; the last one shorter.
        ({"frequency": 2, "closed": 60}, []),
        ({"frequency": 2, "closed": 120}, [(0, 120)]),
        ({"frequency": 2, "closed": 600}, [(0, 120), (120, 180)]),
        ({"frequency": 2, "closed": 600, "done": 120}, [(120, 180)]),
        ({"frequency": 2, "closed": 600, "done": 180}, []),
        # repeat caps the number of reports.
        ({"frequency": 1, "repeat": 2, "end": None, "closed": 600}, [(0, 60), (60, 120)]),
        ({"frequency": 1, "repeat": 2, "end": None, "closed": 600, "done": 120}, []),
        # frequency -1 on a bounded window: one report once the window has closed.
        ({"frequency": -1, "closed": 120}, []),
        ({"frequency": -1, "closed": 180}, [(0, 180)]),
        ({"frequency": -1, "closed": 180, "max_buckets": 2}, [(0, 120), (120, 180)]),
        # an end inside a bucket still reports that whole bucket.
        ({"frequency": -1, "end": 150, "closed": 180}, [(0, 180)]),
        # ad hoc, or -1 without end: whatever has closed.
        ({"frequency": 0, "closed": 600}, [(0, 180)]),
        ({"frequency": -1, "end": None, "closed": 300, "done": 60}, [(60, 300)]),
    ],
)
def test_batches_follow_frequency_and_repeat(
    arguments: dict[str, Any], expected: list[tuple[int, int]]
) -> None:
    plan = {
        "first": 0.0,
        "end": 180.0,
        "done": 0.0,
        "bucket_seconds": 60,
        "repeat": -1,
        "max_buckets": 100,
        **arguments,
    }
    assert plan_batches(**plan) == [(float(a), float(b)) for a, b in expected]


def test_window_honours_start_interval_and_num_intervals() -> None:
    event = model_event()
    bounds = (T0.timestamp(), (T0 + timedelta(hours=4)).timestamp())
    default = ReportDescriptor(payload_type="USAGE")
    assert report_window(event, default, bounds) == bounds
    subset = ReportDescriptor(payload_type="USAGE", start_interval=1, num_intervals=2)
    assert report_window(event, subset, bounds) == (
        (T0 + timedelta(hours=1)).timestamp(),
        (T0 + timedelta(hours=3)).timestamp(),
    )
    tail = ReportDescriptor(payload_type="USAGE", start_interval=3)
    assert report_window(event, tail, bounds) == ((T0 + timedelta(hours=3)).timestamp(), bounds[1])
    beyond = ReportDescriptor(payload_type="USAGE", start_interval=4)
    assert report_window(event, beyond, bounds) is None


def test_requests_are_the_rolled_up_historical_descriptors() -> None:
    event = model_event(
        reportDescriptors=[
            {"payloadType": "USAGE"},
            {"payloadType": "USAGE"},  # the same request twice is answered once
            {"payloadType": "DEMAND", "aggregate": True},
            {"payloadType": "OPERATING_STATE"},  # answered by the responses report
            {"payloadType": "LOAD_SHED_DELTA_AVAILABLE"},  # not something the bridge rolls up
            {"payloadType": "READING", "historical": False},  # a forecast
            {"payloadType": "X_PV_POWER", "targets": ["home:c1/a"]},  # one home's own data
        ]
    )
    requests = telemetry_requests(event, COMMUNITY, (T0.timestamp(), None))
    assert [(r.descriptor.payload_type, r.descriptor.aggregate) for r in requests] == [
        ("USAGE", False),
        ("DEMAND", True),
    ]
    assert all(r.scope == Scope(whole=True) for r in requests)


def test_scope_of_targets() -> None:
    assert report_scope(None, "c1") == Scope(whole=True)
    assert report_scope(["transformer:c1/t1", "community:c1"], "c1") == Scope(whole=True)
    assert report_scope(["feeder:c1/f1", "transformer:c1/t9", "feeder:c2/f7"], "c1") == Scope(
        whole=False, feeders=frozenset({"f1"}), transformers=frozenset({"t9"})
    )
    assert report_scope(["home:c1/a"], "c1") is None
    assert report_scope(["group:north"], "c1") == Scope(whole=True)

    topology = [("f1", "t1"), ("f1", "t2"), ("f2", "t9"), ("f2", "t3")]
    narrow = Scope(whole=False, feeders=frozenset({"f1"}), transformers=frozenset({"t1", "t9"}))
    assert scope_places(narrow, aggregate=True, community="c1", topology=topology) == [
        ("feeder", ["f1"]),
        ("transformer", ["t9"]),  # t1 counts within f1 already
    ]
    assert scope_places(narrow, aggregate=False, community="c1", topology=topology) == [
        ("transformer", ["t1", "t2", "t9"])
    ]
    whole = Scope(whole=True)
    assert scope_places(whole, aggregate=True, community="c1", topology=topology) == [
        ("community", ["c1"])
    ]
    assert scope_places(whole, aggregate=False, community="c1", topology=[]) == []


def test_series_aggregate_power_per_home_and_energy_as_sums() -> None:
    # (place, bucket, total, count, homes): t1 had two samples from one home, t2 one sample.
    demand = [("t1", 0.0, 6.0, 2, 1), ("t2", 0.0, 3.0, 1, 1), ("t2", 60.0, 5.0, 1, 1)]
    assert series(demand, "DEMAND", aggregate=True) == {"AGGREGATED_REPORT": {0.0: 6.0, 60.0: 5.0}}
    assert series(demand, "DEMAND", aggregate=False) == {
        "t1": {0.0: 3.0},
        "t2": {0.0: 3.0, 60.0: 5.0},
    }
    usage = [("t1", 0.0, 0.03, 2, 1), ("t2", 0.0, 0.05, 1, 1)]
    assert series(usage, "USAGE", aggregate=True) == {"AGGREGATED_REPORT": {0.0: 0.08}}


def test_telemetry_report_body(schema: Callable[[str, dict[str, Any]], None]) -> None:
    event = model_event()
    start = T0.timestamp()
    descriptor = ReportDescriptor(payload_type="USAGE", units="KWH")
    body = telemetry_report(
        event=event,
        client_name="bridge-c1",
        community="c1",
        descriptor=descriptor,
        bucket_seconds=300,
        values={"t2": {start + 300: 0.1 + 0.2}, "t1": {start: 0.5, start + 300: 0.25}},
    )
    assert body is not None
    valid_report(schema, body)
    assert body["eventID"] == "event-1"
    assert body["programID"] == "program-1"
    assert body["clientName"] == "bridge-c1"
    assert body["payloadDescriptors"] == [
        {
            "objectType": "REPORT_PAYLOAD_DESCRIPTOR",
            "payloadType": "USAGE",
            "readingType": "SUMMED",
            "units": "KWH",
        }
    ]
    t1, t2 = body["resources"]
    assert t1["resourceName"] == "t1"
    assert [(i["id"], i["intervalPeriod"], i["payloads"]) for i in t1["intervals"]] == [
        (
            0,
            {"start": "2027-03-01T10:00:00Z", "duration": "PT5M"},
            [{"type": "USAGE", "values": [0.5]}],
        ),
        (
            1,
            {"start": "2027-03-01T10:05:00Z", "duration": "PT5M"},
            [{"type": "USAGE", "values": [0.25]}],
        ),
    ]
    # The same bucket has the same id in every resource; float noise is left out.
    assert [(i["id"], i["payloads"][0]["values"]) for i in t2["intervals"]] == [(1, [0.3])]
    assert (
        telemetry_report(
            event=event,
            client_name="b",
            community="c1",
            descriptor=descriptor,
            bucket_seconds=300,
            values={"t1": {}},
        )
        is None
    )


def value(row: int, home: str, payload_type: str, number: Any, **extra: Any) -> ReportValue:
    return ReportValue(
        event_id="event-1",
        row=row,
        home=home,
        resource=extra.get("resource", "home"),
        interval=extra.get("interval", "2027-03-01T10:00:00Z"),
        payload_type=payload_type,
        index=extra.get("index", 0),
        value=number,
    )


def test_tally_counts_each_home_by_its_latest_response() -> None:
    tally = ResponseTally()
    assert tally.summary() == {}
    tally.add(value(1, "a", "OPERATING_STATE", "NORMAL"))
    assert tally.summary() == {}  # a normal state is no response
    tally.add(value(2, "a", "OPERATING_STATE", "RUNNING_CURTAILED"))
    tally.add(value(3, "b", "OPERATING_STATE", "RUNNING_CURTAILED"))
    tally.add(value(4, "c", "OPERATING_STATE", "ERROR"))
    tally.add(value(5, "b", "OPERATING_STATE", "IDLE_OPTED_OUT"))  # b changed its mind
    tally.add(value(6, "a", "OPERATING_STATE", "RUNNING_NORMAL"))  # does not undo a's response
    # One report with two states: the opt-out counts.
    tally.add(value(7, "d", "OPERATING_STATE", "RUNNING_CURTAILED"))
    tally.add(value(7, "d", "OPERATING_STATE", "RUNNING_OPTED_OUT", resource="ev"))
    assert tally.summary() == {PARTICIPATING: 1, OPTED_OUT: 2, HOMES_ERROR: 1}


def test_tally_sums_latest_values_per_home_and_interval() -> None:
    tally = ResponseTally()
    tally.add(value(1, "a", "DELTA_USAGE", 0.5))
    tally.add(value(2, "a", "DELTA_USAGE", 0.75))  # a correction of the same interval
    tally.add(value(3, "a", "DELTA_USAGE", 0.25, interval="2027-03-01T10:15:00Z"))
    tally.add(value(4, "b", "DELTA_USAGE", 1))
    tally.add(value(4, "b", "BASELINE", 3.5))
    tally.add(value(4, "b", "DELTA_USAGE", True))  # not a number
    tally.add(value(2, "a", "DELTA_USAGE", 0.75))  # seen again: counts once
    assert tally.summary() == {
        PARTICIPATING: 0,
        OPTED_OUT: 0,
        HOMES_ERROR: 0,
        "DELTA_USAGE": 2.0,
        "BASELINE": 3.5,
    }


def test_responses_report_body(schema: Callable[[str, dict[str, Any]], None]) -> None:
    event = model_event(reportDescriptors=[{"payloadType": "DELTA_USAGE", "units": "KWH"}])
    summary = {PARTICIPATING: 3, OPTED_OUT: 1, HOMES_ERROR: 0, "DELTA_USAGE": 1.25}
    bounds = (T0.timestamp(), (T0 + timedelta(hours=4)).timestamp())
    body = responses_report(
        event=event, client_name="bridge-c1", community="c1", summary=summary, bounds=bounds
    )
    valid_report(schema, body)
    (resource,) = body["resources"]
    assert resource["resourceName"] == "AGGREGATED_REPORT"
    (interval,) = resource["intervals"]
    assert interval["intervalPeriod"] == {"start": "2027-03-01T10:00:00Z", "duration": "PT4H"}
    assert {p["type"]: p["values"] for p in interval["payloads"]} == {
        PARTICIPATING: [3],
        OPTED_OUT: [1],
        HOMES_ERROR: [0],
        "DELTA_USAGE": [1.25],
    }
    units = {d["payloadType"]: d.get("units") for d in body["payloadDescriptors"]}
    assert units == {PARTICIPATING: None, OPTED_OUT: None, HOMES_ERROR: None, "DELTA_USAGE": "KWH"}
    forever = responses_report(
        event=event, client_name="b", community="c1", summary=summary, bounds=(bounds[0], None)
    )
    valid_report(schema, forever)
    assert forever["resources"][0]["intervals"][0]["intervalPeriod"]["duration"] == "P9999Y"


def test_report_cadence_configuration(tmp_path: Path) -> None:
    assert bridge_config(tmp_path).fusion.report_every == 60  # 300 / 4, at most a minute
    fusion = bridge_config(tmp_path, fusion={"bucket_seconds": 60}).fusion
    assert fusion.report_every == 15
    assert fusion.report_upstream
    fusion = bridge_config(tmp_path, fusion={"report_interval": 5, "report_upstream": False}).fusion
    assert fusion.report_every == 5
    assert not fusion.report_upstream
    with pytest.raises(ConfigError, match=r"fusion\.report_interval"):
        bridge_config(tmp_path, fusion={"report_interval": 90})


class Sink:
    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []

    async def post_report(self, report: dict[str, Any]) -> Any:
        self.posted.append(report)
        return report


async def test_tallies_read_page_by_page_and_row_by_row_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = await Ledger.open(tmp_path / "ledger.sqlite3")
    try:
        sent = [
            ("h0", "e1", {"OPERATING_STATE": "RUNNING_CURTAILED"}),
            ("h1", "e1", {"OPERATING_STATE": "RUNNING_CURTAILED", "DELTA_USAGE": 1.0}),
            ("h2", "e2", {"OPERATING_STATE": "ERROR"}),  # another event
            ("h2", "e1", {"OPERATING_STATE": "ERROR"}),
            ("h1", "e1", {"DELTA_USAGE": 2.0}),  # corrects its measurement
            ("h0", "e1", {"OPERATING_STATE": "RUNNING_OPTED_OUT"}),
            ("h3", "e1", {"USAGE": 4.0}),  # not a response
        ]
        async with ledger.telemetry_batch() as batch:
            await batch.store(
                reports=[
                    (f"r{n}", home, event_id, 0.0, json.dumps(response(event_id, 0, **values)))
                    for n, (home, event_id, values) in enumerate(sent)
                ],
                late=[],
                rollups=[],
                home_buckets=[],
            )
        expected = {PARTICIPATING: 1, OPTED_OUT: 1, HOMES_ERROR: 1, "DELTA_USAGE": 2.0}
        high = await ledger.report_high_water()
        assert high == len(sent)
        monkeypatch.setattr(reporting, "ROW_PAGE", 2)
        fusion = bridge_config(tmp_path).fusion
        reporter = UpstreamReporter(ledger, Sink(), community="c1", client_name="b", fusion=fusion)
        paged = await reporter._tally_from_start("e1", high)
        assert paged.summary() == expected
        by_rows = ResponseTally()
        for after in range(0, high, 2):
            for found in await ledger.report_values(
                ["e1"], after, after + 2, reporting.RESPONSE_TYPES
            ):
                by_rows.add(found)
        assert by_rows.summary() == expected
        assert [
            v.payload_type for v in await ledger.report_values(["e2"], 0, high, ["OPERATING_STATE"])
        ] == ["OPERATING_STATE"]
    finally:
        await ledger.close()


# --- the bridge with a real grid ----------------------------------------------------------------

BUCKET = 60
GRACE = 120
MARGIN = 5 + 1  # reporting.CLOSE_MARGIN, and a second
HOME_A = Placement(community=COMMUNITY, feeder="f1", transformer="t1", home="a")
HOME_B = Placement(community=COMMUNITY, feeder="f1", transformer="t2", home="b")


@dataclass
class Grid:
    url: str
    port: int
    runner: web.AppRunner
    site: web.TCPSite | None
    session: aiohttp.ClientSession

    async def bl(self, method: str, path: str, **kwargs: Any) -> Any:
        form = {"grant_type": "client_credentials", "client_id": "bl", "client_secret": "bl-secret"}
        async with self.session.post(f"{self.url}/auth/token", data=form) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.request(
            method, f"{self.url}{path}", headers=headers, **kwargs
        ) as response:
            assert response.status < 300, await response.text()
            return await response.json()

    async def reports(self, event_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.bl(
            "GET", "/reports", params={"eventID": event_id, "limit": "50"}
        )
        assert len(found) < 50
        return found

    async def down(self) -> None:
        """Stop answering: no listener, and the open connections closed."""
        assert self.site is not None
        await self.site.stop()
        server = self.runner.server
        assert server is not None
        await server.shutdown(1)
        self.site = None

    async def up(self) -> None:
        self.site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await self.site.start()


@pytest.fixture(name="grid")
async def grid_fixture(tmp_path: Path) -> AsyncIterator[Grid]:
    port = free_port()
    scenario = parse_scenario(
        {
            "grid": "reporting-grid",
            "signing_key": "grid.pem",
            "communities": [COMMUNITY],
            "clients": [
                {"client_id": "bl", "secret": "bl-secret", "role": "BL"},
                {"client_id": "bridge", "secret": "ven-secret", "role": "VEN", "community": "c1"},
            ],
            "programs": [{"name": "dr", "targets": ["community:c1"]}],
            "webhooks": {"timeout": 1, "attempts": 1, "backoff": 0.1, "allow_http_loopback": True},
        },
        tmp_path,
    )
    runner = web.AppRunner(create_grid(scenario))
    await runner.setup()
    async with aiohttp.ClientSession() as session:
        grid = Grid(f"http://127.0.0.1:{port}", port, runner, None, session)
        await grid.up()
        yield grid
    await runner.cleanup()


type Bridge = TestClient[Any, Any]


@pytest.fixture(name="start_bridge")
def start_bridge_fixture(
    aiohttp_client: Callable[..., Awaitable[Bridge]], tmp_path: Path, grid: Grid
) -> Callable[[], Awaitable[Bridge]]:
    """A bridge that is the grid's VEN; its reporter runs only when the test ticks it."""

    async def start() -> Bridge:
        port = free_port()
        config = bridge_config(
            tmp_path,
            port=port,
            public_url=f"http://127.0.0.1:{port}",
            grid={
                "url": grid.url,
                "client_id": "bridge",
                "client_secret": "ven-secret",
                "poll_interval": 1,
            },
            fusion={
                "bucket_seconds": BUCKET,
                "bucket_grace": GRACE,
                "batch_seconds": 0.01,
                "report_upstream": False,
            },
        )
        return await aiohttp_client(create_app(config), server_kwargs={"port": port})

    return start


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    async with asyncio.timeout(30):
        while not await condition():  # noqa: ASYNC110 - the bridge's ledger, polled
            await asyncio.sleep(0.1)
    assert await condition(), what


def telemetry(start: float, **values: float) -> dict[str, Any]:
    """A home's default-cadence telemetry: one 10 s interval."""
    return {
        "eventID": "X_TELEMETRY",
        "clientName": "home",
        "resources": [
            {
                "resourceName": "meter",
                "intervalPeriod": {"start": moment(start), "duration": "PT10S"},
                "intervals": [
                    {
                        "id": 0,
                        "payloads": [{"type": kind, "values": [v]} for kind, v in values.items()],
                    }
                ],
            }
        ],
    }


def response(event_id: str, start: float, **values: Any) -> dict[str, Any]:
    """A home's answer to an event: its state, and what it measured."""
    return {
        "eventID": event_id,
        "clientName": "home",
        "resources": [
            {
                "resourceName": "home",
                "intervals": [
                    {
                        "id": 0,
                        "intervalPeriod": {"start": moment(start), "duration": "PT1M"},
                        "payloads": [{"type": kind, "values": [v]} for kind, v in values.items()],
                    }
                ],
            }
        ],
    }


def moment(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def by_name(reports: list[dict[str, Any]], word: str) -> list[dict[str, Any]]:
    chosen = [r for r in reports if word in r["reportName"]]
    return sorted(chosen, key=lambda r: r["createdDateTime"])


def intervals(report: dict[str, Any]) -> dict[str, list[tuple[int, str, Any]]]:
    """Per resource: (id, start, value) of each interval."""
    return {
        resource["resourceName"]: [
            (i["id"], i["intervalPeriod"]["start"], i["payloads"][0]["values"][0])
            for i in resource["intervals"]
        ]
        for resource in report["resources"]
    }


def summary(report: dict[str, Any]) -> dict[str, Any]:
    (resource,) = report["resources"]
    assert resource["resourceName"] == "AGGREGATED_REPORT"
    (interval,) = resource["intervals"]
    return {p["type"]: p["values"][0] for p in interval["payloads"]}


def approx(found: dict[str, list[tuple[int, str, Any]]]) -> Iterator[tuple[str, int, str, float]]:
    for name, rows in sorted(found.items()):
        for interval_id, start, number in rows:
            yield name, interval_id, start, round(number, 9)


async def test_bridge_reports_what_the_grid_asked_once_and_retries_refusals(
    grid: Grid,
    start_bridge: Callable[[], Awaitable[Bridge]],
    schema: Callable[[str, dict[str, Any]], None],
) -> None:
    b0 = math.floor(time.time() / BUCKET) * BUCKET
    program = next(p for p in await grid.bl("GET", "/programs") if p["programName"] == "dr")
    event = await grid.bl(
        "POST",
        "/events",
        json={
            "programID": program["id"],
            "eventName": "peak with reports",
            "targets": ["community:c1"],
            "intervalPeriod": {"start": moment(b0), "duration": "PT3M"},
            "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [2]}]}],
            "reportDescriptors": [
                {
                    "payloadType": "DEMAND",
                    "aggregate": True,
                    "units": "KW",
                    "frequency": 1,
                    "repeat": -1,
                },
                {"payloadType": "USAGE", "units": "KWH", "frequency": 2, "repeat": -1},
            ],
        },
    )
    event_id = event["id"]

    bridge = await start_bridge()
    ledger = bridge.app[LEDGER]
    credential = {
        "a": await homes.add_home(ledger, HOME_A),
        "b": await homes.add_home(ledger, HOME_B),
    }

    async def event_arrived() -> bool:
        current = await ledger.current_objects("EVENT", now=time.time())
        return any(s.object_id == event_id for s in current)

    await until(event_arrived, "the grid's event at the bridge")

    async def post(home: str, body: dict[str, Any]) -> None:
        answer = await bridge.post("/reports", json=body, headers=auth(credential[home]))
        assert answer.status == 201, await answer.text()

    # Telemetry in the event's three buckets (and one after it, which is not asked for).
    await post("a", telemetry(b0 + 10, DEMAND=2.0, USAGE=0.01))
    await post("a", telemetry(b0 + 20, DEMAND=4.0, USAGE=0.02))
    await post("b", telemetry(b0 + 10, DEMAND=3.0, USAGE=0.05))
    await post("a", telemetry(b0 + 70, DEMAND=1.0, USAGE=0.01))
    await post("b", telemetry(b0 + 130, DEMAND=5.0, USAGE=0.04))
    await post("a", telemetry(b0 + 190, DEMAND=7.0, USAGE=0.07))
    # Responses: home a opts out, home b curtails and measures its reduction.
    await post("a", response(event_id, b0, OPERATING_STATE="RUNNING_OPTED_OUT"))
    await post(
        "b",
        response(event_id, b0, OPERATING_STATE="RUNNING_CURTAILED", DELTA_USAGE=0.5, BASELINE=2),
    )

    reporter = bridge.app[REPORTER]
    # Before any bucket has closed, only the responses go up, at most once per bucket_seconds...
    assert await reporter.tick(b0 + 30) == 1
    await post("b", response(event_id, b0 + 60, DELTA_USAGE=0.25))
    assert await reporter.tick(b0 + 60) == 0
    assert await reporter.tick(b0 + 130) == 1
    await post("b", response(event_id, b0 + 120, DELTA_USAGE=0.25))
    assert await reporter.tick(b0 + 150) == 0
    # ...except once more, at once, when the event has ended.
    assert await reporter.tick(b0 + 181) == 1
    assert len(await grid.reports(event_id)) == 3

    first_closed = b0 + BUCKET + GRACE + MARGIN  # bucket b0 has closed
    assert await reporter.tick(first_closed) == 1  # DEMAND of b0; USAGE waits for two buckets
    assert await reporter.tick(first_closed + 1) == 0
    all_closed = b0 + 3 * BUCKET + GRACE + MARGIN
    assert await reporter.tick(all_closed) == 4  # DEMAND x2, USAGE x2
    assert await reporter.tick(all_closed + 30) == 0

    reports = await grid.reports(event_id)
    assert len(reports) == 8
    for stored in reports:
        schema("report", stored)
        assert stored["clientName"] == "bridge"
        assert stored["clientID"] == "bridge"
        assert stored["programID"] == program["id"]

    demand = by_name(reports, "DEMAND")
    assert [list(approx(intervals(r))) for r in demand] == [
        [("AGGREGATED_REPORT", 0, moment(b0), 6.0)],  # (2 + 4) / 2 for a, 3 for b
        [("AGGREGATED_REPORT", 0, moment(b0 + 60), 1.0)],
        [("AGGREGATED_REPORT", 0, moment(b0 + 120), 5.0)],
    ]
    assert demand[0]["payloadDescriptors"][0]["units"] == "KW"
    assert all(
        i["intervalPeriod"]["duration"] == "PT1M"
        for r in demand
        for i in r["resources"][0]["intervals"]
    )
    usage = by_name(reports, "USAGE")
    assert [list(approx(intervals(r))) for r in usage] == [
        [
            ("t1", 0, moment(b0), 0.03),
            ("t1", 1, moment(b0 + 60), 0.01),
            ("t2", 0, moment(b0), 0.05),
        ],
        [("t2", 0, moment(b0 + 120), 0.04)],
    ]
    responses = by_name(reports, "responses")
    assert [summary(r) for r in responses] == [
        {PARTICIPATING: 1, OPTED_OUT: 1, HOMES_ERROR: 0, "DELTA_USAGE": 0.5, "BASELINE": 2.0},
        {PARTICIPATING: 1, OPTED_OUT: 1, HOMES_ERROR: 0, "DELTA_USAGE": 0.75, "BASELINE": 2.0},
        {PARTICIPATING: 1, OPTED_OUT: 1, HOMES_ERROR: 0, "DELTA_USAGE": 1.0, "BASELINE": 2.0},
    ]
    metrics = await (await bridge.get("/metrics")).text()
    assert 'smart_community_upstream_reports_sent_total{kind="telemetry"} 5.0' in metrics
    assert 'smart_community_upstream_reports_sent_total{kind="responses"} 3.0' in metrics

    # A restart on the same database repeats nothing.
    await bridge.close()
    bridge = await start_bridge()
    ledger = bridge.app[LEDGER]
    await until(event_arrived, "the event still current after the restart")
    reporter = bridge.app[REPORTER]
    assert await reporter.tick(all_closed) == 0
    assert await reporter.tick(all_closed + 3 * BUCKET) == 0
    assert len(await grid.reports(event_id)) == 8

    async def last_summary() -> dict[str, Any]:
        marks = {m.topic: m for m in await ledger.upstream_marks() if m.event_id == event_id}
        return dict(json.loads(marks["responses"].summary or "{}"))

    # The grid refuses the bridge's token: nothing is marked, and the next check sends it.
    await post("a", response(event_id, b0, OPERATING_STATE="RUNNING_CURTAILED"))
    later = all_closed + 4 * BUCKET
    client = reporter._client
    assert isinstance(client, GridClient)
    client._token, client._token_expires = "expired-token", time.monotonic() + 3600
    assert await reporter.tick(later) == 0
    assert reporter.failures == 1
    assert (await last_summary())[PARTICIPATING] == 1
    assert await reporter.tick(later + 1) == 1
    assert (await last_summary())[PARTICIPATING] == 2

    # The grid is down: nothing is marked; once it is back, the report goes.
    await post("b", response(event_id, b0, OPERATING_STATE="ERROR"))
    await grid.down()
    assert await reporter.tick(later + 2 * BUCKET) == 0
    assert reporter.failures == 2
    assert (await last_summary())[HOMES_ERROR] == 0
    await grid.up()
    assert await reporter.tick(later + 2 * BUCKET + 1) == 1
    reports = await grid.reports(event_id)
    assert len(reports) == 10
    assert [summary(r) for r in by_name(reports, "responses")][3:] == [
        {PARTICIPATING: 2, OPTED_OUT: 0, HOMES_ERROR: 0, "DELTA_USAGE": 1.0, "BASELINE": 2.0},
        {PARTICIPATING: 1, OPTED_OUT: 0, HOMES_ERROR: 1, "DELTA_USAGE": 1.0, "BASELINE": 2.0},
    ]
    metrics = await (await bridge.get("/metrics")).text()
    assert "smart_community_upstream_report_failures_total 2.0" in metrics
