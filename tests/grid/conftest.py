"""Fixtures: a grid on a test server, clients that call it, and a webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import json as json_module
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
import pytest

from smart_community_grid.app import create_app
from smart_community_grid.scenario import parse_scenario
from smart_community_grid.vtn import utc_now
from smart_community_protocol import (
    PublicKey,
    Verifier,
    format_datetime,
    keys_from_jwks,
    within_community,
)

SECRETS = {"bl": "bl-secret", "ven1": "ven1-secret", "ven2": "ven2-secret"}

BASE_SCENARIO: dict[str, Any] = {
    "grid": "test-grid",
    "signing_key": "keys/grid.pem",
    "token_lifetime": 60,
    "max_body_size": 64 * 1024,
    "communities": ["c1", "c2"],
    "clients": [
        {"client_id": "bl", "secret": SECRETS["bl"], "role": "BL"},
        {"client_id": "ven1", "secret": SECRETS["ven1"], "role": "VEN", "community": "c1"},
        {"client_id": "ven2", "secret": SECRETS["ven2"], "role": "VEN", "community": "c2"},
    ],
    "tariff": {
        "program": "tou",
        "timezone": "Asia/Shanghai",
        "currency": "CNY",
        "periods": [{"start": "00:00", "price": 0.3}, {"start": "08:00", "price": 0.6}],
        "export_periods": [{"start": "00:00", "price": 0.39}],
    },
    "programs": [{"name": "dr"}],
    "webhooks": {"timeout": 2, "attempts": 3, "backoff": 0.05, "allow_http_loopback": True},
}

type Observer = Callable[[str, str, dict[str, Any], bytes | None, str | None, "Reply"], None]


@dataclass
class Reply:
    """What the grid answered."""

    status: int
    body: Any
    headers: dict[str, str]
    raw: bytes
    content_type: str


@dataclass
class Grid:
    """A running grid and typed helpers to call it as one of its clients."""

    client: TestClient[web.Request, web.Application]
    tokens: dict[str, str] = field(default_factory=dict)
    observers: list[Observer] = field(default_factory=list)

    @property
    def app(self) -> web.Application:
        """The grid application."""
        app = self.client.app
        assert app is not None
        return app

    @property
    def url(self) -> str:
        """The grid's base URL."""
        return str(self.client.make_url("")).rstrip("/")

    async def token(self, client_id: str, scope: str | None = None) -> str:
        """A fresh access token for a test client."""
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": SECRETS[client_id],
        }
        if scope is not None:
            form["scope"] = scope
        reply = await self.call("POST", "/auth/token", as_=None, data=form)
        assert reply.status == 200, reply.body
        return str(reply.body["access_token"])

    async def call(
        self,
        method: str,
        path: str,
        *,
        as_: str | None = "bl",
        json: Any = None,
        data: Any = None,
        params: list[tuple[str, str]] | dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Call the grid as client ``as_`` (None: without a token)."""
        sent_headers = dict(headers or {})
        if as_ is not None and "Authorization" not in sent_headers:
            if as_ not in self.tokens:
                self.tokens[as_] = await self.token(as_)
            sent_headers["Authorization"] = f"Bearer {self.tokens[as_]}"
        async with self.client.request(
            method, path, json=json, data=data, params=params, headers=sent_headers
        ) as response:
            raw = await response.read()
            body = await response.json(content_type=None) if raw else None
            reply = Reply(response.status, body, dict(response.headers), raw, response.content_type)
            sent, content_type = _sent_body(json, data)
            for observer in self.observers:
                info = response.request_info
                observer(method, str(info.url), dict(info.headers), sent, content_type, reply)
        return reply

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The body of a call that must succeed."""
        reply = await self.call(method, path, **kwargs)
        assert reply.status in {200, 201}, (reply.status, reply.body)
        return reply.body

    async def verifier(self, community: str | None = None) -> Verifier:
        """A verifier pinned to the grid's published keys, for one community or all."""
        keys = await self.keys()
        if community is None:
            return Verifier(keys, audience=lambda target: True)
        return Verifier(keys, audience=lambda target: within_community(target, community))

    async def keys(self) -> list[PublicKey]:
        """The grid's keys from its JWK Set."""
        return keys_from_jwks(await self.ok("GET", "/.well-known/jwks.json", as_=None))

    async def program_id(self, name: str) -> str:
        """The id of a program by name."""
        programs = await self.ok("GET", "/programs")
        return next(str(p["id"]) for p in programs if p["programName"] == name)


def _sent_body(json_body: Any, data: Any) -> tuple[bytes | None, str | None]:
    if json_body is not None:
        return json_module.dumps(json_body).encode(), "application/json"
    if isinstance(data, dict):
        return urlencode(data).encode(), "application/x-www-form-urlencoded"
    if isinstance(data, bytes | str):
        return (data.encode() if isinstance(data, str) else data), None
    return None, None


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    """The base test scenario with top-level keys replaced."""
    data = copy.deepcopy(BASE_SCENARIO)
    data.update(copy.deepcopy(overrides))
    return data


type GridFactory = Callable[..., Awaitable[Grid]]


@dataclass
class Clock:
    """A clock for the grid that stands still until a test moves it."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        """The current time of the grid."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the grid's time forward."""
        self.now += timedelta(seconds=seconds)

    def timestamp(self) -> float:
        """The grid's time in seconds since the epoch (a Verifier's clock)."""
        return self.now.timestamp()


@pytest.fixture
async def make_grid(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
    tmp_path: Path,
) -> GridFactory:
    """Start a grid for the base scenario with top-level keys replaced (and its clock)."""

    async def start(*, clock: Callable[[], datetime] = utc_now, **overrides: Any) -> Grid:
        scenario = parse_scenario(scenario_dict(**overrides), tmp_path)
        return Grid(await aiohttp_client(create_app(scenario, clock=clock)))

    return start


@pytest.fixture
async def grid(make_grid: GridFactory) -> Grid:
    """A grid running the base scenario."""
    return await make_grid()


def dr_event(program_id: str, **fields: Any) -> dict[str, Any]:
    """An eventRequest body: SIMPLE level 1 for 30 minutes starting in ten minutes."""
    start = fields.pop("start", datetime.now(UTC) + timedelta(minutes=10))
    body: dict[str, Any] = {
        "programID": program_id,
        "eventName": "test event",
        "intervalPeriod": {"start": format_datetime(start), "duration": "PT30M"},
        "intervals": [{"id": 0, "payloads": [{"type": "SIMPLE", "values": [1]}]}],
    }
    body.update(fields)
    return body


@dataclass
class Received:
    """One notification the receiver got."""

    authorization: str | None
    body: Any


class Receiver:
    """A webhook subscriber on 127.0.0.1: echoes challenges, records notifications."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.inbox: dict[str, asyncio.Queue[Received]] = {}
        self.held: set[str] = set()
        self.release = asyncio.Event()
        self.failures: dict[str, int] = {}
        self.echo_override: dict[str, str] = {}
        self.base = ""

    def queue(self, name: str) -> asyncio.Queue[Received]:
        """The notifications received at callback ``name``."""
        return self.inbox.setdefault(name, asyncio.Queue())

    def url(self, name: str) -> str:
        """The callback URL named ``name``."""
        return f"{self.base}/{name}"

    async def next(self, name: str, within: float = 3.0) -> Received:
        """The next notification at ``name``, waiting at most ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self.queue(name).get()

    async def echo(self, request: web.Request) -> web.Response:
        """Answer the challenge."""
        name = request.match_info["name"]
        return web.Response(text=self.echo_override.get(name, request.query.get("echo", "")))

    async def notify(self, request: web.Request) -> web.Response:
        """Record a notification (held until released, or failing first, when asked)."""
        name = request.match_info["name"]
        body = await request.json()
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            return web.Response(status=503)
        if name in self.held:
            await self.release.wait()
        self.queue(name).put_nowait(Received(request.headers.get("Authorization"), body))
        return web.json_response({"status": "received"})


@pytest.fixture
async def receiver(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[Receiver]:
    """A webhook receiver listening on 127.0.0.1."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_get("/{name}", receiver.echo)
    app.router.add_post("/{name}", receiver.notify)
    server = await aiohttp_server(app, host="127.0.0.1")
    receiver.base = str(server.make_url("")).rstrip("/")
    yield receiver
    receiver.release.set()


def subscription(
    callback: str,
    *,
    objects: list[str] | None = None,
    operations: list[str] | None = None,
    token: str = "callback-token",  # noqa: S107 - a test callback's bearer token
    **fields: Any,
) -> dict[str, Any]:
    """A subscriptionRequest body."""
    body: dict[str, Any] = {
        "clientName": "test-subscriber",
        "objectOperations": [
            {
                "objects": objects or ["PROGRAM", "EVENT"],
                "operations": operations or ["CREATE", "UPDATE", "DELETE"],
                "callbackUrl": callback,
                "bearerToken": token,
            }
        ],
    }
    body.update(fields)
    return body


def ven_request(name: str, **fields: Any) -> dict[str, Any]:
    """A VenVenRequest body, as a VEN client posts its own VEN."""
    body: dict[str, Any] = {"objectType": "VEN_VEN_REQUEST", "venName": name}
    body.update(fields)
    return body


def delegate_key(key: PublicKey) -> dict[str, Any]:
    """The attribute that asks the grid to delegate to a bridge's key (a JWK as JSON text)."""
    return {"type": "X_DELEGATE_KEY", "values": [json_module.dumps(key.to_jwk())]}


def connection_request(
    ven_id: str,
    *,
    kilowatts: float = 6.5,
    status: str = "REQUESTED",
    targets: tuple[str, ...] = ("home:c1/h1", "transformer:c1/t1"),
    **fields: Any,
) -> dict[str, Any]:
    """A VenResourceRequest body: a PV system at one home asking for a grid connection."""
    body: dict[str, Any] = {
        "objectType": "VEN_RESOURCE_REQUEST",
        "resourceName": "pv-h1",
        "venID": ven_id,
        "targets": list(targets),
        "attributes": [
            {"type": "X_CONNECTION_STATUS", "values": [status]},
            {"type": "MAX_POWER_EXPORT", "values": [kilowatts]},
            {"type": "X_INVERTER", "values": ["SunSpec", "PV-8000", "SN123"]},
        ],
    }
    body.update(fields)
    return body


def attribute(obj: dict[str, Any], kind: str) -> list[Any] | None:
    """The values of an object's attribute of one type (None when it has none)."""
    found = [a["values"] for a in obj.get("attributes") or () if a["type"] == kind]
    assert len(found) <= 1, found
    return found[0] if found else None
