"""OAuth2 client credentials (RFC 6749, section 4.4): clients, roles, scopes and access tokens.

Access tokens are JWTs (RFC 7519) signed with HS256 under a secret that lives only in this
process: the grid both issues and checks them, so no one else needs the key, and a restart
simply makes clients fetch a new token (they get 401 and ask again).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
import hmac
import secrets
import time
from types import MappingProxyType

import jwt

from smart_community_protocol import within_community

from .errors import Unauthorized

_ALGORITHM = "HS256"


class Role(StrEnum):
    """The two kinds of client the specification knows."""

    BL = "BL"  # business logic: the utility's back office
    VEN = "VEN"  # a virtual end node: here, a community bridge


class Scope(StrEnum):
    """The specification's OAuth2 scopes (securitySchemes.oAuth2ClientCredentials)."""

    READ_ALL = "read_all"
    READ_TARGETS = "read_targets"
    READ_VEN_OBJECTS = "read_ven_objects"
    WRITE_PROGRAMS = "write_programs"
    WRITE_EVENTS = "write_events"
    WRITE_REPORTS = "write_reports"
    WRITE_SUBSCRIPTIONS = "write_subscriptions"
    WRITE_VENS = "write_vens"


ROLE_SCOPES: Mapping[Role, frozenset[Scope]] = MappingProxyType(
    {
        Role.BL: frozenset(
            {
                Scope.READ_ALL,
                Scope.WRITE_PROGRAMS,
                Scope.WRITE_EVENTS,
                Scope.WRITE_SUBSCRIPTIONS,
                Scope.WRITE_VENS,
            }
        ),
        Role.VEN: frozenset(
            {
                Scope.READ_TARGETS,
                Scope.READ_VEN_OBJECTS,
                Scope.WRITE_REPORTS,
                Scope.WRITE_SUBSCRIPTIONS,
                Scope.WRITE_VENS,
            }
        ),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A client provisioned out of band: its credentials, role and (for a VEN) community."""

    client_id: str
    secret: str = field(repr=False)
    role: Role
    community: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who a request comes from, as its access token says."""

    client_id: str
    role: Role
    scopes: frozenset[Scope]
    community: str | None

    @classmethod
    def of(cls, client: Client) -> Principal:
        """The client with every scope of its role (what it could do with a full token)."""
        return cls(
            client_id=client.client_id,
            role=client.role,
            scopes=ROLE_SCOPES[client.role],
            community=client.community,
        )

    @classmethod
    def grid(cls, name: str) -> Principal:
        """The grid's own business logic (its scenario, its decisions), with every BL scope."""
        return cls(client_id=name, role=Role.BL, scopes=ROLE_SCOPES[Role.BL], community=None)

    def may_see(self, targets: Iterable[str] | None) -> bool:
        """Whether a program or event with these targets is visible to this client.

        BL sees everything; a VEN sees objects without targets (they are for everyone) and
        objects with at least one target inside its community.
        """
        if self.role is Role.BL:
            return True
        listed = list(targets or ())
        community = self.community
        return not listed or (
            community is not None and any(within_community(t, community) for t in listed)
        )

    def owns(self, client_id: str) -> bool:
        """Whether a VEN-created object (report, subscription) is visible to this client."""
        return self.role is Role.BL or client_id == self.client_id


@dataclass(frozen=True, slots=True)
class TokenError(Exception):
    """A token request refused with an RFC 6749 (section 5.2) error code."""

    error: str
    description: str
    status: int = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class IssuedToken:
    """A token response (RFC 6749, section 5.1)."""

    access_token: str
    expires_in: int
    scope: str

    def to_json_dict(self) -> dict[str, str | int]:
        """The response body the specification's clientCredentialResponse describes."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class TokenAuthority:
    """Issues access tokens for provisioned clients and resolves tokens back to principals."""

    def __init__(
        self,
        issuer: str,
        clients: Iterable[Client],
        *,
        lifetime: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Serve ``clients``; tokens are valid for ``lifetime`` seconds."""
        self._issuer = issuer
        self._clients = {client.client_id: client for client in clients}
        self._lifetime = lifetime
        self._clock = clock
        self._secret = secrets.token_bytes(32)

    def issue(self, client_id: str, client_secret: str, scope: str | None) -> IssuedToken:
        """Trade client credentials for a token, or raise TokenError.

        ``scope`` (space-separated) narrows the grant; without it the client gets every scope
        of its role.
        """
        client = self._clients.get(client_id)
        # Compare even for an unknown client, so timing does not tell which ids exist.
        expected = client.secret if client else secrets.token_urlsafe(16)
        if not hmac.compare_digest(client_secret.encode(), expected.encode()) or client is None:
            raise TokenError("invalid_client", "client authentication failed", 401)
        allowed = ROLE_SCOPES[client.role]
        if scope is None or not scope.strip():
            granted = allowed
        else:
            requested = scope.split()
            unknown = sorted(set(requested) - {str(s) for s in allowed})
            if unknown:
                raise TokenError(
                    "invalid_scope",
                    f"scope {' '.join(unknown)} is not available to a {client.role} client",
                )
            granted = frozenset(Scope(name) for name in requested)
        now = int(self._clock())
        text = " ".join(sorted(granted))
        claims = {
            "iss": self._issuer,
            "aud": self._issuer,
            "sub": client.client_id,
            "client_id": client.client_id,
            "role": str(client.role),
            "scope": text,
            "iat": now,
            "exp": now + self._lifetime,
            "jti": secrets.token_urlsafe(12),
        }
        token = jwt.encode(claims, self._secret, algorithm=_ALGORITHM)
        return IssuedToken(access_token=token, expires_in=self._lifetime, scope=text)

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer token stands for, or Unauthorized naming why not."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=self._issuer,
                issuer=self._issuer,
                # Expiry is checked below against the authority's own clock.
                options={"require": ["exp", "iat", "sub", "scope"], "verify_exp": False},
            )
        except jwt.InvalidTokenError as err:
            raise Unauthorized("access token is not one this grid issued") from err
        if not isinstance(claims["exp"], int) or claims["exp"] <= self._clock():
            raise Unauthorized("access token has expired; fetch a new one")
        client = self._clients.get(str(claims["sub"]))
        if client is None:
            raise Unauthorized("access token names a client this grid does not know")
        return Principal(
            client_id=client.client_id,
            role=client.role,
            scopes=frozenset(Scope(name) for name in str(claims["scope"]).split()),
            community=client.community,
        )
