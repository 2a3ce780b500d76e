"""Who may call what: every endpoint declares the roles it admits, and nothing else gets in.

Callers prove who they are with a bearer token: a home with its credential (``sch_``), an
operator with an operator token (``sco_``), the grid with the bearer token the bridge gave its
webhook subscription. Tokens are random; only their SHA-256 is stored. A home's identity comes
from its credential alone, so no endpoint takes a home id from a home: a home can only ever
reach its own data.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
import hashlib
import hmac
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler

from smart_community_protocol import Placement

from .problems import problem
from .state import CONFIG, LEDGER, UPSTREAM

HOME_PREFIX = "sch_"
OPERATOR_PREFIX = "sco_"


class Role(StrEnum):
    """The kinds of callers."""

    HOME = "home"
    OPERATOR = "operator"
    GRID = "grid"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller."""

    role: Role
    name: str
    placement: Placement | None = None

    @property
    def home(self) -> Placement:
        """The caller's home (only for the home role, which every home endpoint admits)."""
        assert self.placement is not None
        return self.placement


CALLER = web.RequestKey("caller", Caller)
_ROLES_ATTRIBUTE = "__smart_community_roles__"

type RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token(prefix: str) -> str:
    """A fresh bearer token with its role's prefix."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the ledger stores of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def allow(*roles: Role) -> Callable[[RouteHandler], RouteHandler]:
    """Declare the roles an endpoint admits; with none, the endpoint is public."""

    def declare(handler: RouteHandler) -> RouteHandler:
        setattr(handler, _ROLES_ATTRIBUTE, frozenset(roles))
        return handler

    return declare


def declared_roles(handler: object) -> frozenset[Role] | None:
    """The roles a handler declared, or None if it declared nothing."""
    roles = getattr(handler, _ROLES_ATTRIBUTE, None)
    return roles if isinstance(roles, frozenset) else None


async def identify(request: web.Request) -> Caller | None:
    """The caller behind the request's bearer token, if it is a valid one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    app = request.app
    if token.startswith(HOME_PREFIX):
        record = await app[LEDGER].home_by_credential(token_hash(token))
        if record is None or record.revoked:
            return None
        placement = Placement(
            community=app[CONFIG].community,
            feeder=record.feeder,
            transformer=record.transformer,
            home=record.home_id,
        )
        return Caller(Role.HOME, record.home_id, placement)
    if token.startswith(OPERATOR_PREFIX):
        name = await app[LEDGER].operator_by_token(token_hash(token))
        return None if name is None else Caller(Role.OPERATOR, name)
    if UPSTREAM in app and hmac.compare_digest(
        token.encode(), app[UPSTREAM].webhook_token.encode()
    ):
        return Caller(Role.GRID, "grid")
    return None


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admit a request only if its caller holds a role the endpoint declared."""
    route_handler = request.match_info.handler
    roles = declared_roles(route_handler)
    if roles is None:
        if request.match_info.http_exception is not None:
            return await handler(request)  # 404/405: let the router answer
        return problem(500, "Internal Server Error", "endpoint declares no roles")
    if not roles:
        return await handler(request)
    caller = await identify(request)
    if caller is None:
        return problem(
            401,
            "Unauthorized",
            "send 'Authorization: Bearer <token>' with a valid credential",
            headers={"WWW-Authenticate": 'Bearer realm="smart-community"'},
        )
    if caller.role not in roles:
        return problem(
            403,
            "Forbidden",
            f"{request.method} {request.path} is for {', '.join(sorted(roles))}, not {caller.role}",
        )
    request[CALLER] = caller
    return await handler(request)
