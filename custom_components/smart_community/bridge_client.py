"""Async client of the community bridge's downstream API (docs/protocol.md, community tier).

All bridge I/O of the integration goes through here. It knows HTTP, WebSocket and the shape of
the bridge's answers; it does not trust the signed objects it carries, which the caller verifies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
import json
from typing import Any, Final

from aiohttp import (
    ClientError,
    ClientResponse,
    ClientSession,
    ClientWebSocketResponse,
    ContentTypeError,
    WSMsgType,
    WSServerHandshakeError,
)
from yarl import URL

from .protocol import KeyFormatError, Placement, PublicKey, TargetError, keys_from_jwks
from .protocol.push import (
    PushMessageError,
    Signal,
    Welcome,
    encode_ack,
    signal_from,
    welcome_from,
)

REQUEST_TIMEOUT: Final = 10.0
# The client pings the bridge this often and gives up on a connection that stops answering.
HEARTBEAT: Final = 30.0
_AUTH_STATUSES: Final = frozenset({401, 403})

type SignedObject = dict[str, Any]


class BridgeError(Exception):
    """Anything that went wrong talking to the bridge."""


class BridgeConnectionError(BridgeError):
    """The bridge cannot be reached, timed out, or dropped the connection."""


class BridgeAuthenticationError(BridgeError):
    """The bridge refused the home credential (401 or 403)."""


class BridgeResponseError(BridgeError):
    """The bridge answered, but not as the protocol says it should."""


class EnrollmentRefusedError(BridgeError):
    """The bridge refused the enrollment code: unknown, used already, or expired."""


class BridgeRefusedError(BridgeResponseError):
    """The bridge refused what the home sent as malformed (400); sending it again is useless."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Enrollment:
    """What a redeemed enrollment code gives the home: its place and its own credential."""

    placement: Placement
    credential: str


class PushStream:
    """An open push connection: the welcome, then signals; acknowledge each one."""

    def __init__(self, socket: ClientWebSocketResponse, welcome: Welcome) -> None:
        """Wrap a connected WebSocket whose welcome has been read."""
        self._socket = socket
        self.welcome = welcome

    async def __aiter__(self) -> AsyncIterator[Signal]:
        """Yield signals until the connection ends, which raises BridgeConnectionError."""
        while True:
            message = await _receive(self._socket)
            if message.get("type") == "signal":
                yield _checked(signal_from, message)
            # Other message types are for newer homes; the protocol lets peers ignore them.

    async def ack(self, seq: int) -> None:
        """Tell the bridge that signal ``seq`` has been applied or dropped."""
        try:
            await self._socket.send_str(encode_ack(seq))
        except (ClientError, ConnectionError) as err:
            raise BridgeConnectionError(f"could not acknowledge signal {seq}: {err}") from err

    async def close(self) -> None:
        """Close the connection; iteration then ends with BridgeConnectionError."""
        await self._socket.close()


class BridgeClient:
    """Talks to one bridge on behalf of one home."""

    def __init__(
        self,
        url: str,
        credential: str | None,
        *,
        session: ClientSession,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        """Use ``session`` for every request; authenticate with the home credential, if any.

        Without a credential only the public calls work: the grid keys and enrollment.
        """
        self._url = URL(url)
        self._headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        self._session = session
        self._timeout = request_timeout
        # How far the bridge's clock (its HTTP Date header) is ahead of ours, as last seen.
        self.clock_offset: timedelta | None = None

    async def enroll(self, code: str) -> Enrollment:
        """Exchange a single-use enrollment code for the home's own credential."""
        path = "/enroll"
        with _translated(path):
            async with (
                asyncio.timeout(self._timeout),
                self._session.post(self._url.joinpath("enroll"), json={"code": code}) as response,
            ):
                if response.status in (400, 403):
                    raise EnrollmentRefusedError("the bridge refused the enrollment code")
                if response.status != 201:
                    raise _status_error(response.status, path)
                body = await response.json()
        if not isinstance(body, dict) or not isinstance(body.get("credential"), str):
            raise BridgeResponseError(f"{path} gave no credential")
        return Enrollment(placement=_placement(body, path), credential=body["credential"])

    async def get_home(self) -> Placement:
        """Where the home the credential belongs to sits."""
        body = await self._get("/home")
        if not isinstance(body, dict):
            raise BridgeResponseError("/home did not answer a JSON object")
        return _placement(body, "/home")

    async def get_keys(self) -> list[PublicKey]:
        """The grid keys the bridge trusts, for the home to pin."""
        body = await self._get("/keys")
        if not isinstance(body, dict):
            raise BridgeResponseError("/keys did not answer a JSON Web Key Set")
        try:
            return keys_from_jwks(body)
        except KeyFormatError as err:
            raise BridgeResponseError(f"/keys holds an unusable key: {err}") from err

    async def get_programs(self) -> list[SignedObject]:
        """Signed programs addressed to the home, unverified."""
        return _objects(await self._get("/programs"), "/programs")

    async def get_events(self, *, active: bool = True) -> list[SignedObject]:
        """Signed events addressed to the home, unverified; ``active`` leaves out ended ones."""
        query = {"active": "true" if active else "false"}
        return _objects(await self._get("/events", query), "/events")

    async def post_report(self, report: Mapping[str, Any]) -> dict[str, Any]:
        """Send an OpenADR reportRequest; returns the stored report once it is durable."""
        return await self._post("/reports", report)

    async def post_resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Register an OpenADR resource (a PV system asking for a grid connection)."""
        return await self._post("/resources", resource)

    async def get_resources(self) -> list[dict[str, Any]]:
        """The home's own resources, as the bridge holds them."""
        return _objects(await self._get("/resources"), "/resources")

    @asynccontextmanager
    async def push(self, *, since: int) -> AsyncIterator[PushStream]:
        """Open the push channel, resuming after ledger sequence ``since``."""
        try:
            async with asyncio.timeout(self._timeout):
                socket = await self._session.ws_connect(
                    self._url.joinpath("ws").with_query(since=since),
                    headers=self._headers,
                    heartbeat=HEARTBEAT,
                    compress=0,
                )
        except WSServerHandshakeError as err:
            raise _status_error(err.status, "/ws") from err
        except TimeoutError as err:
            raise BridgeConnectionError("timed out opening the push channel") from err
        except ClientError as err:
            raise BridgeConnectionError(f"cannot open the push channel: {err}") from err
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    welcome = _checked(welcome_from, await _receive(socket))
            except TimeoutError as err:
                raise BridgeConnectionError("the bridge sent no welcome") from err
            yield PushStream(socket, welcome)
        finally:
            await socket.close()

    async def _get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        url = self._url.joinpath(path.lstrip("/"))
        with _translated(path):
            async with (
                asyncio.timeout(self._timeout),
                self._session.get(url, headers=self._headers, params=query) as response,
            ):
                if response.status != 200:
                    raise _status_error(response.status, path)
                self._note_clock(response.headers.get("Date"))
                return await response.json()

    async def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        url = self._url.joinpath(path.lstrip("/"))
        with _translated(path):
            async with (
                asyncio.timeout(self._timeout),
                self._session.post(url, headers=self._headers, json=body) as response,
            ):
                if response.status == 400:
                    raise BridgeRefusedError(f"{path} refused it: {await _detail(response)}")
                if response.status != 201:
                    raise _status_error(response.status, path)
                stored = await response.json()
        if not isinstance(stored, dict):
            raise BridgeResponseError(f"{path} did not answer a JSON object")
        return stored

    def _note_clock(self, header: str | None) -> None:
        try:
            sent = parsedate_to_datetime(header) if header else None
        except TypeError, ValueError:
            return  # a Date header that is no date tells nothing about the clock
        if sent is not None and sent.tzinfo is not None:
            self.clock_offset = sent - datetime.now(UTC)


@contextmanager
def _translated(path: str) -> Iterator[None]:
    """Turn what aiohttp and the JSON decoder raise into the client's own errors."""
    try:
        yield
    except TimeoutError as err:
        raise BridgeConnectionError(f"{path} timed out") from err
    except ContentTypeError as err:
        raise BridgeResponseError(f"{path} did not answer JSON") from err
    except ClientError as err:
        raise BridgeConnectionError(f"cannot reach the bridge: {err}") from err
    except ValueError as err:
        raise BridgeResponseError(f"{path} answered malformed JSON: {err}") from err


async def _detail(response: ClientResponse) -> str:
    """What a problem body says is wrong, else its status."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return f"status {response.status}"


def _status_error(status: int, path: str) -> BridgeError:
    if status in _AUTH_STATUSES:
        return BridgeAuthenticationError(f"the bridge refused the home credential ({status})")
    if status >= 500:
        return BridgeConnectionError(f"{path} is unavailable ({status})")
    return BridgeResponseError(f"{path} answered {status}")


def _placement(body: Mapping[str, Any], path: str) -> Placement:
    def text(name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str):
            raise BridgeResponseError(f"{path} has no '{name}'")
        return value

    try:
        return Placement(
            community=text("community"),
            feeder=text("feeder"),
            transformer=text("transformer"),
            home=text("home"),
        )
    except TargetError as err:
        raise BridgeResponseError(f"{path} names an unusable placement: {err}") from err


def _objects(body: Any, path: str) -> list[SignedObject]:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise BridgeResponseError(f"{path} did not answer a JSON array of objects")
    return body


async def _receive(socket: ClientWebSocketResponse) -> dict[str, Any]:
    message = await socket.receive()
    if message.type is WSMsgType.TEXT:
        try:
            decoded = json.loads(message.data)
        except ValueError as err:
            raise BridgeResponseError(f"the bridge pushed a frame that is not JSON: {err}") from err
        if not isinstance(decoded, dict):
            raise BridgeResponseError("the bridge pushed a frame that is not a JSON object")
        return decoded
    if message.type is WSMsgType.ERROR:
        raise BridgeConnectionError(f"the push channel failed: {socket.exception()}")
    if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        raise BridgeConnectionError(f"the bridge closed the push channel ({socket.close_code})")
    raise BridgeResponseError(f"the bridge pushed an unexpected {message.type.name} frame")


def _checked[T](read: Callable[[Mapping[str, Any]], T], message: Mapping[str, Any]) -> T:
    try:
        return read(message)
    except PushMessageError as err:
        raise BridgeResponseError(f"the bridge pushed a bad message: {err}") from err
