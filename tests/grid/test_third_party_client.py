"""A third-party OpenADR 3.1 client talks to the mock grid as to any VTN.

ElaadNL's openadr3-client (its OpenADR 3.1.0 clients, with their own OAuth2 token handling and
their own validated models) plays the utility's business logic and a VEN: the business logic
creates a program and an event; the VEN reads them, registers itself and reports on the event;
the business logic reads the report back. The event the third party created is signed by the
grid and verifies with nothing but the grid's published key.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.oadr310.models.event.event import NewEvent
from openadr3_client.oadr310.models.event.event_payload import EventPayload, EventPayloadType
from openadr3_client.oadr310.models.program.program import NewProgram
from openadr3_client.oadr310.models.report.report import NewReport, ReportPayload, ReportResource
from openadr3_client.oadr310.models.ven.ven import NewVenVenRequest
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion
import pytest

from .conftest import SECRETS, Grid


@pytest.fixture(autouse=True)
def plain_http_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """oauthlib insists on HTTPS; the test grid serves plain HTTP on 127.0.0.1."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def clients(grid: Grid) -> tuple[Any, Any]:
    """The third party's business logic and VEN clients, finding the token URL themselves
    (they ask the grid at once, so this too runs in a thread)."""
    bl = BusinessLogicHttpClientFactory.create_http_bl_client(
        grid.url,
        "bl",
        SECRETS["bl"],
        allow_insecure_http=True,
        version=OADRVersion.OADR_310,
    )
    ven = VirtualEndNodeHttpClientFactory.create_http_ven_client(
        grid.url,
        "ven1",
        SECRETS["ven1"],
        allow_insecure_http=True,
        version=OADRVersion.OADR_310,
    )
    return bl, ven


def scenario(grid: Grid, start: datetime) -> dict[str, Any]:
    """What the third party does, in its own blocking calls (run in a thread)."""
    bl, ven = clients(grid)
    program = bl.programs.create_program(
        new_program=NewProgram(program_name="third-party", targets=("community:c1",))
    )
    event = bl.events.create_event(
        new_event=NewEvent(
            program_id=program.id,
            event_name="third-party peak",
            targets=("community:c1",),
            interval_period=IntervalPeriod(start=start, duration=timedelta(hours=1)),
            intervals=(
                Interval(
                    id=0,
                    interval_period=None,
                    payloads=(EventPayload(type=EventPayloadType.SIMPLE, values=(2,)),),
                ),
            ),
        )
    )
    programs = ven.programs.get_programs(target=None, pagination=None)
    events = ven.events.get_events(target=None, pagination=None, program_id=program.id)
    every_event = ven.events.get_events(target=None, pagination=None, program_id=None)
    registered = ven.vens.create_ven(new_ven=NewVenVenRequest(ven_name="third-party-ven"))
    report = ven.reports.create_report(
        new_report=NewReport(
            event_id=event.id,
            client_name="third-party-ven",
            report_name="acknowledgement",
            resources=(
                ReportResource(
                    resource_name="site",
                    interval_period=IntervalPeriod(start=start, duration=timedelta(hours=1)),
                    intervals=(
                        Interval(
                            id=0,
                            interval_period=None,
                            payloads=(ReportPayload(type="OPERATING_STATE", values=("NORMAL",)),),
                        ),
                    ),
                ),
            ),
        )
    )
    reports = bl.reports.get_reports(
        pagination=None, program_id=None, event_id=event.id, client_name=None
    )
    return {
        "program": program,
        "event": event,
        "programs": programs,
        "events": events,
        "every_event": every_event,
        "ven": registered,
        "report": report,
        "reports": reports,
    }


async def test_a_third_party_client_does_business_logic_and_ven_work(grid: Grid) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    done = await asyncio.to_thread(scenario, grid, start)

    assert done["program"].program_name == "third-party"
    assert done["event"].program_id == done["program"].id
    assert "third-party" in [p.program_name for p in done["programs"]]
    (seen,) = done["events"]
    assert (seen.id, seen.event_name) == (done["event"].id, "third-party peak")
    assert seen.interval_period.start == start
    # The grid's own events parse too: the day's tariffs (an interval per price period).
    names = [e.event_name for e in done["every_event"]]
    assert len([n for n in names if n.startswith("tou ")]) == 2
    assert done["ven"].ven_name == "third-party-ven"
    assert [r.id for r in done["reports"]] == [done["report"].id]
    assert done["reports"][0].resources[0].intervals[0].payloads[0].values == ("NORMAL",)

    # What the third party published is the grid's signed event, as the bridge receives it.
    stored = await grid.ok("GET", f"/events/{done['event'].id}", as_="ven1")
    verified = (await grid.verifier("c1")).verify(stored)
    assert verified.object_id == done["event"].id
