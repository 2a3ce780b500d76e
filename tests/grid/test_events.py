"""Programs and events: create, read, update, delete, query filters, pagination, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .conftest import Grid, GridFactory, dr_event


async def test_create_sets_metadata_and_ignores_the_clients(grid: Grid) -> None:
    body = dr_event(
        await grid.program_id("dr"), id="mine", objectType="PROGRAM", createdDateTime="2000-01-01"
    )
    event = await grid.ok("POST", "/events", json=body)
    assert event["id"] != "mine"
    assert event["id"].startswith("event-")
    assert event["objectType"] == "EVENT"
    assert event["createdDateTime"] == event["modificationDateTime"]
    assert datetime.fromisoformat(event["createdDateTime"]) > datetime.now(UTC) - timedelta(
        minutes=1
    )
    assert await grid.ok("GET", f"/events/{event['id']}") == event


async def test_update_keeps_identity_and_replaces_content(grid: Grid) -> None:
    program_id = await grid.program_id("dr")
    created = await grid.ok("POST", "/events", json=dr_event(program_id))
    changed = dr_event(program_id, eventName="renamed")
    updated = await grid.ok("PUT", f"/events/{created['id']}", json=changed)
    assert updated["id"] == created["id"]
    assert updated["createdDateTime"] == created["createdDateTime"]
    assert updated["modificationDateTime"] >= created["modificationDateTime"]
    assert updated["eventName"] == "renamed"
    assert await grid.ok("GET", f"/events/{created['id']}") == updated


async def test_delete_removes_the_event(grid: Grid) -> None:
    created = await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    deleted = await grid.ok("DELETE", f"/events/{created['id']}")
    assert deleted["id"] == created["id"]
    assert (await grid.call("GET", f"/events/{created['id']}")).status == 404
    assert (await grid.call("DELETE", f"/events/{created['id']}")).status == 404


async def test_program_crud_and_conflicts(grid: Grid) -> None:
    program = await grid.ok("POST", "/programs", json={"programName": "cpp"})
    duplicate = await grid.call("POST", "/programs", json={"programName": "cpp"})
    assert duplicate.status == 409
    assert "cpp" in duplicate.body["detail"]
    renamed = await grid.ok("PUT", f"/programs/{program['id']}", json={"programName": "cpp2"})
    assert renamed["programName"] == "cpp2"
    await grid.ok("POST", "/events", json=dr_event(program["id"]))
    in_use = await grid.call("DELETE", f"/programs/{program['id']}")
    assert in_use.status == 409
    assert "events" in in_use.body["detail"]
    empty = await grid.ok("POST", "/programs", json={"programName": "empty"})
    assert (await grid.ok("DELETE", f"/programs/{empty['id']}"))["id"] == empty["id"]
    assert (await grid.call("GET", f"/programs/{empty['id']}")).status == 404


async def test_program_id_filter(grid: Grid) -> None:
    other = await grid.ok("POST", "/programs", json={"programName": "other"})
    mine = await grid.ok("POST", "/events", json=dr_event(other["id"]))
    await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    listed = await grid.ok("GET", "/events", params={"programID": other["id"]})
    assert [e["id"] for e in listed] == [mine["id"]]


async def test_active_leaves_out_ended_events(grid: Grid) -> None:
    program_id = await grid.program_id("dr")
    now = datetime.now(UTC)
    ended = await grid.ok(
        "POST", "/events", json=dr_event(program_id, start=now - timedelta(hours=2))
    )
    running = await grid.ok(
        "POST", "/events", json=dr_event(program_id, start=now - timedelta(minutes=5))
    )
    coming = await grid.ok(
        "POST", "/events", json=dr_event(program_id, start=now + timedelta(hours=1))
    )
    active = {e["id"] for e in await grid.ok("GET", "/events", params={"active": "true"})}
    assert {running["id"], coming["id"]} <= active
    assert ended["id"] not in active
    everything = {e["id"] for e in await grid.ok("GET", "/events", params={"active": "false"})}
    assert ended["id"] in everything


async def test_pagination_with_skip_and_limit(grid: Grid) -> None:
    program = await grid.ok("POST", "/programs", json={"programName": "paged"})
    ids = [
        (await grid.ok("POST", "/events", json=dr_event(program["id"], eventName=f"e{n}")))["id"]
        for n in range(7)
    ]
    pages = []
    for skip in (0, 3, 6):
        params = {"programID": program["id"], "skip": str(skip), "limit": "3"}
        pages.append([e["id"] for e in await grid.ok("GET", "/events", params=params)])
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]
    params = {"programID": program["id"], "limit": "0"}
    assert await grid.ok("GET", "/events", params=params) == []


async def test_listing_defaults_to_at_most_fifty(grid: Grid) -> None:
    program = await grid.ok("POST", "/programs", json={"programName": "many"})
    for _ in range(52):
        await grid.ok("POST", "/events", json=dr_event(program["id"]))
    assert len(await grid.ok("GET", "/events", params={"programID": program["id"]})) == 50


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": "51"}, "at most 50"),
        ({"limit": "-1"}, "negative"),
        ({"skip": "x"}, "not an integer"),
        ({"active": "maybe"}, "true or false"),
    ],
)
async def test_bad_query_parameters(grid: Grid, params: dict[str, str], detail: str) -> None:
    reply = await grid.call("GET", "/events", params=params)
    assert reply.status == 400
    assert detail in reply.body["detail"]
    assert reply.body["status"] == 400


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"programID": 5}, "programID: expected a string, got number"),
        ({"targets": "community:c1"}, "targets: expected an array or null, got 'community:c1'"),
        ({"priority": "1"}, "priority: expected an integer or null, got '1'"),
        ({"intervals": [{"id": "x", "payloads": []}]}, "intervals[0].id: expected an integer"),
        ({"intervals": [{"id": 0}]}, "intervals[0].payloads: required"),
        (
            {"intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [None]}]}]},
            "intervals[0].payloads[0].values[0]",
        ),
        ({"intervalPeriod": {"start": "tomorrow"}}, "intervalPeriod.start"),
        ({"intervalPeriod": {"duration": "30 minutes"}}, "intervalPeriod.duration"),
        ({"programID": "no-such-program"}, "programID: 'no-such-program' names no program"),
    ],
)
async def test_bad_event_bodies_name_the_property(
    grid: Grid, change: dict[str, Any], detail: str
) -> None:
    body = dr_event(await grid.program_id("dr"))
    body.update(change)
    reply = await grid.call("POST", "/events", json=body)
    assert reply.status == 400, reply.body
    assert detail in reply.body["detail"]


async def test_missing_required_property(grid: Grid) -> None:
    reply = await grid.call("POST", "/events", json={"eventName": "x"})
    assert reply.status == 400
    assert reply.body["detail"] == "programID: required property is missing"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{not json", "body is not JSON"),
        (b'{"programID": NaN}', "NaN"),
        (b"[1, 2]", "JSON object"),
    ],
)
async def test_malformed_bodies(grid: Grid, raw: bytes, detail: str) -> None:
    reply = await grid.call(
        "POST", "/events", data=raw, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 400
    assert detail in reply.body["detail"]


async def test_oversized_body_is_refused(grid: Grid) -> None:
    body = dr_event(await grid.program_id("dr"), eventName="x" * 70_000)
    reply = await grid.call("POST", "/events", json=body)
    assert reply.status == 413
    assert reply.body["status"] == 413
    assert "size" in reply.body["detail"]


async def test_unknown_ids_and_paths(grid: Grid) -> None:
    body = dr_event(await grid.program_id("dr"))
    for method, path in (
        ("GET", "/events/nope"),
        ("PUT", "/events/nope"),
        ("DELETE", "/events/nope"),
        ("GET", "/programs/nope"),
        ("DELETE", "/subscriptions/nope"),
    ):
        reply = await grid.call(method, path, json=body if method == "PUT" else None)
        assert reply.status == 404, (method, path)
        assert "nope" in reply.body["detail"]
    reply = await grid.call("GET", "/notifiers/mqtt/topics/programs")
    assert reply.status == 404
    assert reply.body["detail"] == "no endpoint GET /notifiers/mqtt/topics/programs"


async def test_event_interval_without_duration_is_refused(grid: Grid) -> None:
    body = dr_event(await grid.program_id("dr"))
    body["intervalPeriod"] = {"start": body["intervalPeriod"]["start"]}
    reply = await grid.call("POST", "/events", json=body)
    assert reply.status == 400
    assert "no duration" in reply.body["detail"]


async def test_body_size_limit_comes_from_the_scenario(make_grid: GridFactory) -> None:
    grid = await make_grid(max_body_size=2048)
    body = dr_event(await grid.program_id("dr"), eventName="x" * 3000)
    assert (await grid.call("POST", "/events", json=body)).status == 413
