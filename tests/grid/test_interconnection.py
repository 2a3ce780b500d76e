"""Grid connections: requests carried as resources, the grid's decisions and its grant events."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from smart_community_protocol import Operation, format_datetime

from .conftest import (
    Clock,
    Grid,
    GridFactory,
    Receiver,
    attribute,
    connection_request,
    subscription,
    ven_request,
)

POLICY = {"approve_up_to_kw": 10}


@pytest.fixture
def clock() -> Clock:
    """The grid's clock."""
    return Clock()


@pytest.fixture
async def grid(make_grid: GridFactory, clock: Clock) -> Grid:
    """A grid that approves connections of up to 10 kW at once."""
    return await make_grid(clock=clock, interconnection=POLICY)


async def _ven(grid: Grid, client: str = "ven1") -> str:
    ven = await grid.ok("POST", "/vens", as_=client, json=ven_request(f"{client}-bridge"))
    return str(ven["id"])


async def _subscribe(grid: Grid, receiver: Receiver, client: str = "ven1") -> None:
    body = subscription(receiver.url(client), objects=["EVENT", "RESOURCE"])
    await grid.ok("POST", "/subscriptions", as_=client, json=body)


async def test_a_request_within_the_policy_is_granted_and_published(
    grid: Grid, clock: Clock, receiver: Receiver
) -> None:
    await _subscribe(grid, receiver)
    ven_id = await _ven(grid)
    resource = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven_id))
    assert resource["objectType"] == "RESOURCE"
    assert (resource["venID"], resource["clientID"]) == (ven_id, "ven1")
    assert attribute(resource, "X_CONNECTION_STATUS") == ["GRANTED"]
    assert attribute(resource, "X_GRANTED_KW") == [6.5]
    assert attribute(resource, "X_INVERTER") == ["SunSpec", "PV-8000", "SN123"]
    (event_id,) = attribute(resource, "X_GRANT_EVENT") or []

    event = await grid.ok("GET", f"/events/{event_id}", as_="ven1")
    assert event["programID"] == await grid.program_id("interconnection")
    assert event["targets"] == ["home:c1/h1"]
    descriptors = [
        {
            "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
            "payloadType": "EXPORT_CAPACITY_LIMIT",
            "units": "KW",
        }
    ]
    assert event["payloadDescriptors"] == descriptors
    program = await grid.ok("GET", f"/programs/{event['programID']}", as_="ven1")
    assert program["payloadDescriptors"] == descriptors
    assert event["intervalPeriod"] == {"start": format_datetime(clock.now), "duration": "P9999Y"}
    assert event["intervals"] == [
        {"id": 0, "payloads": [{"type": "EXPORT_CAPACITY_LIMIT", "values": [6.5]}]}
    ]
    claims = (await grid.verifier("c1")).verify(event).claims
    assert (claims.iss, claims.aud, claims.op) == ("test-grid", ("home:c1/h1",), Operation.CREATE)

    # Subscribers hear of the grant event as of any other, signed, and of the resource.
    first, second = (await receiver.next("ven1")).body, (await receiver.next("ven1")).body
    assert (first["objectType"], first["operation"], first["object"]) == ("EVENT", "CREATE", event)
    assert (second["objectType"], second["operation"], second["object"]) == (
        "RESOURCE",
        "CREATE",
        resource,
    )
    assert await grid.ok("GET", "/resources", as_="ven1", params={"venID": ven_id}) == [resource]
    assert await grid.ok("GET", f"/resources/{resource['id']}", as_="ven1") == resource


async def test_a_larger_request_is_refused_with_a_reason(grid: Grid) -> None:
    ven_id = await _ven(grid)
    body = connection_request(ven_id, kilowatts=15)
    resource = await grid.ok("POST", "/resources", as_="ven1", json=body)
    assert attribute(resource, "X_CONNECTION_STATUS") == ["REFUSED"]
    assert attribute(resource, "X_REASON") == [
        "15 kW is more than the 10 kW the grid approves for one connection."
    ]
    assert attribute(resource, "X_GRANTED_KW") is None
    assert attribute(resource, "X_GRANT_EVENT") is None
    program = await grid.program_id("interconnection")
    assert await grid.ok("GET", "/events", params={"programID": program}) == []


async def test_a_request_at_the_limit_is_granted(grid: Grid) -> None:
    body = connection_request(await _ven(grid), kilowatts=10)
    resource = await grid.ok("POST", "/resources", as_="ven1", json=body)
    assert attribute(resource, "X_CONNECTION_STATUS") == ["GRANTED"]


async def test_a_community_grant_is_recorded_as_it_is(grid: Grid) -> None:
    body = connection_request(await _ven(grid), status="COMMUNITY_GRANTED")
    body["attributes"].append({"type": "X_GRANTED_KW", "values": [6.5]})
    resource = await grid.ok("POST", "/resources", as_="ven1", json=body)
    assert resource["attributes"] == body["attributes"]
    program = await grid.program_id("interconnection")
    assert await grid.ok("GET", "/events", params={"programID": program}) == []


async def test_a_plain_resource_is_no_request(grid: Grid) -> None:
    body = {
        "objectType": "VEN_RESOURCE_REQUEST",
        "resourceName": "meter",
        "venID": await _ven(grid),
        "attributes": [{"type": "MAX_POWER_CONSUMPTION", "values": [11]}],
    }
    resource = await grid.ok("POST", "/resources", as_="ven1", json=body)
    assert resource["attributes"] == body["attributes"]
    assert "targets" not in resource


async def test_a_decision_after_a_delay_follows_the_grid_clock(
    make_grid: GridFactory, clock: Clock, receiver: Receiver
) -> None:
    grid = await make_grid(clock=clock, interconnection={**POLICY, "decide_after": 600})
    await _subscribe(grid, receiver)
    body = connection_request(await _ven(grid))
    created = await grid.ok("POST", "/resources", as_="ven1", json=body)
    assert attribute(created, "X_CONNECTION_STATUS") == ["REQUESTED"]
    assert attribute(created, "X_GRANT_EVENT") is None
    assert (await receiver.next("ven1")).body["operation"] == "CREATE"
    clock.advance(599)
    pending = await grid.ok("GET", f"/resources/{created['id']}", as_="ven1")
    assert attribute(pending, "X_CONNECTION_STATUS") == ["REQUESTED"]
    clock.advance(1)
    (decided,) = await grid.ok("GET", "/resources", as_="ven1")
    assert attribute(decided, "X_CONNECTION_STATUS") == ["GRANTED"]
    assert decided["modificationDateTime"] == format_datetime(clock.now)
    assert decided["createdDateTime"] == created["createdDateTime"]
    event = (await receiver.next("ven1")).body
    assert (event["objectType"], event["operation"]) == ("EVENT", "CREATE")
    assert [event["object"]["id"]] == attribute(decided, "X_GRANT_EVENT")
    update = (await receiver.next("ven1")).body
    assert (update["objectType"], update["operation"], update["object"]) == (
        "RESOURCE",
        "UPDATE",
        decided,
    )


async def test_asking_again_while_pending_keeps_the_time_unless_the_request_changes(
    make_grid: GridFactory, clock: Clock
) -> None:
    grid = await make_grid(clock=clock, interconnection={**POLICY, "decide_after": 600})
    ven_id = await _ven(grid)
    created = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven_id))
    path = f"/resources/{created['id']}"
    clock.advance(300)
    await grid.ok("PUT", path, as_="ven1", json=connection_request(ven_id))
    clock.advance(300)
    decided = await grid.ok("GET", path, as_="ven1")
    assert attribute(decided, "X_CONNECTION_STATUS") == ["GRANTED"]
    clock.advance(300)
    await grid.ok("PUT", path, as_="ven1", json=connection_request(ven_id, kilowatts=3))
    clock.advance(300)
    pending = await grid.ok("GET", path, as_="ven1")
    assert attribute(pending, "X_CONNECTION_STATUS") == ["REQUESTED"]
    assert attribute(pending, "X_GRANTED_KW") is None
    clock.advance(300)
    assert attribute(await grid.ok("GET", path, as_="ven1"), "X_GRANTED_KW") == [3]


async def test_a_due_decision_is_made_by_the_grid_itself(
    make_grid: GridFactory, receiver: Receiver
) -> None:
    # The real clock: nobody reads the resource, the grid's timer decides.
    grid = await make_grid(interconnection={**POLICY, "decide_after": 0.01})
    await _subscribe(grid, receiver)
    created = await grid.ok(
        "POST", "/resources", as_="ven1", json=connection_request(await _ven(grid))
    )
    assert attribute(created, "X_CONNECTION_STATUS") == ["REQUESTED"]
    kinds = [(await receiver.next("ven1")).body for _ in range(3)]
    assert [(n["objectType"], n["operation"]) for n in kinds] == [
        ("RESOURCE", "CREATE"),
        ("EVENT", "CREATE"),
        ("RESOURCE", "UPDATE"),
    ]
    assert attribute(kinds[2]["object"], "X_CONNECTION_STATUS") == ["GRANTED"]


async def test_asking_again_replaces_the_decision(grid: Grid, receiver: Receiver) -> None:
    await _subscribe(grid, receiver)
    ven_id = await _ven(grid)
    granted = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven_id))
    (event_id,) = attribute(granted, "X_GRANT_EVENT") or []
    path = f"/resources/{granted['id']}"
    more = await grid.ok("PUT", path, as_="ven1", json=connection_request(ven_id, kilowatts=8))
    assert attribute(more, "X_GRANT_EVENT") == [event_id]
    assert attribute(more, "X_GRANTED_KW") == [8]
    event = await grid.ok("GET", f"/events/{event_id}", as_="ven1")
    assert event["intervals"][0]["payloads"][0]["values"] == [8]
    assert (await grid.verifier("c1")).verify(event).claims.op is Operation.UPDATE
    too_much = await grid.ok("PUT", path, as_="ven1", json=connection_request(ven_id, kilowatts=20))
    assert attribute(too_much, "X_CONNECTION_STATUS") == ["REFUSED"]
    assert (await grid.call("GET", f"/events/{event_id}", as_="ven1")).status == 404
    notes = [(await receiver.next("ven1")).body for _ in range(6)]
    assert [(n["objectType"], n["operation"]) for n in notes] == [
        ("EVENT", "CREATE"),
        ("RESOURCE", "CREATE"),
        ("EVENT", "UPDATE"),
        ("RESOURCE", "UPDATE"),
        ("EVENT", "DELETE"),
        ("RESOURCE", "UPDATE"),
    ]
    assert (await grid.verifier("c1")).verify(notes[4]["object"], operation=Operation.DELETE)


async def test_the_decision_read_back_is_kept(grid: Grid) -> None:
    ven_id = await _ven(grid)
    granted = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven_id))
    path = f"/resources/{granted['id']}"
    echoed = await grid.ok(
        "PUT", path, as_="ven1", json={**granted, "objectType": "VEN_RESOURCE_REQUEST"}
    )
    assert echoed["attributes"] == granted["attributes"]
    program = await grid.program_id("interconnection")
    assert len(await grid.ok("GET", "/events", params={"programID": program})) == 1
    # A changed request under the grid's status is not a request.
    changed = connection_request(ven_id, kilowatts=9, status="GRANTED")
    reply = await grid.call("PUT", path, as_="ven1", json=changed)
    assert reply.status == 400
    assert reply.body["detail"].startswith(
        "attributes X_CONNECTION_STATUS: GRANTED is the grid's decision, not a request"
    )
    assert await grid.ok("GET", path, as_="ven1") == echoed


async def test_the_grids_status_cannot_be_claimed(grid: Grid) -> None:
    ven_id = await _ven(grid)
    for status in ("GRANTED", "REFUSED"):
        body = connection_request(ven_id, status=status)
        reply = await grid.call("POST", "/resources", as_="ven1", json=body)
        assert reply.status == 400
        assert f"{status} is the grid's decision" in reply.body["detail"]
    assert await grid.ok("GET", "/resources", as_="ven1") == []


async def test_a_community_grant_or_deletion_withdraws_the_grids_grant(
    grid: Grid, receiver: Receiver
) -> None:
    ven_id = await _ven(grid)
    first = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven_id))
    (first_event,) = attribute(first, "X_GRANT_EVENT") or []
    await grid.ok(
        "PUT",
        f"/resources/{first['id']}",
        as_="ven1",
        json=connection_request(ven_id, status="COMMUNITY_GRANTED"),
    )
    assert (await grid.call("GET", f"/events/{first_event}")).status == 404
    second = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven_id))
    (second_event,) = attribute(second, "X_GRANT_EVENT") or []
    assert await grid.ok("DELETE", f"/resources/{second['id']}", as_="ven1") == second
    assert (await grid.call("GET", f"/events/{second_event}")).status == 404
    assert (await grid.call("GET", f"/resources/{second['id']}", as_="ven1")).status == 404


async def test_a_grid_without_a_policy_refuses(make_grid: GridFactory) -> None:
    grid = await make_grid()
    names = [program["programName"] for program in await grid.ok("GET", "/programs")]
    assert "interconnection" not in names
    resource = await grid.ok(
        "POST", "/resources", as_="ven1", json=connection_request(await _ven(grid))
    )
    assert attribute(resource, "X_CONNECTION_STATUS") == ["REFUSED"]
    assert attribute(resource, "X_REASON") == ["This grid decides no grid-connection requests."]


async def test_a_missing_program_refuses_the_grant(grid: Grid) -> None:
    await grid.ok("DELETE", f"/programs/{await grid.program_id('interconnection')}")
    resource = await grid.ok(
        "POST", "/resources", as_="ven1", json=connection_request(await _ven(grid))
    )
    assert attribute(resource, "X_REASON") == [
        "The grid has no program 'interconnection' to publish the grant in."
    ]


async def test_each_ven_client_sees_only_its_own_resources(grid: Grid) -> None:
    mine = await grid.ok(
        "POST", "/resources", as_="ven1", json=connection_request(await _ven(grid))
    )
    theirs = await grid.ok(
        "POST",
        "/resources",
        as_="ven2",
        json=connection_request(await _ven(grid, "ven2"), targets=("home:c2/h9",)),
    )
    assert [r["id"] for r in await grid.ok("GET", "/resources", as_="ven1")] == [mine["id"]]
    assert [r["id"] for r in await grid.ok("GET", "/resources")] == [mine["id"], theirs["id"]]
    for method in ("GET", "PUT", "DELETE"):
        body = connection_request(theirs["venID"]) if method == "PUT" else None
        reply = await grid.call(method, f"/resources/{mine['id']}", as_="ven2", json=body)
        assert reply.status == 404, method
        assert reply.body["detail"] == f"no resource '{mine['id']}'"
    filtered = await grid.ok("GET", "/resources", params={"targets": "home:c2/h9"})
    assert [r["id"] for r in filtered] == [theirs["id"]]
    by_name = await grid.ok("GET", "/resources", params={"resourceName": "nothing"})
    assert by_name == []
    page = await grid.ok("GET", "/resources", params={"skip": "1", "limit": "1"})
    assert [r["id"] for r in page] == [theirs["id"]]


async def test_bl_writes_resources_for_a_vens_client(grid: Grid) -> None:
    ven_id = await _ven(grid)
    body = {**connection_request(ven_id), "objectType": "BL_RESOURCE_REQUEST", "clientID": "ven1"}
    resource = await grid.ok("POST", "/resources", json=body)
    assert resource["clientID"] == "ven1"
    assert [r["id"] for r in await grid.ok("GET", "/resources", as_="ven1")] == [resource["id"]]
    reply = await grid.call("POST", "/resources", json={**body, "clientID": "ven2"})
    assert reply.status == 400
    assert reply.body["detail"] == f"clientID: must be 'ven1', the client VEN '{ven_id}' is of"


def _without(body: dict[str, Any], kind: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed["attributes"] = [a for a in changed["attributes"] if a["type"] != kind]
    return changed


def _with(body: dict[str, Any], kind: str, values: list[Any]) -> dict[str, Any]:
    changed = _without(body, kind)
    changed["attributes"].append({"type": kind, "values": values})
    return changed


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        (
            lambda b: _without(b, "MAX_POWER_EXPORT"),
            "attributes MAX_POWER_EXPORT: a grid-connection request needs one positive number",
        ),
        (lambda b: _with(b, "MAX_POWER_EXPORT", [0]), "attributes MAX_POWER_EXPORT: "),
        (lambda b: _with(b, "MAX_POWER_EXPORT", ["6"]), "attributes MAX_POWER_EXPORT: "),
        (lambda b: _with(b, "MAX_POWER_EXPORT", [True]), "attributes MAX_POWER_EXPORT: "),
        (lambda b: _with(b, "MAX_POWER_EXPORT", [5, 6]), "attributes MAX_POWER_EXPORT: "),
        (
            lambda b: _with(b, "X_CONNECTION_STATUS", ["MAYBE"]),
            "attributes X_CONNECTION_STATUS: expected one value, one of REQUESTED, GRANTED,"
            " REFUSED, COMMUNITY_GRANTED",
        ),
        (
            lambda b: {**b, "targets": ["transformer:c1/t1"]},
            "targets: a grid-connection request names exactly one home (home:<c>/<h>), not 0",
        ),
        (
            lambda b: {**b, "targets": ["home:c1/h1", "home:c1/h2"]},
            "targets: a grid-connection request names exactly one home",
        ),
        (
            lambda b: {**b, "targets": ["home:c2/h1"]},
            "targets[0]: 'home:c2/h1' is not a target of this grid",
        ),
        (
            lambda b: {**b, "venID": "ven-unknown"},
            "venID: 'ven-unknown' names no VEN of this client",
        ),
        (
            lambda b: {**b, "objectType": "BL_RESOURCE_REQUEST"},
            "objectType: a VEN client sends VEN_RESOURCE_REQUEST",
        ),
        (lambda b: {**b, "resourceName": ""}, "resourceName: must be 1 to 128 characters"),
        (
            lambda b: {k: v for k, v in b.items() if k != "venID"},
            "venID: required property is missing",
        ),
    ],
)
async def test_bad_resource_requests_are_refused_naming_the_field(
    grid: Grid, change: Any, detail: str
) -> None:
    body = change(connection_request(await _ven(grid)))
    reply = await grid.call("POST", "/resources", as_="ven1", json=body)
    assert reply.status == 400
    assert reply.body["detail"].startswith(detail), reply.body
    assert await grid.ok("GET", "/resources", as_="ven1") == []


async def test_another_clients_ven_is_not_a_resources_ven(grid: Grid) -> None:
    theirs = await _ven(grid, "ven2")
    reply = await grid.call("POST", "/resources", as_="ven1", json=connection_request(theirs))
    assert reply.status == 400
    assert reply.body["detail"] == f"venID: '{theirs}' names no VEN of this client"
