"""OAuth2 client credentials: the token endpoint and every way a token can fail."""

from __future__ import annotations

import base64

import jwt
import pytest

from smart_community_grid.app_keys import TOKENS
from smart_community_grid.errors import Unauthorized
from smart_community_grid.oauth import Client, Role, TokenAuthority

from .conftest import SECRETS, Grid, GridFactory

BL_SCOPES = "read_all write_events write_programs write_subscriptions write_vens"
VEN_SCOPES = "read_targets read_ven_objects write_reports write_subscriptions write_vens"


async def test_auth_server_names_the_token_endpoint(grid: Grid) -> None:
    body = await grid.ok("GET", "/auth/server", as_=None)
    assert body == {"tokenURL": f"{grid.url}/auth/token"}


@pytest.mark.parametrize(("client_id", "scopes"), [("bl", BL_SCOPES), ("ven1", VEN_SCOPES)])
async def test_token_carries_the_role_scopes(grid: Grid, client_id: str, scopes: str) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": SECRETS[client_id],
    }
    reply = await grid.call("POST", "/auth/token", as_=None, data=form)
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.body["token_type"] == "Bearer"
    assert reply.body["expires_in"] == 60
    assert reply.body["scope"] == scopes
    claims = jwt.decode(reply.body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == client_id
    assert claims["scope"] == scopes
    assert claims["exp"] - claims["iat"] == 60


async def test_token_by_http_basic_client_authentication(grid: Grid) -> None:
    credentials = base64.b64encode(f"ven1:{SECRETS['ven1']}".encode()).decode()
    reply = await grid.call(
        "POST",
        "/auth/token",
        as_=None,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {credentials}"},
    )
    assert reply.status == 200
    assert reply.body["scope"] == VEN_SCOPES


async def test_narrowed_scope_is_enforced(grid: Grid) -> None:
    token = await grid.token("bl", scope="read_all")
    reply = await grid.call(
        "POST",
        "/programs",
        json={"programName": "p"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status == 403
    assert "write_programs" in reply.body["detail"]


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_id": "bl", "client_secret": "bl-secret"}, 400, "invalid_request"),
        (
            {"grant_type": "password", "client_id": "bl", "client_secret": "bl-secret"},
            400,
            "unsupported_grant_type",
        ),
        (
            {"grant_type": "client_credentials", "client_secret": "bl-secret"},
            400,
            "invalid_request",
        ),
        ({"grant_type": "client_credentials", "client_id": "bl"}, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "client_id": "bl", "client_secret": "wrong"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            401,
            "invalid_client",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": "ven1",
                "client_secret": "ven1-secret",
                "scope": "read_targets write_events",
            },
            400,
            "invalid_scope",
        ),
    ],
)
async def test_token_errors_follow_rfc6749(
    grid: Grid, form: dict[str, str], status: int, error: str
) -> None:
    reply = await grid.call("POST", "/auth/token", as_=None, data=form)
    assert reply.status == status
    assert reply.body["error"] == error
    assert reply.body["error_description"]


async def test_token_request_must_be_a_form(grid: Grid) -> None:
    reply = await grid.call(
        "POST",
        "/auth/token",
        as_=None,
        json={"grant_type": "client_credentials", "client_id": "bl", "client_secret": "bl-secret"},
    )
    assert reply.status == 400
    assert reply.body["error"] == "invalid_request"


async def test_repeated_parameter_is_invalid(grid: Grid) -> None:
    body = "grant_type=client_credentials&client_id=bl&client_id=ven1&client_secret=bl-secret"
    reply = await grid.call(
        "POST",
        "/auth/token",
        as_=None,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 400
    assert "client_id" in reply.body["error_description"]


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Authorization: Bearer"),
        ("Basic Ymw6Ymwtc2VjcmV0", "Authorization: Bearer"),
        ("Bearer not-a-jwt", "not one this grid issued"),
    ],
)
async def test_endpoints_refuse_missing_or_invalid_tokens(
    grid: Grid, authorization: str | None, detail: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    reply = await grid.call("GET", "/events", as_=None, headers=headers)
    assert reply.status == 401
    assert reply.body["title"] == "Unauthorized"
    assert detail in reply.body["detail"]
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


async def test_token_of_another_grid_is_refused(grid: Grid, make_grid: GridFactory) -> None:
    other = await make_grid()
    token = await other.token("bl")
    reply = await grid.call("GET", "/events", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 401


async def test_expired_token_is_refused(make_grid: GridFactory) -> None:
    grid = await make_grid(token_lifetime=1)
    now = [1_000_000.0]
    authority = grid.app[TOKENS]
    authority._clock = lambda: now[0]
    token = await grid.token("ven1")
    assert (
        await grid.call("GET", "/events", headers={"Authorization": f"Bearer {token}"})
    ).status == 200
    now[0] += 1
    reply = await grid.call("GET", "/events", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 401
    assert "expired" in reply.body["detail"]


def test_authority_resolves_its_tokens_to_principals() -> None:
    clock = [100.0]
    authority = TokenAuthority(
        "g",
        [Client(client_id="v", secret="s", role=Role.VEN, community="c")],
        lifetime=10,
        clock=lambda: clock[0],
    )
    token = authority.issue("v", "s", None).access_token
    principal = authority.authenticate(token)
    assert (principal.client_id, principal.role, principal.community) == ("v", Role.VEN, "c")
    clock[0] = 110.0
    with pytest.raises(Unauthorized, match="expired"):
        authority.authenticate(token)
