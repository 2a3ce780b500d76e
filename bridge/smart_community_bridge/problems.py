"""Errors as OpenADR ``problem`` bodies, and request bodies checked with a clear reason."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
import voluptuous as vol

from smart_community_protocol import Problem
from smart_community_protocol.validation import parse_json

_LOGGER = logging.getLogger(__name__)


def problem(
    status: int, title: str, detail: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    """An OpenADR problem response."""
    body = Problem(title=title, status=status, detail=detail).to_json_dict()
    return web.json_response(body, status=status, headers=headers)


async def read_json(request: web.Request) -> Any:
    """The request's body as JSON; a 400 saying why when it is not."""
    try:
        return parse_json(await request.read())
    except ValueError as err:
        raise web.HTTPBadRequest(text=f"body is not JSON: {err}") from err


async def json_body(request: web.Request, schema: vol.Schema) -> Any:
    """The request's JSON body, validated; 400 naming the offending key otherwise."""
    data = await read_json(request)
    try:
        return schema(data)
    except vol.MultipleInvalid as err:
        where = ".".join(str(p) for p in err.errors[0].path) or "body"
        raise web.HTTPBadRequest(text=f"{where}: {err.errors[0].msg}") from err


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error with a problem body, never an HTML page or a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400 or err.content_type == "application/json":
            raise
        detail = err.text if err.text and err.text != f"{err.status}: {err.reason}" else None
        return problem(err.status, err.reason, detail)
    except Exception:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error")
