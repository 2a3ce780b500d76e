"""Subscriptions: the echo check, and notifications delivered to real receivers."""

from __future__ import annotations

import asyncio
import time

from smart_community_protocol import Notification, Operation

from .conftest import Grid, GridFactory, Receiver, dr_event, subscription


async def test_subscription_is_stored_after_the_echo_check(grid: Grid, receiver: Receiver) -> None:
    created = await grid.ok(
        "POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("a"))
    )
    assert created["clientID"] == "ven1"
    assert created["objectType"] == "SUBSCRIPTION"
    assert [s["id"] for s in await grid.ok("GET", "/subscriptions", as_="ven1")] == [created["id"]]
    assert await grid.ok("GET", "/subscriptions", as_="ven2") == []
    assert len(await grid.ok("GET", "/subscriptions")) == 1


async def test_wrong_echo_refuses_the_subscription(grid: Grid, receiver: Receiver) -> None:
    receiver.echo_override["liar"] = "something else"
    reply = await grid.call(
        "POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("liar"))
    )
    assert reply.status == 400
    assert "echo" in reply.body["detail"]
    assert await grid.ok("GET", "/subscriptions", as_="ven1") == []


async def test_unreachable_callback_is_refused(grid: Grid) -> None:
    reply = await grid.call(
        "POST", "/subscriptions", as_="ven1", json=subscription("http://127.0.0.1:9/closed")
    )
    assert reply.status == 400
    assert "did not answer" in reply.body["detail"]


async def test_https_is_required_unless_loopback_http_is_allowed(
    make_grid: GridFactory, receiver: Receiver
) -> None:
    strict = await make_grid(webhooks={"allow_http_loopback": False})
    reply = await strict.call(
        "POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("a"))
    )
    assert reply.status == 400
    assert "https" in reply.body["detail"]
    relaxed = await make_grid()
    reply = await relaxed.call(
        "POST", "/subscriptions", as_="ven1", json=subscription("http://192.0.2.1/callback")
    )
    assert reply.status == 400
    assert "https" in reply.body["detail"]


async def test_named_hosts_may_be_called_over_http(
    make_grid: GridFactory, receiver: Receiver
) -> None:
    """A container network names the bridge; the grid may call it over plain HTTP if told so."""
    named = await make_grid(
        webhooks={"allow_http_loopback": False, "allow_http_hosts": ["127.0.0.1"]}
    )
    reply = await named.call(
        "POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("a"))
    )
    assert reply.status == 201
    reply = await named.call(
        "POST", "/subscriptions", as_="ven1", json=subscription("http://other-host/callback")
    )
    assert reply.status == 400


async def test_create_update_delete_are_delivered(grid: Grid, receiver: Receiver) -> None:
    await grid.ok("POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("bridge")))
    verifier = await grid.verifier("c1")
    program_id = await grid.program_id("dr")
    created = await grid.ok("POST", "/events", json=dr_event(program_id, targets=["community:c1"]))
    await grid.ok("PUT", f"/events/{created['id']}", json=dr_event(program_id, priority=2))
    await grid.ok("DELETE", f"/events/{created['id']}")
    for operation in (Operation.CREATE, Operation.UPDATE, Operation.DELETE):
        received = await receiver.next("bridge")
        assert received.authorization == "Bearer callback-token"
        notification = Notification.parse(received.body)
        assert notification.operation is operation
        assert notification.object["id"] == created["id"]
        claims = verifier.verify(notification.object, operation=operation).claims
        assert claims.op is operation
    assert receiver.queue("bridge").empty()


async def test_only_subscribers_who_may_see_the_object_are_notified(
    grid: Grid, receiver: Receiver
) -> None:
    await grid.ok("POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("c1")))
    await grid.ok("POST", "/subscriptions", as_="ven2", json=subscription(receiver.url("c2")))
    program_id = await grid.program_id("dr")
    for_c1 = await grid.ok("POST", "/events", json=dr_event(program_id, targets=["feeder:c1/f1"]))
    for_all = await grid.ok("POST", "/events", json=dr_event(program_id))
    assert (await receiver.next("c1")).body["object"]["id"] == for_c1["id"]
    assert (await receiver.next("c1")).body["object"]["id"] == for_all["id"]
    assert (await receiver.next("c2")).body["object"]["id"] == for_all["id"]
    assert receiver.queue("c2").empty()


async def test_subscription_filters_by_program_objects_and_operations(
    grid: Grid, receiver: Receiver
) -> None:
    other = await grid.ok("POST", "/programs", json={"programName": "other"})
    body = subscription(
        receiver.url("f"), objects=["EVENT"], operations=["DELETE"], programID=other["id"]
    )
    await grid.ok("POST", "/subscriptions", as_="ven1", json=body)
    ignored = await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    await grid.ok("DELETE", f"/events/{ignored['id']}")
    wanted = await grid.ok("POST", "/events", json=dr_event(other["id"]))
    await grid.ok("DELETE", f"/events/{wanted['id']}")
    received = await receiver.next("f")
    assert (received.body["operation"], received.body["object"]["id"]) == ("DELETE", wanted["id"])
    assert receiver.queue("f").empty()


async def test_slow_subscriber_does_not_delay_another(grid: Grid, receiver: Receiver) -> None:
    receiver.held.add("slow")
    await grid.ok("POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("slow")))
    await grid.ok("POST", "/subscriptions", as_="ven2", json=subscription(receiver.url("fast")))
    program_id = await grid.program_id("dr")
    started = time.monotonic()
    for _ in range(3):
        await grid.ok("POST", "/events", json=dr_event(program_id))
    for _ in range(3):
        await receiver.next("fast", within=1.0)
    assert time.monotonic() - started < 1.0
    assert receiver.queue("slow").empty()


async def test_failed_delivery_is_retried(grid: Grid, receiver: Receiver) -> None:
    receiver.failures["flaky"] = 2
    await grid.ok("POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("flaky")))
    event = await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    received = await receiver.next("flaky")
    assert received.body["object"]["id"] == event["id"]
    assert receiver.failures["flaky"] == 0


async def test_deleted_subscription_is_not_notified(grid: Grid, receiver: Receiver) -> None:
    gone = await grid.ok(
        "POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("gone"))
    )
    await grid.ok("POST", "/subscriptions", as_="ven1", json=subscription(receiver.url("kept")))
    assert (await grid.call("DELETE", f"/subscriptions/{gone['id']}", as_="ven2")).status == 404
    assert (await grid.ok("DELETE", f"/subscriptions/{gone['id']}", as_="ven1"))["id"] == gone["id"]
    await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    await receiver.next("kept")
    await asyncio.sleep(0.05)
    assert receiver.queue("gone").empty()


async def test_bl_is_notified_of_reports(grid: Grid, receiver: Receiver) -> None:
    await grid.ok(
        "POST", "/subscriptions", json=subscription(receiver.url("bl"), objects=["REPORT"])
    )
    event = await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    report = {
        "eventID": event["id"],
        "clientName": "bridge",
        "resources": [
            {
                "resourceName": "AGGREGATED_REPORT",
                "intervals": [{"id": 0, "payloads": [{"type": "USAGE", "values": [1.5]}]}],
            }
        ],
    }
    created = await grid.ok("POST", "/reports", as_="ven1", json=report)
    received = await receiver.next("bl")
    assert received.body["objectType"] == "REPORT"
    assert received.body["object"] == created
