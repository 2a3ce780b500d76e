"""The bridge's VTN for homes: REST resync and the WebSocket push (docs/protocol.md)."""

from __future__ import annotations

from datetime import UTC, datetime
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web
import voluptuous as vol

from smart_community_protocol import (
    Event,
    ModelError,
    Placement,
    TimingError,
    addresses,
    event_window,
    format_datetime,
    jwks,
)
from smart_community_protocol.push import (
    PushMessageError,
    ReportFrame,
    Welcome,
    encode_report_result,
    encode_welcome,
    home_message_from,
)

from . import homes
from .access import CALLER, Role, allow
from .interconnection import ResourceRejected
from .ledger import StoredSignal
from .problems import json_body, problem, read_json
from .relay import HomeConnection, signal_frame
from .state import CONFIG, INGEST, INTAKE, INTERCONNECTION, LEDGER, RELAY
from .telemetry import ReportRejected, TelemetryIngest

_LOGGER = logging.getLogger(__name__)
MAX_FRAME = 64 * 1024


def _json_array(bodies: list[str]) -> web.Response:
    # Signed objects go out exactly as stored: joined, never re-encoded.
    return web.Response(text=f"[{','.join(bodies)}]", content_type="application/json")


def _for_home(signals: list[StoredSignal], home: Placement) -> list[StoredSignal]:
    return [s for s in signals if addresses(list(s.audience), home.targets)]


def _placement_json(home: Placement) -> dict[str, Any]:
    return {
        "home": home.home,
        "community": home.community,
        "feeder": home.feeder,
        "transformer": home.transformer,
        "targets": sorted(home.targets),
    }


@allow(Role.HOME)
async def get_home(request: web.Request) -> web.Response:
    """Who the caller is and where it sits."""
    return web.json_response(_placement_json(request[CALLER].home))


_ENROLL = vol.Schema({vol.Required("code"): vol.All(str, vol.Length(min=1, max=64))})


@allow()
async def enroll(request: web.Request) -> web.Response:
    """Exchange a single-use enrollment code for the home's own credential."""
    body = await json_body(request, _ENROLL)
    redeemed = await homes.redeem_code(
        request.app[LEDGER], request.app[CONFIG].community, body["code"]
    )
    if redeemed is None:
        return problem(
            403,
            "Forbidden",
            "enrollment code is unknown, used or expired; ask the operator for a new one",
        )
    placement, credential = redeemed
    return web.json_response({**_placement_json(placement), "credential": credential}, status=201)


@allow(Role.HOME)
async def rotate_credential(request: web.Request) -> web.Response:
    """Replace the caller's credential; the old one stops working at once."""
    credential = await homes.rotate_credential(request.app[LEDGER], request[CALLER].name)
    if credential is None:
        return problem(403, "Forbidden", "the home is revoked")
    return web.json_response({"credential": credential})


@allow()
async def get_keys(request: web.Request) -> web.Response:
    """The grid keys the bridge trusts (public keys), for a home to pin as it enrols."""
    return web.json_response(jwks(request.app[INTAKE].verifier.pinned))


@allow(Role.HOME)
async def get_programs(request: web.Request) -> web.Response:
    """Signed programs addressed to the caller."""
    home = request[CALLER].home
    signals = await request.app[LEDGER].current_objects("PROGRAM", now=time.time())
    return _json_array([s.body for s in _for_home(signals, home)])


def _still_active(signal: StoredSignal, now: datetime) -> bool:
    try:
        window = event_window(Event.parse(json.loads(signal.body)), received_at=now)
    except ModelError, TimingError, ValueError:
        return False
    return window is not None and (window[1] is None or window[1] > now)


@allow(Role.HOME)
async def get_events(request: web.Request) -> web.Response:
    """Signed events addressed to the caller; ``active=true`` leaves out ended ones."""
    home = request[CALLER].home
    active = request.query.get("active", "false").lower()
    if active not in {"true", "false"}:
        return problem(400, "Bad Request", "query 'active' must be true or false")
    signals = _for_home(await request.app[LEDGER].current_objects("EVENT", now=time.time()), home)
    if active == "true":
        now = datetime.now(UTC)
        signals = [s for s in signals if _still_active(s, now)]
    return _json_array([s.body for s in signals])


@allow(Role.HOME)
async def websocket(request: web.Request) -> web.StreamResponse:
    """Push signals to one home: replay what it missed, then live ones."""
    home = request[CALLER].home
    try:
        since = int(request.query.get("since", "0"))
    except ValueError:
        return problem(400, "Bad Request", "query 'since' must be an integer sequence")
    config = request.app[CONFIG]
    socket = web.WebSocketResponse(
        heartbeat=config.heartbeat, compress=False, max_msg_size=MAX_FRAME
    )
    try:
        await socket.prepare(request)
    except ConnectionError:
        # The home hung up before the answer to its upgrade (it restarted, it reloaded).
        return socket
    relay = request.app[RELAY]
    connection = HomeConnection(home, socket, request.transport, config.home_send_buffer)
    relay.register(connection)  # live signals are held while the replay is read
    try:
        await _welcome_and_replay(request, connection, since)
        ingest = request.app[INGEST]
        async for message in socket:
            if message.type is not WSMsgType.TEXT:
                break
            _take_frame(ingest, connection, message.data)
    except ConnectionError:
        pass  # the home went away while the bridge wrote to it: it resumes when it is back
    finally:
        relay.unregister(connection)
    return socket


async def _welcome_and_replay(request: web.Request, connection: HomeConnection, since: int) -> None:
    """The welcome, then every still-valid signal after ``since`` for the home, in order."""
    config, ledger, relay = request.app[CONFIG], request.app[LEDGER], request.app[RELAY]
    socket, home = connection.socket, connection.placement
    last = await ledger.last_seq()
    welcome = Welcome(
        home=home.home, last_seq=last, heartbeat=config.heartbeat, reconnect=config.reconnect
    )
    await socket.send_str(encode_welcome(welcome))
    replay = _for_home(await ledger.signals_since(since, now=time.time()), home)
    for signal in replay:
        await socket.send_frame(signal_frame(signal), WSMsgType.TEXT)
    if not connection.finish_replay(replay[-1].seq if replay else since):
        relay.drop(connection, "too many signals arrived during its replay")


def _take_frame(ingest: TelemetryIngest, connection: HomeConnection, text: str) -> None:
    # A function of its own, so that nothing decoded outlives the frame while the home is idle.
    try:
        frame = home_message_from(text)
    except PushMessageError as err:
        _LOGGER.info("home %s sent a frame the bridge ignores: %s", connection.placement.home, err)
        return
    if isinstance(frame, ReportFrame):
        _take_report(ingest, connection, frame)


def _take_report(ingest: TelemetryIngest, connection: HomeConnection, frame: ReportFrame) -> None:
    """Queue a report from the push channel; the home is answered once it is stored."""
    ref = frame.ref  # the answer keeps only this, not the report, until the batch commits

    def answer(stored: str | Exception) -> None:
        if isinstance(stored, Exception):
            result = encode_report_result(ref, 503, "not stored; send it again")
        else:
            result = encode_report_result(ref, 201)
        connection.offer(0, result.encode())

    try:
        ingest.enqueue(connection.placement, frame.report, answer)
    except ReportRejected as err:
        connection.offer(0, encode_report_result(ref, 400, str(err)).encode())


@allow(Role.HOME)
async def post_report(request: web.Request) -> web.Response:
    """Store a report (OpenADR reportRequest) from the caller; 201 once it is durable."""
    data = await read_json(request)
    caller = request[CALLER]
    try:
        report_id = await request.app[INGEST].submit(caller.home, data)
    except ReportRejected as err:
        return problem(400, "Bad Request", str(err))
    now = format_datetime(datetime.now(UTC))
    stored = {
        **data,
        "id": report_id,
        "createdDateTime": now,
        "modificationDateTime": now,
        "objectType": "REPORT",
        "clientID": caller.name,
    }
    return web.json_response(stored, status=201)


@allow(Role.HOME)
async def get_vens(request: web.Request) -> web.Response:
    """The caller's own VEN: the bridge provisions one per home, named by the home."""
    home = request[CALLER].home
    since = await request.app[LEDGER].home_since(home.home)
    moment = format_datetime(datetime.fromtimestamp(since or time.time(), UTC))
    ven = {
        "id": home.home,
        "createdDateTime": moment,
        "modificationDateTime": moment,
        "objectType": "VEN",
        "venName": home.home,
        "clientID": home.home,
        "targets": sorted(home.targets),
    }
    return web.json_response([ven])


@allow(Role.HOME)
async def get_resources(request: web.Request) -> web.Response:
    """The caller's resources; ``resourceName`` narrows them to one name."""
    name = request.query.get("resourceName")
    resources = await request.app[LEDGER].home_resources(request[CALLER].home.home)
    return web.json_response(
        [r.body for r in resources if name is None or r.body.get("resourceName") == name]
    )


@allow(Role.HOME)
async def post_resource(request: web.Request) -> web.Response:
    """Register a resource of the caller (a PV system's grid-connection request)."""
    data = await read_json(request)
    try:
        resource = await request.app[INTERCONNECTION].register(request[CALLER].home, data)
    except ResourceRejected as err:
        return problem(400, "Bad Request", str(err))
    return web.json_response(resource.body, status=201)


@allow(Role.HOME)
async def get_resource(request: web.Request) -> web.Response:
    """One of the caller's resources."""
    resource_id = request.match_info["resourceID"]
    for resource in await request.app[LEDGER].home_resources(request[CALLER].home.home):
        if resource.id == resource_id:
            return web.json_response(resource.body)
    return problem(404, "Not Found", f"this home has no resource {resource_id!r}")


@allow(Role.HOME)
async def delete_resource(request: web.Request) -> web.Response:
    """Withdraw one of the caller's resources (a granted connection is cancelled)."""
    resource_id = request.match_info["resourceID"]
    withdrawn = await request.app[INTERCONNECTION].withdraw(request[CALLER].home, resource_id)
    if withdrawn is None:
        return problem(404, "Not Found", f"this home has no resource {resource_id!r}")
    return web.json_response(withdrawn.body)


def add_routes(app: web.Application) -> None:
    """Mount the home-facing routes."""
    app.router.add_get("/home", get_home)
    app.router.add_get("/keys", get_keys)
    app.router.add_get("/programs", get_programs)
    app.router.add_get("/events", get_events)
    app.router.add_get("/ws", websocket)
    app.router.add_post("/reports", post_report)
    app.router.add_get("/vens", get_vens)
    app.router.add_get("/resources", get_resources)
    app.router.add_post("/resources", post_resource)
    app.router.add_get("/resources/{resourceID}", get_resource)
    app.router.add_delete("/resources/{resourceID}", delete_resource)
    app.router.add_post("/enroll", enroll)
    app.router.add_post("/home/credential", rotate_credential)
