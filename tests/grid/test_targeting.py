"""Targeting: a VEN sees only what is addressed to its community (or to everyone)."""

from __future__ import annotations

import pytest

from .conftest import Grid, dr_event


async def _event(grid: Grid, targets: list[str] | None) -> str:
    body = dr_event(await grid.program_id("dr"))
    if targets is not None:
        body["targets"] = targets
    return str((await grid.ok("POST", "/events", json=body))["id"])


@pytest.mark.parametrize(
    ("targets", "ven1", "ven2"),
    [
        (None, True, True),
        (["community:c1"], True, False),
        (["feeder:c1/f1"], True, False),
        (["transformer:c2/t1"], False, True),
        (["home:c1/h7", "home:c2/h3"], True, True),
    ],
)
async def test_event_visibility_follows_community(
    grid: Grid, targets: list[str] | None, ven1: bool, ven2: bool
) -> None:
    event_id = await _event(grid, targets)
    for client_id, visible in (("ven1", ven1), ("ven2", ven2)):
        listed = [e["id"] for e in await grid.ok("GET", "/events", as_=client_id)]
        assert (event_id in listed) is visible
        reply = await grid.call("GET", f"/events/{event_id}", as_=client_id)
        assert reply.status == (200 if visible else 404)
    assert event_id in [e["id"] for e in await grid.ok("GET", "/events")]


async def test_program_visibility_follows_community(grid: Grid) -> None:
    program = await grid.ok(
        "POST", "/programs", json={"programName": "c2-only", "targets": ["community:c2"]}
    )
    assert program["id"] not in [p["id"] for p in await grid.ok("GET", "/programs", as_="ven1")]
    assert (await grid.call("GET", f"/programs/{program['id']}", as_="ven1")).status == 404
    assert (await grid.ok("GET", f"/programs/{program['id']}", as_="ven2"))[
        "programName"
    ] == "c2-only"


async def test_ven_cannot_update_what_it_cannot_see_even_with_bl_id(grid: Grid) -> None:
    event_id = await _event(grid, ["community:c2"])
    reply = await grid.call("GET", f"/events/{event_id}", as_="ven1")
    assert reply.status == 404
    assert event_id in reply.body["detail"]


async def test_targets_query_filters_and_keeps_untargeted(grid: Grid) -> None:
    transformer = await _event(grid, ["transformer:c1/t1"])
    other = await _event(grid, ["transformer:c1/t2"])
    everyone = await _event(grid, None)
    params = [("targets", "transformer:c1/t1"), ("targets", "home:c1/h1")]
    listed = [e["id"] for e in await grid.ok("GET", "/events", as_="ven1", params=params)]
    assert transformer in listed
    assert everyone in listed
    assert other not in listed


@pytest.mark.parametrize(
    "target", ["community:c3", "group-1", "home:c9/h1", "feeder:c1", "community:"]
)
async def test_targets_outside_the_grid_are_refused(grid: Grid, target: str) -> None:
    body = dr_event(await grid.program_id("dr"), targets=["community:c1", target])
    reply = await grid.call("POST", "/events", json=body)
    assert reply.status == 400
    assert "targets[1]" in reply.body["detail"]
    assert target in reply.body["detail"]
