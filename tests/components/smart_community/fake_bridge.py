"""A fake community bridge on 127.0.0.1, and a fake grid that signs what it relays.

The bridge implements the home-facing API of docs/protocol.md (REST resync and WebSocket push)
over real sockets, so the integration is tested against a peer rather than mocks. Unlike the
real bridge it relays whatever a test hands it, forged or addressed elsewhere: a compromised
relay, which is what the home must withstand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import formatdate
import json
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from homeassistant.util import dt as dt_util

from custom_components.smart_community.protocol import (
    Grant,
    Operation,
    Placement,
    PublicKey,
    Signer,
    community_target,
    format_datetime,
    issue_delegation,
    jwks,
)

type Signed = dict[str, Any]


class FakeGrid:
    """The grid's signing key, and builders for the objects it publishes."""

    def __init__(self, community: str, issuer: str = "demo-grid") -> None:
        """A grid with a fresh Ed25519 key that addresses ``community``."""
        self.signer = Signer.generate(issuer)
        self.community = community

    @property
    def public_key(self) -> PublicKey:
        """The key homes pin."""
        return self.signer.public_key

    def sign(
        self,
        obj: dict[str, Any],
        *,
        audience: list[str] | None = None,
        operation: Operation = Operation.UPDATE,
        valid_for: timedelta = timedelta(days=2),
        not_before: datetime | None = None,
        issued_at: datetime | None = None,
    ) -> Signed:
        """Sign an object for the community (or ``audience``), valid from now on."""
        now = int(dt_util.utcnow().timestamp())
        return self.signer.sign(
            obj,
            audience=audience or [community_target(self.community)],
            not_before=int(not_before.timestamp()) if not_before else now - 60,
            expires=now + int(valid_for.total_seconds()),
            operation=operation,
            issued_at=int(issued_at.timestamp()) if issued_at else now,
        )


class FakeCommunity:
    """The community's own key, signing under the grid's delegation as the bridge does."""

    def __init__(
        self,
        grid: FakeGrid,
        grants: list[Grant],
        *,
        lifetime: timedelta = timedelta(days=1),
    ) -> None:
        """A community key the grid delegates ``grants`` to, from now for ``lifetime``."""
        self.community = grid.community
        self.signer = Signer.generate(f"community:{grid.community}")
        self.issued_at = int(dt_util.utcnow().timestamp())
        self.expires = self.issued_at + int(lifetime.total_seconds())
        self.signer.delegation = issue_delegation(
            grid.signer,
            delegate=self.signer.issuer,
            community=grid.community,
            key=self.signer.public_key,
            grants=grants,
            lifetime=lifetime.total_seconds(),
            issued_at=self.issued_at,
        )

    def sign(
        self,
        obj: dict[str, Any],
        *,
        audience: list[str],
        operation: Operation = Operation.UPDATE,
        expires: int | None = None,
    ) -> Signed:
        """Sign an event for ``audience``, valid until the delegation ends (or ``expires``)."""
        now = int(dt_util.utcnow().timestamp())
        return self.signer.sign(
            obj,
            audience=audience,
            not_before=now - 60,
            expires=self.expires if expires is None else expires,
            operation=operation,
            issued_at=now,
        )


def community_event(
    event_id: str,
    payload_type: str,
    value: float | str,
    *,
    start: datetime,
    duration: str,
    units: str | None = "KW",
    name: str | None = None,
    program_id: str = "X_COMMUNITY",
) -> dict[str, Any]:
    """An event of one interval with one payload, as the community signs its own."""
    descriptor: dict[str, Any] = {
        "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
        "payloadType": payload_type,
    }
    if units is not None:
        descriptor["units"] = units
    event: dict[str, Any] = {
        **_metadata(event_id, "EVENT"),
        "programID": program_id,
        "payloadDescriptors": [descriptor],
        "intervalPeriod": {"start": format_datetime(start), "duration": duration},
        "intervals": [{"id": 0, "payloads": [{"type": payload_type, "values": [value]}]}],
    }
    if name is not None:
        event["eventName"] = name
    return event


def price_event(
    event_id: str,
    *,
    start: datetime,
    prices: list[float],
    currency: str | None = "CNY",
    interval: str = "PT1H",
    priority: int | None = None,
    program_id: str = "tariff",
    export_prices: list[float] | None = None,
) -> dict[str, Any]:
    """A PRICE event: one interval of length ``interval`` per price, back to back.

    With ``export_prices``, each interval also carries that interval's EXPORT_PRICE.
    """
    descriptor: dict[str, Any] = {
        "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
        "payloadType": "PRICE",
        "units": "KWH",
    }
    if currency:
        descriptor["currency"] = currency
    exports = export_prices or []
    event: dict[str, Any] = {
        **_metadata(event_id, "EVENT"),
        "programID": program_id,
        "eventName": f"Tariff {event_id}",
        "payloadDescriptors": [descriptor],
        "intervalPeriod": {"start": format_datetime(start), "duration": interval},
        "intervals": [
            {
                "id": index,
                "payloads": [
                    {"type": "PRICE", "values": [price]},
                    *([{"type": "EXPORT_PRICE", "values": [exports[index]]}] if exports else []),
                ],
            }
            for index, price in enumerate(prices)
        ],
    }
    if priority is not None:
        event["priority"] = priority
    return event


def dr_event(
    event_id: str,
    *,
    start: datetime,
    duration: str = "PT1H",
    name: str = "Evening peak",
    level: int = 2,
    program_id: str = "peak-saver",
) -> dict[str, Any]:
    """A SIMPLE demand-response event with one interval."""
    return {
        **_metadata(event_id, "EVENT"),
        "programID": program_id,
        "eventName": name,
        "intervalPeriod": {"start": format_datetime(start), "duration": duration},
        "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [level]}]}],
    }


def capacity_event(
    event_id: str,
    *,
    start: datetime,
    duration: str = "PT1H",
    import_limit: float | None = None,
    export_limit: float | None = None,
    units: str = "KW",
) -> dict[str, Any]:
    """An event that caps the home's import and/or export power for one interval."""
    limits = {"IMPORT_CAPACITY_LIMIT": import_limit, "EXPORT_CAPACITY_LIMIT": export_limit}
    kinds = {kind: value for kind, value in limits.items() if value is not None}
    return {
        **_metadata(event_id, "EVENT"),
        "programID": "grid-limits",
        "eventName": f"Limit {event_id}",
        "payloadDescriptors": [
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": kind, "units": units}
            for kind in kinds
        ],
        "intervalPeriod": {"start": format_datetime(start), "duration": duration},
        "intervals": [
            {"id": 0, "payloads": [{"type": k, "values": [v]} for k, v in kinds.items()]}
        ],
    }


def program(program_id: str, *, currency: str = "CNY") -> dict[str, Any]:
    """A tariff program whose price descriptor names the currency."""
    return {
        **_metadata(program_id, "PROGRAM"),
        "programName": f"Program {program_id}",
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": "PRICE",
                "units": "KWH",
                "currency": currency,
            }
        ],
    }


def _metadata(object_id: str, object_type: str) -> dict[str, Any]:
    moment = format_datetime(dt_util.utcnow())
    return {
        "id": object_id,
        "objectType": object_type,
        "createdDateTime": moment,
        "modificationDateTime": moment,
    }


def notification(obj: Any, operation: Operation = Operation.UPDATE) -> dict[str, Any]:
    """A notification body as the bridge pushes it."""
    object_type = obj.get("objectType", "EVENT") if isinstance(obj, dict) else "EVENT"
    return {"objectType": object_type, "operation": str(operation), "object": obj}


class FakeBridge:
    """The bridge's downstream API for one home, on an ephemeral port of 127.0.0.1."""

    def __init__(self, placement: Placement, credential: str, keys: list[PublicKey]) -> None:
        """Serve ``placement`` to whoever presents ``credential``; offer ``keys`` to pin."""
        self.placement = placement
        self.credential = credential
        self.keys = keys
        self.available = True
        # Answer HTML where JSON belongs, as a web server that is no bridge would.
        self.broken = False
        self.clock_offset = timedelta(0)  # how far the bridge's clock is ahead of the home's
        self.enrollment_codes: set[str] = set()  # single-use codes that enrol the home again
        # Signed objects served over REST, by (objectType, id).
        self.objects: dict[tuple[str, str], Signed] = {}
        # The push ledger: every notification relayed, its sequence its position + 1.
        self.ledger: list[dict[str, Any]] = []
        self.acks: list[int] = []
        self.since: list[int] = []
        self.requests: list[str] = []
        # Reports stored (answered 201); set report_status to answer otherwise.
        self.reports: list[dict[str, Any]] = []
        self.report_status = 201
        # Resources (PV systems asking for a grid connection) the home registered.
        self.resources: list[dict[str, Any]] = []
        self.resource_status = 201
        # The reconnect guidance the welcome carries ({"initial", "max"}, seconds); None: none.
        self.reconnect: dict[str, float] | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        """Listen on an ephemeral port."""
        app = web.Application(middlewares=[self._guard])
        app.router.add_post("/enroll", self._enroll)
        app.router.add_get("/home", self._home)
        app.router.add_get("/keys", self._keys)
        app.router.add_get("/programs", self._programs)
        app.router.add_get("/events", self._events)
        app.router.add_get("/ws", self._websocket)
        app.router.add_post("/reports", self._post_report)
        app.router.add_get("/resources", self._get_resources)
        app.router.add_post("/resources", self._post_resource)
        # No access log: it reads the local time zone, which frozen time does not provide.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Close every push connection and stop listening."""
        await self.disconnect()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def open_connections(self) -> int:
        """How many push connections are open."""
        return len(self._sockets)

    def serve(self, obj: Signed) -> None:
        """Serve an object over REST without pushing it."""
        self.objects[(obj["objectType"], obj["id"])] = obj

    async def publish(
        self, obj: Any, operation: Operation = Operation.UPDATE, *, serve: bool = True
    ) -> int:
        """Relay an object: record it in the ledger, push it, and (with ``serve``) serve it."""
        if serve and isinstance(obj, dict):
            if operation is Operation.DELETE:
                self.objects.pop((obj["objectType"], obj["id"]), None)
            else:
                self.serve(obj)
        return await self.push(notification(obj, operation))

    async def push(self, body: dict[str, Any]) -> int:
        """Record a raw notification body in the ledger and push it to connected homes."""
        self.ledger.append(body)
        seq = self.last_seq
        await self.send({"type": "signal", "seq": seq, "notification": body})
        return seq

    async def send(self, message: Any) -> None:
        """Send a raw frame to every connected home."""
        for socket in list(self._sockets):
            await socket.send_str(json.dumps(message))

    @property
    def last_seq(self) -> int:
        """The sequence of the last ledger entry."""
        return len(self.ledger)

    async def disconnect(self) -> None:
        """Drop every push connection, as a bridge restart would."""
        for socket in list(self._sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY)

    async def wait_for_ack(self, seq: int) -> None:
        """Wait until a home has acknowledged signal ``seq``."""
        await self._wait(lambda: seq in self.acks)

    async def wait_for_requests(self, path: str, count: int) -> None:
        """Wait until ``path`` has been requested ``count`` times in total."""
        await self._wait(lambda: self.requests.count(path) >= count)

    async def wait_for_reports(self, count: int) -> None:
        """Wait until ``count`` reports have been stored in total."""
        await self._wait(lambda: len(self.reports) >= count)

    def reports_on(self, event_id: str) -> list[dict[str, Any]]:
        """The stored reports on an event (or a private event id such as X_TELEMETRY)."""
        return [r for r in self.reports if r["eventID"] == event_id]

    async def wait_for_disconnect(self) -> None:
        """Wait until no push connection is open."""
        await self._wait(lambda: self.open_connections == 0)

    async def _wait(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        self.requests.append(request.path)
        await self._notify()
        if not self.available:
            return _problem(503, "Service Unavailable")
        public = request.path in {"/enroll", "/keys"}
        if not public and request.headers.get("Authorization") != f"Bearer {self.credential}":
            return _problem(401, "Unauthorized")
        response: web.StreamResponse = await handler(request)
        if isinstance(response, web.Response):
            moment = dt_util.utcnow() + self.clock_offset
            response.headers["Date"] = formatdate(moment.timestamp(), usegmt=True)
        return response

    async def _enroll(self, request: web.Request) -> web.Response:
        code = (await request.json()).get("code")
        if code not in self.enrollment_codes:
            return _problem(403, "Forbidden")
        self.enrollment_codes.discard(code)
        self.credential = f"{self.credential}-renewed"
        return web.json_response({**self._placement(), "credential": self.credential}, status=201)

    async def _home(self, _request: web.Request) -> web.Response:
        if self.broken:
            return web.Response(text="<html>It works!</html>", content_type="text/html")
        return web.json_response(self._placement())

    def _placement(self) -> dict[str, Any]:
        placement = self.placement
        return {
            "home": placement.home,
            "community": placement.community,
            "feeder": placement.feeder,
            "transformer": placement.transformer,
            "targets": sorted(placement.targets),
        }

    async def _keys(self, _request: web.Request) -> web.Response:
        return web.json_response(jwks(self.keys))

    async def _programs(self, _request: web.Request) -> web.Response:
        if self.broken:
            return web.Response(text="<html>It works!</html>", content_type="text/html")
        return web.json_response([o for (kind, _), o in self.objects.items() if kind == "PROGRAM"])

    async def _events(self, _request: web.Request) -> web.Response:
        return web.json_response([o for (kind, _), o in self.objects.items() if kind == "EVENT"])

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        since = int(request.query["since"])
        socket = web.WebSocketResponse(compress=False)
        await socket.prepare(request)
        welcome: dict[str, Any] = {
            "type": "welcome",
            "home": self.placement.home,
            "last_seq": self.last_seq,
            "heartbeat": 30,
        }
        if self.reconnect is not None:
            welcome["reconnect"] = self.reconnect
        await socket.send_json(welcome)
        for seq in range(since + 1, self.last_seq + 1):
            body = self.ledger[seq - 1]
            await socket.send_json({"type": "signal", "seq": seq, "notification": body})
        self._sockets.add(socket)
        self.since.append(since)
        await self._notify()
        try:
            async for message in socket:
                if message.type is WSMsgType.TEXT:
                    decoded = json.loads(message.data)
                    if decoded.get("type") == "ack":
                        self.acks.append(decoded["seq"])
                        await self._notify()
        finally:
            self._sockets.discard(socket)
            await self._notify()
        return socket

    async def _post_report(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.report_status == 400:
            return _problem(400, "Bad Request", "resources: required property is missing")
        if self.report_status != 201:
            return _problem(self.report_status, "Service Unavailable")
        if not isinstance(body.get("eventID"), str) or not body.get("resources"):
            return _problem(400, "Bad Request", "eventID: required property is missing")
        self.reports.append(body)
        await self._notify()
        return web.json_response({**body, "id": f"report-{len(self.reports)}"}, status=201)

    async def _get_resources(self, _request: web.Request) -> web.Response:
        return web.json_response(self.resources)

    async def _post_resource(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.resource_status != 201:
            return _problem(
                self.resource_status, "Refused", "MAX_POWER_EXPORT: above the hosting capacity"
            )
        if not isinstance(body.get("resourceName"), str):
            return _problem(400, "Bad Request", "resourceName: required property is missing")
        stored = {
            **body,
            "id": f"resource-{len(self.resources) + 1}",
            "objectType": "RESOURCE",
            "venID": self.placement.home,
            "X_CONNECTION_STATUS": "REQUESTED",
        }
        self.resources.append(stored)
        return web.json_response(stored, status=201)


def _problem(status: int, title: str, detail: str | None = None) -> web.Response:
    body: dict[str, Any] = {"title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    return web.json_response(body, status=status)
