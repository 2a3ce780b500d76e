"""Scopes and roles: who may do what, and what each client reads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from smart_community_protocol import format_datetime

from .conftest import Grid, dr_event


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/programs", "write_programs"),
        ("PUT", "/programs/any", "write_programs"),
        ("DELETE", "/programs/any", "write_programs"),
        ("POST", "/events", "write_events"),
        ("PUT", "/events/any", "write_events"),
        ("DELETE", "/events/any", "write_events"),
    ],
)
async def test_ven_cannot_write_programs_or_events(
    grid: Grid, method: str, path: str, scope: str
) -> None:
    reply = await grid.call(method, path, as_="ven1", json={"programName": "x"})
    assert reply.status == 403
    assert reply.body["title"] == "Forbidden"
    assert scope in reply.body["detail"]


async def test_bl_publishes_events(grid: Grid) -> None:
    reply = await grid.call("POST", "/events", json=dr_event(await grid.program_id("dr")))
    assert reply.status == 201
    assert reply.body["objectType"] == "EVENT"


async def test_bl_cannot_post_reports(grid: Grid) -> None:
    reply = await grid.call("POST", "/reports", json={})
    assert reply.status == 403
    assert "write_reports" in reply.body["detail"]


@pytest.mark.parametrize("client_id", ["bl", "ven1"])
async def test_notifiers_offer_webhooks(grid: Grid, client_id: str) -> None:
    assert await grid.ok("GET", "/notifiers", as_=client_id) == {"WEBHOOK": True}


def report(event_id: str, client_name: str) -> dict[str, object]:
    """A reportRequest body with one USAGE reading."""
    return {
        "eventID": event_id,
        "clientName": client_name,
        "resources": [
            {
                "resourceName": "AGGREGATED_REPORT",
                "intervalPeriod": {
                    "start": format_datetime(datetime.now(UTC)),
                    "duration": "PT15M",
                },
                "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [12.5]}]}],
            }
        ],
    }


async def test_vens_read_their_own_reports_and_bl_reads_all(grid: Grid) -> None:
    event = await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    mine = await grid.ok("POST", "/reports", as_="ven1", json=report(event["id"], "bridge-1"))
    await grid.ok("POST", "/reports", as_="ven2", json=report(event["id"], "bridge-2"))
    assert mine["clientID"] == "ven1"
    assert mine["objectType"] == "REPORT"
    assert [r["id"] for r in await grid.ok("GET", "/reports", as_="ven1")] == [mine["id"]]
    assert len(await grid.ok("GET", "/reports")) == 2
    by_name = await grid.ok("GET", "/reports", params={"clientName": "bridge-2"})
    assert [r["clientID"] for r in by_name] == ["ven2"]


async def test_report_on_an_event_the_ven_cannot_see_is_refused(grid: Grid) -> None:
    event = await grid.ok(
        "POST", "/events", json=dr_event(await grid.program_id("dr"), targets=["community:c2"])
    )
    reply = await grid.call("POST", "/reports", as_="ven1", json=report(event["id"], "b"))
    assert reply.status == 400
    assert "eventID" in reply.body["detail"]
