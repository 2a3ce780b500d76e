"""OpenAPI conformance: requests and responses of every endpoint against openadr3-3.1.0.yaml.

The specification is reference material outside the repository (../shared/openadr3); these
tests are skipped where it is absent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from smart_community_protocol import Signer, format_datetime
from tests.openadr_conformance import SPEC, Conformance, load_spec

from .conftest import (
    Grid,
    GridFactory,
    Receiver,
    attribute,
    connection_request,
    delegate_key,
    dr_event,
    scenario_dict,
    subscription,
    ven_request,
)

# Endpoints of docs/protocol.md that the OpenADR specification does not define.
OUTSIDE_SPEC = {("GET", "/.well-known/jwks.json")}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The specification as a dict, with its known quirks repaired."""
    if (document := load_spec()) is None:
        pytest.skip(f"OpenADR 3.1 specification not found at {SPEC}")
    return document


def _report(event_id: str) -> dict[str, Any]:
    return {
        "eventID": event_id,
        "clientName": "bridge",
        "reportName": "usage",
        "payloadDescriptors": [
            {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE", "units": "KWH"}
        ],
        "resources": [
            {
                "resourceName": "AGGREGATED_REPORT",
                "intervalPeriod": {"start": format_datetime(datetime.now(UTC)), "duration": "PT1H"},
                "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [3.2]}]}],
            }
        ],
    }


async def _tour(grid: Grid, conformance: Conformance, receiver: Receiver) -> None:
    """Call every endpoint, in success and in the errors the grid answers."""
    await grid.ok("GET", "/auth/server", as_=None)
    await grid.token("ven1")
    form = {"grant_type": "client_credentials", "client_id": "bl", "client_secret": "wrong"}
    assert (await grid.call("POST", "/auth/token", as_=None, data=form)).status == 401
    with conformance.invalid_requests():
        form = {"grant_type": "password", "client_id": "bl", "client_secret": "x"}
        assert (await grid.call("POST", "/auth/token", as_=None, data=form)).status == 400
    await grid.ok("GET", "/notifiers", as_="ven1")
    await grid.ok("GET", "/.well-known/jwks.json", as_=None)

    program = await grid.ok(
        "POST",
        "/programs",
        json={
            "programName": "conformance",
            "programDescriptions": [{"URL": "https://grid.example/programs/conformance"}],
            "payloadDescriptors": [
                {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "SIMPLE"}
            ],
            "targets": ["community:c1"],
        },
    )
    assert (await grid.call("POST", "/programs", json={"programName": "conformance"})).status == 409
    await grid.ok(
        "GET",
        "/programs",
        as_="ven1",
        params=[("targets", "community:c1"), ("skip", "0"), ("limit", "10")],
    )
    await grid.ok("GET", f"/programs/{program['id']}", as_="ven1")
    assert (await grid.call("GET", f"/programs/{program['id']}", as_="ven2")).status == 404
    await grid.ok(
        "PUT",
        f"/programs/{program['id']}",
        json={"programName": "conformance", "targets": ["community:c1"]},
    )
    assert (
        await grid.call("POST", "/programs", as_="ven1", json={"programName": "x"})
    ).status == 403
    with conformance.invalid_requests():
        assert (await grid.call("GET", "/programs", as_=None)).status == 401

    await grid.ok("POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("tour")))
    event = await grid.ok(
        "POST",
        "/events",
        json=dr_event(
            program["id"],
            priority=1,
            targets=["feeder:c1/f1"],
            duration="PT30M",
            payloadDescriptors=[
                {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": "SIMPLE"}
            ],
            reportDescriptors=[
                {"payloadType": "USAGE", "readingType": "DIRECT_READ", "units": "KWH"}
            ],
        ),
    )
    with conformance.invalid_requests():
        assert (await grid.call("POST", "/events", json={"eventName": "no program"})).status == 400
        assert (await grid.call("GET", "/events", params={"limit": "51"})).status == 400
    params = [
        ("programID", program["id"]),
        ("targets", "feeder:c1/f1"),
        ("targets", "home:c1/h1"),
        ("active", "true"),
        ("skip", "0"),
        ("limit", "50"),
    ]
    assert [e["id"] for e in await grid.ok("GET", "/events", as_="ven1", params=params)] == [
        event["id"]
    ]
    await grid.ok("GET", f"/events/{event['id']}", as_="ven1")
    assert (await grid.call("GET", "/events/missing", as_="ven1")).status == 404
    await grid.ok(
        "PUT", f"/events/{event['id']}", json=dr_event(program["id"], targets=["feeder:c1/f1"])
    )

    await grid.ok("POST", "/reports", as_="ven1", json=_report(event["id"]))
    await grid.ok(
        "GET",
        "/reports",
        params={"eventID": event["id"], "clientName": "bridge", "skip": "0", "limit": "5"},
    )
    await grid.ok("GET", "/reports", as_="ven1", params={"programID": program["id"]})

    await grid.ok("DELETE", f"/events/{event['id']}")
    assert (await grid.call("DELETE", f"/events/{event['id']}")).status == 404
    await grid.ok("DELETE", f"/programs/{program['id']}")

    subscriptions = await grid.ok(
        "GET",
        "/subscriptions",
        as_="ven1",
        params=[("objects", "EVENT"), ("clientName", "test-subscriber")],
    )
    await grid.ok("DELETE", f"/subscriptions/{subscriptions[0]['id']}", as_="ven1")
    assert (
        await grid.call("DELETE", f"/subscriptions/{subscriptions[0]['id']}", as_="ven1")
    ).status == 404


async def _vens_and_resources(grid: Grid, conformance: Conformance) -> None:
    """VENs with a delegation, resources with grid-connection decisions."""
    bridge = Signer.generate("bridge-c1")
    description = {"type": "DESCRIPTION", "values": ["the bridge of c1"]}
    body = ven_request("c1-bridge", attributes=[delegate_key(bridge.public_key), description])
    ven = await grid.ok("POST", "/vens", as_="ven1", json=body)
    assert attribute(ven, "X_DELEGATION") is not None
    assert (
        await grid.call("POST", "/vens", as_="ven2", json=ven_request("c1-bridge"))
    ).status == 409
    unusable = ven_request("x", attributes=[{"type": "X_DELEGATE_KEY", "values": ["{}"]}])
    assert (await grid.call("POST", "/vens", as_="ven1", json=unusable)).status == 400
    with conformance.invalid_requests():
        assert (await grid.call("POST", "/vens", as_="ven1", json={"venName": "x"})).status == 400
    spare = await grid.ok(
        "POST",
        "/vens",
        json={
            "objectType": "BL_VEN_REQUEST",
            "clientID": "ven2",
            "venName": "c2-bridge",
            "targets": ["community:c2"],
        },
    )
    params = [("venName", "c1-bridge"), ("targets", "community:c1"), ("skip", "0"), ("limit", "5")]
    assert await grid.ok("GET", "/vens", as_="ven1", params=params) == [ven]
    await grid.ok("GET", f"/vens/{ven['id']}", as_="ven1")
    assert (await grid.call("GET", f"/vens/{ven['id']}", as_="ven2")).status == 404
    await grid.ok("PUT", f"/vens/{ven['id']}", as_="ven1", json=body)
    renamed = await grid.call(
        "PUT", f"/vens/{ven['id']}", as_="ven1", json=ven_request("c2-bridge")
    )
    assert renamed.status == 409

    granted = await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven["id"]))
    refused = connection_request(ven["id"], kilowatts=15)
    await grid.ok("POST", "/resources", as_="ven1", json=refused)
    mistaken = connection_request(spare["id"])
    assert (await grid.call("POST", "/resources", as_="ven1", json=mistaken)).status == 400
    params = [
        ("venID", ven["id"]),
        ("resourceName", "pv-h1"),
        ("targets", "home:c1/h1"),
        ("skip", "0"),
        ("limit", "5"),
    ]
    assert len(await grid.ok("GET", "/resources", as_="ven1", params=params)) == 2
    await grid.ok("GET", f"/resources/{granted['id']}", as_="ven1")
    assert (await grid.call("GET", f"/resources/{granted['id']}", as_="ven2")).status == 404
    more = connection_request(ven["id"], kilowatts=8)
    await grid.ok("PUT", f"/resources/{granted['id']}", as_="ven1", json=more)
    assert (await grid.call("PUT", "/resources/missing", as_="ven1", json=more)).status == 404
    await grid.ok("DELETE", f"/resources/{granted['id']}", as_="ven1")
    await grid.ok("DELETE", f"/vens/{ven['id']}", as_="ven1")
    assert (await grid.call("DELETE", f"/vens/{ven['id']}", as_="ven1")).status == 404
    await grid.ok("DELETE", f"/vens/{spare['id']}")


def _delegating_clients() -> list[dict[str, Any]]:
    clients = scenario_dict()["clients"]
    clients[1]["delegation"] = {"grants": {"EXPORT_CAPACITY_LIMIT": {"min": 0, "max": 10}}}
    return list(clients)


async def test_every_endpoint_conforms(
    make_grid: GridFactory, receiver: Receiver, spec: dict[str, Any]
) -> None:
    grid = await make_grid(clients=_delegating_clients(), interconnection={"approve_up_to_kw": 10})
    conformance = Conformance(spec, grid.url)
    grid.observers.append(conformance.observe)
    await _tour(grid, conformance, receiver)
    await _vens_and_resources(grid, conformance)
    assert conformance.errors == []
    implemented = {
        (route.method, route.resource.canonical)
        for route in grid.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    covered = {(method, template) for method, template, _ in conformance.checked}
    assert implemented - OUTSIDE_SPEC == covered
    assert conformance.outside == OUTSIDE_SPEC


async def test_notifications_conform(
    make_grid: GridFactory, receiver: Receiver, spec: dict[str, Any]
) -> None:
    grid = await make_grid(clients=_delegating_clients(), interconnection={"approve_up_to_kw": 10})
    conformance = Conformance(spec, grid.url)
    objects = ["PROGRAM", "EVENT", "VEN", "RESOURCE"]
    await grid.ok(
        "POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("n"), objects=objects)
    )
    program_id = await grid.program_id("dr")
    event = await grid.ok("POST", "/events", json=dr_event(program_id))
    await grid.ok("DELETE", f"/events/{event['id']}")
    key = delegate_key(Signer.generate("bridge-c1").public_key)
    ven = await grid.ok("POST", "/vens", as_="ven1", json=ven_request("c1", attributes=[key]))
    await grid.ok("POST", "/resources", as_="ven1", json=connection_request(ven["id"]))
    kinds = []
    for _ in range(5):  # event created and deleted, VEN, grant event, resource
        body = (await receiver.next("n")).body
        errors = [str(error.message) for error in conformance.notification.iter_errors(body)]
        assert errors == []
        kinds.append(body["objectType"])
    assert kinds == ["EVENT", "EVENT", "VEN", "EVENT", "RESOURCE"]


async def test_published_tariff_conforms(grid: Grid, spec: dict[str, Any]) -> None:
    conformance = Conformance(spec, grid.url)
    grid.observers.append(conformance.observe)
    await grid.ok("GET", "/programs", as_="ven1")
    await grid.ok("GET", "/events", as_="ven1")
    assert conformance.errors == []
