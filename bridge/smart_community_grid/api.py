"""The grid's HTTP API: the OpenADR 3.1 VTN endpoints docs/protocol.md lists.

Every endpoint declares the scopes it accepts (any one suffices, since BL reads with
``read_all`` and VENs with ``read_targets``/``read_ven_objects``); errors are ``problem``
bodies, except at the token endpoint, which answers RFC 6749 errors.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
import functools
import json
import logging
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from smart_community_protocol import ObjectType, Problem, jwks

from .app_keys import ISSUER, SCENARIO, TOKENS, VTN
from .errors import BadRequest, Forbidden, ProblemError, Unauthorized
from .oauth import Principal, Scope, TokenError
from .vtn import MAX_PAGE, Page

_LOGGER = logging.getLogger(__name__)

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
type ClientHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]

_READ_PUBLISHED = (Scope.READ_ALL, Scope.READ_TARGETS)
_READ_VEN_OBJECTS = (Scope.READ_ALL, Scope.READ_VEN_OBJECTS)


def problem(
    status: int, title: str, detail: str | None, headers: dict[str, str] | None = None
) -> web.Response:
    """An OpenADR ``problem`` response."""
    body = Problem(title=title, status=status, detail=detail).to_json_dict()
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure with a problem body, never an HTML page or a traceback."""
    try:
        return await handler(request)
    except ProblemError as err:
        # RFC 6750, section 3: a 401 names the scheme the client should use.
        headers = (
            {"WWW-Authenticate": 'Bearer error="invalid_token"'} if err.status == 401 else None
        )
        return problem(err.status, err.title, err.detail, headers)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        default = f"{err.status}: {err.reason}"
        detail = err.text if err.text and err.text != default else None
        if err.status == 404 and detail is None:
            detail = f"no endpoint {request.method} {request.path}"
        return problem(err.status, err.reason, detail)
    except Exception:
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal Server Error", "the grid failed; see its log")


def scoped(*scopes: Scope) -> Callable[[ClientHandler], Handler]:
    """The endpoint needs a valid bearer token that carries one of ``scopes``."""

    def decorate(handler: ClientHandler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized(
                    "send 'Authorization: Bearer <token>'; get a token at /auth/token"
                )
            principal = request.app[TOKENS].authenticate(token.strip())
            if principal.scopes.isdisjoint(scopes):
                raise Forbidden(
                    f"{request.method} {request.path} needs scope {' or '.join(scopes)}; "
                    f"the token grants {' '.join(sorted(principal.scopes)) or 'none'}"
                )
            return await handler(request, principal)

        return checked

    return decorate


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _json_body(request: web.Request) -> Any:
    """The decoded JSON body; 413 when larger than the app's client_max_size."""
    raw = await request.read()
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError alike
        raise BadRequest(f"body is not JSON: {err}") from err


def _integer(request: web.Request, name: str, default: int, maximum: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise BadRequest(f"query {name}: '{raw}' is not an integer") from err
    if value < 0:
        raise BadRequest(f"query {name}: must not be negative")
    if maximum is not None and value > maximum:
        raise BadRequest(f"query {name}: at most {maximum}; use skip to page through the rest")
    return value


def _page(request: web.Request) -> Page:
    return Page(
        skip=_integer(request, "skip", 0),
        limit=_integer(request, "limit", MAX_PAGE, MAX_PAGE),
    )


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in {"true", "1"}:
        return True
    if raw.lower() in {"false", "0"}:
        return False
    raise BadRequest(f"query {name}: '{raw}' is not true or false")


def _targets(request: web.Request) -> list[str]:
    return request.query.getall("targets", [])


def _ok(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


# --- auth ----------------------------------------------------------------------------------


async def auth_server(request: web.Request) -> web.Response:
    """Where the token endpoint is (getAuthServerInfo)."""
    return _ok({"tokenURL": str(request.url.origin().join(request.app.router["token"].url_for()))})


def _auth_error(err: TokenError, basic: bool, realm: str) -> web.Response:
    body = {"error": err.error, "error_description": err.description}
    headers = {"Cache-Control": "no-store"}
    if err.status == 401 and basic:
        headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
    return web.json_response(body, status=err.status, headers=headers)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """Client credentials from HTTP Basic (RFC 6749, section 2.3.1), if sent that way."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise TokenError(
            "invalid_request", "Authorization: Basic is not base64 of id:secret"
        ) from err
    client_id, separator, secret = decoded.partition(":")
    if not separator:
        raise TokenError("invalid_request", "Authorization: Basic is not base64 of id:secret")
    # The form encoding applies inside Basic credentials (RFC 6749, section 2.3.1).
    return unquote_plus(client_id), unquote_plus(secret)


async def _token_request(request: web.Request) -> tuple[str, str, str | None]:
    """Client id, secret and requested scope of a token request, or TokenError."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise TokenError("invalid_request", "send an application/x-www-form-urlencoded form body")
    form = await request.post()
    for name in ("grant_type", "client_id", "client_secret", "scope"):
        if len(form.getall(name, [])) > 1:
            raise TokenError("invalid_request", f"parameter {name} appears more than once")
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    grant = fields.get("grant_type")
    if not grant:
        raise TokenError("invalid_request", "grant_type is required")
    if grant != "client_credentials":
        raise TokenError(
            "unsupported_grant_type",
            f"grant_type '{grant}' is not supported; use client_credentials",
        )
    basic = _basic_credentials(request.headers.get("Authorization", ""))
    if basic is not None and ("client_id" in fields or "client_secret" in fields):
        raise TokenError("invalid_request", "send the client credentials one way, not both")
    client_id, secret = basic or (fields.get("client_id"), fields.get("client_secret"))
    if not client_id or not secret:
        raise TokenError("invalid_request", "client_id and client_secret are required")
    return client_id, secret, fields.get("scope")


async def token(request: web.Request) -> web.Response:
    """Trade client credentials for an access token (fetchToken, RFC 6749 section 4.4)."""
    try:
        client_id, secret, scope = await _token_request(request)
        issued = request.app[TOKENS].issue(client_id, secret, scope)
    except TokenError as err:
        basic = request.headers.get("Authorization", "").lower().startswith("basic ")
        return _auth_error(err, basic, request.app[SCENARIO].grid)
    # RFC 6749, section 5.1: token responses must not be cached.
    return web.json_response(
        issued.to_json_dict(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


async def key_set(request: web.Request) -> web.Response:
    """The grid's public signing keys (JWK Set)."""
    return _ok(jwks([request.app[ISSUER].signer.public_key]))


@scoped(*_READ_PUBLISHED)
async def notifiers(request: web.Request, who: Principal) -> web.Response:
    """Notifier bindings: webhooks only."""
    return _ok({"WEBHOOK": True})


# --- programs ------------------------------------------------------------------------------


@scoped(*_READ_PUBLISHED)
async def list_programs(request: web.Request, who: Principal) -> web.Response:
    """searchAllPrograms."""
    vtn = request.app[VTN]
    return _ok(vtn.list_programs(who, targets=_targets(request), page=_page(request)))


@scoped(Scope.WRITE_PROGRAMS)
async def create_program(request: web.Request, who: Principal) -> web.Response:
    """createProgram."""
    return _ok(request.app[VTN].create_program(await _json_body(request)), status=201)


@scoped(*_READ_PUBLISHED)
async def get_program(request: web.Request, who: Principal) -> web.Response:
    """searchProgramByProgramId."""
    return _ok(request.app[VTN].get_program(who, request.match_info["programID"]))


@scoped(Scope.WRITE_PROGRAMS)
async def update_program(request: web.Request, who: Principal) -> web.Response:
    """updateProgram."""
    body = await _json_body(request)
    return _ok(request.app[VTN].update_program(who, request.match_info["programID"], body))


@scoped(Scope.WRITE_PROGRAMS)
async def delete_program(request: web.Request, who: Principal) -> web.Response:
    """deleteProgram."""
    return _ok(request.app[VTN].delete_program(who, request.match_info["programID"]))


# --- events --------------------------------------------------------------------------------


@scoped(*_READ_PUBLISHED)
async def list_events(request: web.Request, who: Principal) -> web.Response:
    """searchAllEvents."""
    return _ok(
        request.app[VTN].list_events(
            who,
            program_id=request.query.get("programID"),
            targets=_targets(request),
            active=_flag(request, "active"),
            page=_page(request),
        )
    )


@scoped(Scope.WRITE_EVENTS)
async def create_event(request: web.Request, who: Principal) -> web.Response:
    """createEvent."""
    return _ok(request.app[VTN].create_event(who, await _json_body(request)), status=201)


@scoped(*_READ_PUBLISHED)
async def get_event(request: web.Request, who: Principal) -> web.Response:
    """searchEventsByID."""
    return _ok(request.app[VTN].get_event(who, request.match_info["eventID"]))


@scoped(Scope.WRITE_EVENTS)
async def update_event(request: web.Request, who: Principal) -> web.Response:
    """updateEvent."""
    body = await _json_body(request)
    return _ok(request.app[VTN].update_event(who, request.match_info["eventID"], body))


@scoped(Scope.WRITE_EVENTS)
async def delete_event(request: web.Request, who: Principal) -> web.Response:
    """deleteEvent."""
    return _ok(request.app[VTN].delete_event(who, request.match_info["eventID"]))


# --- reports -------------------------------------------------------------------------------


@scoped(*_READ_VEN_OBJECTS)
async def list_reports(request: web.Request, who: Principal) -> web.Response:
    """searchAllReports: a VEN reads its own, BL all."""
    return _ok(
        request.app[VTN].list_reports(
            who,
            program_id=request.query.get("programID"),
            event_id=request.query.get("eventID"),
            client_name=request.query.get("clientName"),
            page=_page(request),
        )
    )


@scoped(Scope.WRITE_REPORTS)
async def create_report(request: web.Request, who: Principal) -> web.Response:
    """createReport."""
    return _ok(request.app[VTN].create_report(who, await _json_body(request)), status=201)


# --- subscriptions -------------------------------------------------------------------------


def _object_types(request: web.Request) -> list[ObjectType]:
    names = request.query.getall("objects", [])
    unknown = [name for name in names if name not in ObjectType.__members__]
    if unknown:
        raise BadRequest(f"query objects: '{unknown[0]}' is not one of {', '.join(ObjectType)}")
    return [ObjectType(name) for name in names]


@scoped(*_READ_VEN_OBJECTS)
async def list_subscriptions(request: web.Request, who: Principal) -> web.Response:
    """searchSubscriptions: a VEN reads its own, BL all."""
    return _ok(
        request.app[VTN].list_subscriptions(
            who,
            program_id=request.query.get("programID"),
            client_name=request.query.get("clientName"),
            objects=_object_types(request),
            page=_page(request),
        )
    )


@scoped(Scope.WRITE_SUBSCRIPTIONS)
async def create_subscription(request: web.Request, who: Principal) -> web.Response:
    """createSubscription, after the callback echo check."""
    body = await _json_body(request)
    return _ok(await request.app[VTN].create_subscription(who, body), status=201)


@scoped(Scope.WRITE_SUBSCRIPTIONS)
async def delete_subscription(request: web.Request, who: Principal) -> web.Response:
    """deleteSubscription."""
    subscription_id = request.match_info["subscriptionID"]
    return _ok(await request.app[VTN].delete_subscription(who, subscription_id))


# --- VENs and resources --------------------------------------------------------------------


@scoped(*_READ_VEN_OBJECTS)
async def list_vens(request: web.Request, who: Principal) -> web.Response:
    """searchVens: a VEN client reads its own, BL all."""
    return _ok(
        request.app[VTN].list_vens(
            who,
            ven_name=request.query.get("venName"),
            targets=_targets(request),
            page=_page(request),
        )
    )


@scoped(Scope.WRITE_VENS)
async def create_ven(request: web.Request, who: Principal) -> web.Response:
    """createVen."""
    return _ok(request.app[VTN].create_ven(who, await _json_body(request)), status=201)


@scoped(*_READ_VEN_OBJECTS)
async def get_ven(request: web.Request, who: Principal) -> web.Response:
    """searchVenByID."""
    return _ok(request.app[VTN].get_ven(who, request.match_info["venID"]))


@scoped(Scope.WRITE_VENS)
async def update_ven(request: web.Request, who: Principal) -> web.Response:
    """updateVen."""
    body = await _json_body(request)
    return _ok(request.app[VTN].update_ven(who, request.match_info["venID"], body))


@scoped(Scope.WRITE_VENS)
async def delete_ven(request: web.Request, who: Principal) -> web.Response:
    """deleteVen."""
    return _ok(request.app[VTN].delete_ven(who, request.match_info["venID"]))


@scoped(*_READ_VEN_OBJECTS)
async def list_resources(request: web.Request, who: Principal) -> web.Response:
    """searchVenResources: a VEN client reads its own, BL all."""
    return _ok(
        request.app[VTN].list_resources(
            who,
            ven_id=request.query.get("venID"),
            resource_name=request.query.get("resourceName"),
            targets=_targets(request),
            page=_page(request),
        )
    )


@scoped(Scope.WRITE_VENS)
async def create_resource(request: web.Request, who: Principal) -> web.Response:
    """createResource."""
    return _ok(request.app[VTN].create_resource(who, await _json_body(request)), status=201)


@scoped(*_READ_VEN_OBJECTS)
async def get_resource(request: web.Request, who: Principal) -> web.Response:
    """searchVenResourceByID."""
    return _ok(request.app[VTN].get_resource(who, request.match_info["resourceID"]))


@scoped(Scope.WRITE_VENS)
async def update_resource(request: web.Request, who: Principal) -> web.Response:
    """updateVenResource."""
    body = await _json_body(request)
    return _ok(request.app[VTN].update_resource(who, request.match_info["resourceID"], body))


@scoped(Scope.WRITE_VENS)
async def delete_resource(request: web.Request, who: Principal) -> web.Response:
    """deleteVenResource."""
    return _ok(request.app[VTN].delete_resource(who, request.match_info["resourceID"]))


def add_routes(app: web.Application) -> None:
    """Mount the VTN endpoints."""
    router = app.router
    router.add_get("/auth/server", auth_server)
    router.add_post("/auth/token", token, name="token")
    router.add_get("/.well-known/jwks.json", key_set)
    router.add_get("/notifiers", notifiers)
    router.add_get("/programs", list_programs)
    router.add_post("/programs", create_program)
    router.add_get("/programs/{programID}", get_program)
    router.add_put("/programs/{programID}", update_program)
    router.add_delete("/programs/{programID}", delete_program)
    router.add_get("/events", list_events)
    router.add_post("/events", create_event)
    router.add_get("/events/{eventID}", get_event)
    router.add_put("/events/{eventID}", update_event)
    router.add_delete("/events/{eventID}", delete_event)
    router.add_get("/reports", list_reports)
    router.add_post("/reports", create_report)
    router.add_get("/subscriptions", list_subscriptions)
    router.add_post("/subscriptions", create_subscription)
    router.add_delete("/subscriptions/{subscriptionID}", delete_subscription)
    router.add_get("/vens", list_vens)
    router.add_post("/vens", create_ven)
    router.add_get("/vens/{venID}", get_ven)
    router.add_put("/vens/{venID}", update_ven)
    router.add_delete("/vens/{venID}", delete_ven)
    router.add_get("/resources", list_resources)
    router.add_post("/resources", create_resource)
    router.add_get("/resources/{resourceID}", get_resource)
    router.add_put("/resources/{resourceID}", update_resource)
    router.add_delete("/resources/{resourceID}", delete_resource)
