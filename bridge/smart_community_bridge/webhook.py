"""The bridge's webhook for grid notifications (OpenADR 3.1 subscriptions)."""

from __future__ import annotations

from aiohttp import web

from smart_community_protocol import ModelError, Notification, ObjectType
from smart_community_protocol.validation import parse_json

from .access import Role, allow
from .problems import problem
from .state import INTAKE

CALLBACK_PATH = "/grid/notifications"
_RELAYED = frozenset({ObjectType.PROGRAM, ObjectType.EVENT})


@allow()
async def verify_callback(request: web.Request) -> web.Response:
    """Answer the grid's callback check by echoing its challenge."""
    echo = request.query.get("echo")
    if echo is None:
        return problem(400, "Bad Request", "query 'echo' is required")
    return web.Response(text=echo)


@allow(Role.GRID)
async def receive_notification(request: web.Request) -> web.Response:
    """Take a notification from the grid; the object inside is verified before anything else."""
    try:
        notification = Notification.parse(await request.json(loads=parse_json))
    except ValueError as err:  # JSON errors and ModelError alike
        detail = str(err) if isinstance(err, ModelError) else "body is not JSON"
        return problem(400, "Bad Request", detail)
    if notification.object_type in _RELAYED:
        await request.app[INTAKE].accept(notification.object, notification.operation)
    return web.json_response({"status": "received"})


def add_routes(app: web.Application) -> None:
    """Mount the grid-facing routes."""
    app.router.add_get(CALLBACK_PATH, verify_callback)
    app.router.add_post(CALLBACK_PATH, receive_notification)
