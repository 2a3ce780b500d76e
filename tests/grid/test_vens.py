"""VENs: create, read, update, delete, unique names, and who sees which."""

from __future__ import annotations

from typing import Any

import pytest

from smart_community_protocol import format_datetime

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

DESCRIPTION = {"type": "DESCRIPTION", "values": ["bridge of community c1"]}


async def test_a_ven_client_creates_its_own_ven(make_grid: GridFactory) -> None:
    clock = Clock()
    grid = await make_grid(clock=clock)
    ven = await grid.ok(
        "POST", "/vens", as_="ven1", json=ven_request("c1-bridge", attributes=[DESCRIPTION])
    )
    assert ven["id"].startswith("ven-")
    assert ven["objectType"] == "VEN"
    assert ven["createdDateTime"] == ven["modificationDateTime"]
    assert ven["createdDateTime"] == format_datetime(clock.now)
    assert (ven["venName"], ven["clientID"], ven["targets"]) == (
        "c1-bridge",
        "ven1",
        ["community:c1"],
    )
    assert ven["attributes"] == [DESCRIPTION]
    assert await grid.ok("GET", f"/vens/{ven['id']}", as_="ven1") == ven


async def test_a_ven_client_cannot_choose_its_client_or_targets(grid: Grid) -> None:
    body = ven_request("c1-bridge", clientID="ven2", targets=["community:c2"], id="mine")
    ven = await grid.ok("POST", "/vens", as_="ven1", json=body)
    assert (ven["clientID"], ven["targets"]) == ("ven1", ["community:c1"])
    assert ven["id"] != "mine"


async def test_update_keeps_identity_and_replaces_content(make_grid: GridFactory) -> None:
    clock = Clock()
    grid = await make_grid(clock=clock)
    created = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("c1-bridge"))
    clock.advance(5)
    updated = await grid.ok(
        "PUT",
        f"/vens/{created['id']}",
        as_="ven1",
        json=ven_request("c1-bridge-2", attributes=[DESCRIPTION]),
    )
    assert updated["id"] == created["id"]
    assert updated["createdDateTime"] == created["createdDateTime"]
    assert updated["modificationDateTime"] > created["modificationDateTime"]
    assert (updated["venName"], updated["attributes"]) == ("c1-bridge-2", [DESCRIPTION])
    assert await grid.ok("GET", f"/vens/{created['id']}", as_="ven1") == updated


async def test_delete_removes_the_ven(grid: Grid) -> None:
    created = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("c1-bridge"))
    assert await grid.ok("DELETE", f"/vens/{created['id']}", as_="ven1") == created
    assert (await grid.call("GET", f"/vens/{created['id']}", as_="ven1")).status == 404
    assert (await grid.call("DELETE", f"/vens/{created['id']}", as_="ven1")).status == 404
    # The name is free again.
    await grid.ok("POST", "/vens", as_="ven2", json=ven_request("c1-bridge"))


async def test_deleting_a_ven_deletes_its_resources(make_grid: GridFactory) -> None:
    grid = await make_grid(interconnection={"approve_up_to_kw": 10})
    ven = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("c1-bridge"))
    other = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("c1-other"))
    granted = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven["id"]))
    kept = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(other["id"]))
    await grid.ok("DELETE", f"/vens/{ven['id']}", as_="ven1")
    assert await grid.ok("GET", "/resources", as_="ven1") == [kept]
    (event_id,) = attribute(granted, "X_GRANT_EVENT") or []
    assert (await grid.call("GET", f"/events/{event_id}")).status == 404


async def test_ven_names_are_unique(grid: Grid) -> None:
    first = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("bridge"))
    taken = await grid.call("POST", "/vens", as_="ven2", json=ven_request("bridge"))
    assert taken.status == 409
    assert taken.body["detail"] == f"venName 'bridge' is taken by VEN '{first['id']}'"
    other = await grid.ok("POST", "/vens", as_="ven2", json=ven_request("other"))
    renamed = await grid.call("PUT", f"/vens/{other['id']}", as_="ven2", json=ven_request("bridge"))
    assert renamed.status == 409
    # Renaming a VEN to its own name is no conflict.
    await grid.ok("PUT", f"/vens/{first['id']}", as_="ven1", json=ven_request("bridge"))


async def test_each_ven_client_sees_only_its_own_and_bl_sees_all(grid: Grid) -> None:
    mine = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("c1-bridge"))
    theirs = await grid.ok("POST", "/vens", as_="ven2", json=ven_request("c2-bridge"))
    by_bl = await grid.ok(
        "POST",
        "/vens",
        json={"objectType": "BL_VEN_REQUEST", "clientID": "ven1", "venName": "c1-spare"},
    )
    assert (by_bl["clientID"], by_bl["targets"]) == ("ven1", ["community:c1"])

    def ids(vens: list[dict[str, Any]]) -> list[str]:
        return [ven["id"] for ven in vens]

    assert ids(await grid.ok("GET", "/vens", as_="ven1")) == [mine["id"], by_bl["id"]]
    assert ids(await grid.ok("GET", "/vens", as_="ven2")) == [theirs["id"]]
    assert ids(await grid.ok("GET", "/vens")) == [mine["id"], theirs["id"], by_bl["id"]]
    for method in ("GET", "PUT", "DELETE"):
        body = ven_request("stolen") if method == "PUT" else None
        reply = await grid.call(method, f"/vens/{mine['id']}", as_="ven2", json=body)
        assert reply.status == 404, method
        assert reply.body["detail"] == f"no VEN '{mine['id']}'"
    assert (await grid.ok("GET", f"/vens/{mine['id']}"))["venName"] == "c1-bridge"


async def test_listing_filters_by_name_and_targets_and_pages(grid: Grid) -> None:
    names = [f"bridge-{n}" for n in range(5)]
    for name in names:
        await grid.ok("POST", "/vens", as_="ven1", json=ven_request(name))
    await grid.ok("POST", "/vens", as_="ven2", json=ven_request("c2"))
    listed = await grid.ok("GET", "/vens", params={"venName": "bridge-3"})
    assert [ven["venName"] for ven in listed] == ["bridge-3"]
    in_c2 = await grid.ok("GET", "/vens", params={"targets": "community:c2"})
    assert [ven["venName"] for ven in in_c2] == ["c2"]
    page = await grid.ok("GET", "/vens", as_="ven1", params={"skip": "2", "limit": "2"})
    assert [ven["venName"] for ven in page] == names[2:4]


@pytest.mark.parametrize(
    ("as_", "body", "detail"),
    [
        (
            "ven1",
            {"objectType": "BL_VEN_REQUEST", "clientID": "ven1", "venName": "x"},
            "objectType: a VEN client sends VEN_VEN_REQUEST",
        ),
        ("ven1", {"venName": "x"}, "objectType: a VEN client sends VEN_VEN_REQUEST"),
        ("bl", ven_request("x"), "objectType: a BL client sends BL_VEN_REQUEST"),
        (
            "bl",
            {"objectType": "BL_VEN_REQUEST", "venName": "x"},
            "clientID: required property is missing",
        ),
        (
            "bl",
            {"objectType": "BL_VEN_REQUEST", "clientID": "bl", "venName": "x"},
            "clientID: 'bl' names no VEN client of this grid",
        ),
        (
            "bl",
            {
                "objectType": "BL_VEN_REQUEST",
                "clientID": "ven1",
                "venName": "x",
                "targets": ["community:elsewhere"],
            },
            "targets[0]: 'community:elsewhere' is not a target of this grid",
        ),
        ("ven1", ven_request(""), "venName: must be 1 to 128 characters"),
        ("ven1", ven_request("x" * 129), "venName: must be 1 to 128 characters"),
        ("ven1", {"objectType": "VEN_VEN_REQUEST"}, "venName: required property is missing"),
        ("ven1", ven_request(5), "venName: expected a string, got number"),
        (
            "ven1",
            ven_request("x", attributes=[{"type": "DESCRIPTION"}]),
            "attributes[0].values: required property is missing",
        ),
        ("ven1", ven_request("x", attributes=["DESCRIPTION"]), "attributes[0]: expected a JSON"),
        ("ven1", [ven_request("x")], "body: expected a JSON object"),
    ],
)
async def test_bad_ven_requests_are_refused_naming_the_field(
    grid: Grid, as_: str, body: Any, detail: str
) -> None:
    reply = await grid.call("POST", "/vens", as_=as_, json=body)
    assert reply.status == 400
    assert reply.body["detail"].startswith(detail), reply.body
    assert await grid.ok("GET", "/vens") == []


async def test_writing_vens_needs_the_write_vens_scope(grid: Grid) -> None:
    token = await grid.token("ven1", scope="read_targets read_ven_objects")
    headers = {"Authorization": f"Bearer {token}"}
    reply = await grid.call("POST", "/vens", json=ven_request("x"), headers=headers)
    assert reply.status == 403
    assert "write_vens" in reply.body["detail"]
    assert (await grid.call("GET", "/vens", headers=headers)).status == 200
    token = await grid.token("ven1", scope="write_vens")
    reply = await grid.call("GET", "/vens", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 403
    assert "read_ven_objects" in reply.body["detail"]
    assert (await grid.call("GET", "/vens", as_=None)).status == 401


async def test_ven_changes_are_announced_to_their_owner_only(
    grid: Grid, receiver: Receiver
) -> None:
    for client in ("ven1", "ven2"):
        await grid.ok(
            "POST",
            "/subscriptions",
            as_=client,
            json=subscription(receiver.url(client), objects=["VEN"]),
        )
    ven = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("c1-bridge"))
    renamed = await grid.ok("PUT", f"/vens/{ven['id']}", as_="ven1", json=ven_request("c1"))
    await grid.ok("DELETE", f"/vens/{ven['id']}", as_="ven1")
    seen = [(await receiver.next("ven1")).body for _ in range(3)]
    assert [(n["objectType"], n["operation"]) for n in seen] == [
        ("VEN", "CREATE"),
        ("VEN", "UPDATE"),
        ("VEN", "DELETE"),
    ]
    assert [n["object"] for n in seen] == [ven, renamed, renamed]
    # ven2 heard nothing of ven1's VEN: the first news it gets is of its own.
    own = await grid.ok("POST", "/vens", as_="ven2", json=ven_request("c2-bridge"))
    assert (await receiver.next("ven2")).body["object"] == own
