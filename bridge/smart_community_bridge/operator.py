"""The operator's REST API: enrol, list and revoke homes; see the bridge's state.

Described by ``openapi.yaml`` beside this module, served at ``/operator/openapi.yaml``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
import time

from aiohttp import web
import voluptuous as vol

from smart_community_protocol import Placement, TargetError, format_datetime

from . import homes
from .access import Role, allow
from .problems import json_body, problem
from .state import AUTHORITY, CONFIG, FAULTS, INTAKE, LEDGER, RELAY, UPSTREAM

_ID = vol.All(
    str, vol.Match(r"^[A-Za-z0-9_-]{1,64}$", msg="must be 1-64 letters, digits, '_' or '-'")
)
_ENROLLMENT = vol.Schema(
    {
        vol.Required("home"): _ID,
        vol.Required("feeder"): _ID,
        vol.Required("transformer"): _ID,
        vol.Optional("ttl", default=homes.DEFAULT_CODE_TTL): vol.All(
            vol.Coerce(int), vol.Range(min=60, max=90 * 24 * 3600)
        ),
    }
)


@allow(Role.OPERATOR)
async def create_enrollment_code(request: web.Request) -> web.Response:
    """Issue a single-use enrollment code for a place in the topology."""
    body = await json_body(request, _ENROLLMENT)
    try:
        placement = Placement(
            community=request.app[CONFIG].community,
            feeder=body["feeder"],
            transformer=body["transformer"],
            home=body["home"],
        )
    except TargetError as err:
        return problem(400, "Bad Request", str(err))
    code, expires_at = await homes.issue_code(request.app[LEDGER], placement, body["ttl"])
    return web.json_response(
        {
            "home": placement.home,
            "feeder": placement.feeder,
            "transformer": placement.transformer,
            "code": code,
            "expires": format_datetime(datetime.fromtimestamp(expires_at, UTC)),
        },
        status=201,
    )


@allow(Role.OPERATOR)
async def list_homes(request: web.Request) -> web.Response:
    """Every registered home, whether revoked, and whether connected now."""
    connected = request.app[RELAY].connected_homes()
    return web.json_response(
        [
            {
                "home": record.home_id,
                "feeder": record.feeder,
                "transformer": record.transformer,
                "revoked": record.revoked,
                "connected": record.home_id in connected,
            }
            for record in await request.app[LEDGER].homes()
        ]
    )


@allow(Role.OPERATOR)
async def revoke_home(request: web.Request) -> web.Response:
    """Revoke a home's credential and disconnect it at once."""
    home_id = request.match_info["home"]
    if not await request.app[LEDGER].revoke_home(home_id):
        return problem(404, "Not Found", f"no home {home_id!r}")
    closed = request.app[RELAY].disconnect_home(home_id, "credential revoked")
    return web.json_response({"home": home_id, "revoked": True, "disconnected": closed})


@allow(Role.OPERATOR)
async def status(request: web.Request) -> web.Response:
    """The bridge at a glance."""
    app = request.app
    upstream = app[UPSTREAM]
    intake = app[INTAKE]
    delegation = app[AUTHORITY].current
    return web.json_response(
        {
            "community": app[CONFIG].community,
            "homes_connected": app[RELAY].connected,
            "last_seq": await app[LEDGER].last_seq(),
            "signals_accepted": intake.accepted,
            "signals_rejected": dict(intake.rejected),
            "grid_connected": upstream.connected,
            "grid_last_sync": upstream.last_sync or None,
            "delegation": None
            if delegation is None
            else {
                "grid": delegation.grid,
                "grants": sorted(delegation.grants),
                "hosting_kw": dict(delegation.hosting_kw),
                "expires": format_datetime(datetime.fromtimestamp(delegation.expires, UTC)),
            },
            "faults": len(app[FAULTS].active),
            "time": time.time(),
        }
    )


@allow()
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document of the operator API."""
    text = resources.files(__package__).joinpath("openapi.yaml").read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/yaml")


@allow(Role.OPERATOR)
async def list_faults(request: web.Request) -> web.Response:
    """The faults the community has located and that are not over."""
    return web.json_response(
        [
            {
                "level": fault.level,
                "place": fault.place,
                "feeder": fault.feeder,
                "code": fault.code,
                "homes": sorted(fault.homes),
                "since": format_datetime(datetime.fromtimestamp(fault.since, UTC)),
            }
            for fault in request.app[FAULTS].active.values()
        ]
    )


def add_routes(app: web.Application) -> None:
    """Mount the operator routes."""
    app.router.add_post("/operator/enrollment-codes", create_enrollment_code)
    app.router.add_get("/operator/homes", list_homes)
    app.router.add_post("/operator/homes/{home}/revoke", revoke_home)
    app.router.add_get("/operator/status", status)
    app.router.add_get("/operator/faults", list_faults)
    app.router.add_get("/operator/openapi.yaml", openapi)
