"""The bridge as a VEN of the grid: token, pinned keys, webhook subscription and polling.

The grid pushes notifications to the bridge's webhook, so new events arrive at once; polling
stays as the resync path (after a restart, a missed notification, or while the grid cannot
reach the bridge). When the grid is down the VEN retries with jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import logging
import random
import secrets
import time
from typing import Any

import aiohttp

from smart_community_protocol import KeyFormatError, PublicKey, keys_from_jwks

from .config import GridConfig
from .ledger import Ledger

_LOGGER = logging.getLogger(__name__)
PAGE = 50
CLIENT_NAME = "smart-community-bridge"


class GridUnavailable(Exception):
    """The grid could not be reached or refused the bridge."""


class GridClient:
    """OpenADR 3.1 VEN calls to the grid, with a token refreshed before it expires."""

    def __init__(self, session: aiohttp.ClientSession, config: GridConfig) -> None:
        """Use a shared session."""
        self._session = session
        self._config = config
        self._token: str | None = None
        self._token_expires = 0.0

    async def _fetch_token(self) -> None:
        server = await self._call("GET", "/auth/server", authenticated=False)
        token_url = server.get("tokenURL") if isinstance(server, dict) else None
        if not isinstance(token_url, str):
            raise GridUnavailable("grid /auth/server names no tokenURL")
        form = {
            "grant_type": "client_credentials",
            "client_id": self._config.client_id,
            "client_secret": self._config.client_secret,
        }
        body = await self._call("POST", token_url, authenticated=False, form=form)
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise GridUnavailable("grid token response has no access_token")
        self._token = body["access_token"]
        lifetime = float(body.get("expires_in") or 3600)
        # Refresh at 80 % of the lifetime, so a request never carries an expired token.
        self._token_expires = time.monotonic() + lifetime * 0.8

    async def token(self) -> str:
        """A valid access token."""
        if self._token is None or time.monotonic() >= self._token_expires:
            await self._fetch_token()
        assert self._token is not None
        return self._token

    async def _call(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool = True,
        form: dict[str, str] | None = None,
        json_body: Any = None,
        params: list[tuple[str, str]] | None = None,
    ) -> Any:
        url = path if path.startswith("http") else f"{self._config.url}{path}"
        headers = {"Authorization": f"Bearer {await self.token()}"} if authenticated else {}
        try:
            async with asyncio.timeout(self._config.request_timeout):
                async with self._session.request(
                    method, url, headers=headers, data=form, json=json_body, params=params
                ) as response:
                    if response.status == 401 and authenticated:
                        self._token = (
                            None  # the grid forgot it (restart): fetch a new one next time
                        )
                    if response.status >= 400:
                        text = await response.text()
                        raise GridUnavailable(
                            f"{method} {path}: HTTP {response.status} {text[:200]}"
                        )
                    if response.content_type == "application/json":
                        return await response.json()
                    return await response.text()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise GridUnavailable(f"{method} {path}: {err!r}") from err

    async def keys(self) -> list[PublicKey]:
        """The grid's published signing keys."""
        document = await self._call("GET", "/.well-known/jwks.json", authenticated=False)
        try:
            return keys_from_jwks(document if isinstance(document, dict) else {})
        except KeyFormatError as err:
            raise GridUnavailable(f"grid key set unusable: {err}") from err

    async def all_pages(self, path: str, params: list[tuple[str, str]] | None = None) -> list[Any]:
        """Every object of a listing, page by page."""
        objects: list[Any] = []
        while True:
            page = await self._call(
                "GET",
                path,
                params=[*(params or []), ("skip", str(len(objects))), ("limit", str(PAGE))],
            )
            if not isinstance(page, list):
                raise GridUnavailable(f"GET {path}: expected a list")
            objects.extend(page)
            if len(page) < PAGE:
                return objects

    async def subscribe(self, callback_url: str, bearer: str) -> None:
        """Replace this bridge's webhook subscription with one to callback_url."""
        for existing in await self._call("GET", "/subscriptions"):
            if isinstance(existing, dict) and existing.get("clientName") == CLIENT_NAME:
                await self._call("DELETE", f"/subscriptions/{existing['id']}")
        await self._call(
            "POST",
            "/subscriptions",
            json_body={
                "clientName": CLIENT_NAME,
                "objectOperations": [
                    {
                        "objects": ["PROGRAM", "EVENT"],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "callbackUrl": callback_url,
                        "bearerToken": bearer,
                    }
                ],
            },
        )

    async def post_report(self, report: dict[str, Any]) -> Any:
        """Send a report upstream."""
        return await self._call("POST", "/reports", json_body=report)

    async def ven(self, name: str) -> dict[str, Any] | None:
        """The bridge's own VEN at the grid, by name, if it is registered."""
        found = await self._call("GET", "/vens", params=[("venName", name)])
        if not isinstance(found, list):
            raise GridUnavailable("GET /vens: expected a list")
        return next((v for v in found if isinstance(v, dict) and v.get("venName") == name), None)

    async def register_ven(self, ven_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """Create (``ven_id`` None) or update the bridge's VEN; the grid's stored copy."""
        stored = await (
            self._call("POST", "/vens", json_body=body)
            if ven_id is None
            else self._call("PUT", f"/vens/{ven_id}", json_body=body)
        )
        if not isinstance(stored, dict) or not isinstance(stored.get("id"), str):
            raise GridUnavailable("the grid answered no VEN")
        return stored

    async def read_ven(self, ven_id: str) -> dict[str, Any]:
        """The bridge's VEN as the grid holds it now."""
        stored = await self._call("GET", f"/vens/{ven_id}")
        if not isinstance(stored, dict):
            raise GridUnavailable(f"GET /vens/{ven_id}: expected an object")
        return stored

    async def post_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Register a resource of the bridge's VEN (a home's grid-connection request)."""
        stored = await self._call("POST", "/resources", json_body=resource)
        if not isinstance(stored, dict) or not isinstance(stored.get("id"), str):
            raise GridUnavailable("the grid answered no resource")
        return stored

    async def put_resource(self, resource_id: str, resource: dict[str, Any]) -> dict[str, Any]:
        """Replace a resource of the bridge's VEN."""
        stored = await self._call("PUT", f"/resources/{resource_id}", json_body=resource)
        if not isinstance(stored, dict) or not isinstance(stored.get("id"), str):
            raise GridUnavailable("the grid answered no resource")
        return stored

    async def delete_resource(self, resource_id: str) -> None:
        """Remove a resource of the bridge's VEN."""
        await self._call("DELETE", f"/resources/{resource_id}")

    async def resources(self, ven_id: str) -> list[dict[str, Any]]:
        """Every resource of the bridge's VEN, as the grid holds them."""
        return [
            r
            for r in await self.all_pages("/resources", [("venID", ven_id)])
            if isinstance(r, dict)
        ]


async def pin_keys(
    ledger: Ledger, offered: list[PublicKey], fingerprints: tuple[str, ...]
) -> list[PublicKey]:
    """Decide which grid keys to trust.

    Configured fingerprints win; otherwise keys pinned earlier; otherwise the keys offered now
    are pinned on first use (logged with their fingerprints for the operator to confirm).
    """
    if fingerprints:
        trusted = [key for key in offered if key.kid in fingerprints]
        if not trusted:
            raise GridUnavailable(
                f"none of the grid's keys ({', '.join(k.kid for k in offered)}) matches "
                f"grid.key_fingerprints ({', '.join(fingerprints)})"
            )
    else:
        pinned = [PublicKey.from_jwk(jwk) for jwk in await ledger.pinned_grid_keys()]
        if pinned:
            pinned_kids = {key.kid for key in pinned}
            for key in offered:
                if key.kid not in pinned_kids:
                    _LOGGER.warning("grid offers key %s which is not pinned; ignoring it", key.kid)
            return pinned
        trusted = offered
        for key in trusted:
            _LOGGER.warning("pinning grid key %s of %s on first use", key.kid, key.issuer)
    for key in trusted:
        await ledger.pin_grid_key(key.kid, key.issuer, key.to_jwk())
    return trusted


class UpstreamLink:
    """Keeps the bridge in step with the grid until cancelled."""

    def __init__(
        self,
        client: GridClient,
        config: GridConfig,
        callback_url: str,
        on_signal: Callable[[Any], Awaitable[object]],
        on_keys: Callable[[list[PublicKey]], Awaitable[None]],
    ) -> None:
        """``on_signal`` takes each object read from the grid; ``on_keys`` the trusted keys."""
        self._client = client
        self._config = config
        self._callback_url = callback_url
        self._on_signal = on_signal
        self._on_keys = on_keys
        self.webhook_token = secrets.token_urlsafe(32)
        self.connected = False
        self.last_sync = 0.0

    async def run(self) -> None:
        """Connect, subscribe, then poll; on failure back off and start over."""
        failures = 0
        while True:
            try:
                await self._on_keys(await self._client.keys())
                await self._client.subscribe(self._callback_url, self.webhook_token)
                self.connected = True
                failures = 0
                while True:
                    await self.sync()
                    await asyncio.sleep(self._config.poll_interval)
            except GridUnavailable as err:
                self.connected = False
                failures += 1
                delay = min(60.0, 2.0 ** min(failures, 6)) * random.uniform(0.5, 1.0)  # noqa: S311
                _LOGGER.warning("grid unavailable (%s); retrying in %.1f s", err, delay)
                await asyncio.sleep(delay)

    async def sync(self) -> None:
        """Read current programs and active events and pass each on."""
        for obj in await self._client.all_pages("/programs"):
            await self._on_signal(obj)
        for obj in await self._client.all_pages("/events", [("active", "true")]):
            await self._on_signal(obj)
        self.last_sync = time.time()
