"""Errors as OpenADR ``problem`` bodies."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from smart_community_protocol import Problem

_LOGGER = logging.getLogger(__name__)


def problem(status: int, title: str, detail: str | None = None) -> web.Response:
    """An OpenADR problem response."""
    return web.json_response(
        Problem(title=title, status=status, detail=detail).to_json_dict(), status=status
    )


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
