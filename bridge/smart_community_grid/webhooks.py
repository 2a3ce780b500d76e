"""Subscriber callbacks: the echo check before a subscription is stored, then delivery.

Each callback has its own queue and worker, so notifications reach one subscriber in the
order they happened, and a slow or dead subscriber only ever delays itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import ipaddress
import json
import logging
import secrets
from typing import Any

import aiohttp
from yarl import URL

from .errors import BadRequest
from .scenario import WebhookSettings

_LOGGER = logging.getLogger(__name__)
# Notifications a dead subscriber may have waiting before the oldest are dropped.
QUEUE_LIMIT = 1000
_ECHO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Callback:
    """Where a subscription wants its notifications, and the token to present there."""

    url: str
    bearer_token: str | None


@dataclass(slots=True)
class _Worker:
    queue: asyncio.Queue[dict[str, Any]]
    task: asyncio.Task[None] | None = field(default=None)


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Webhooks:
    """Verifies callback URLs and delivers notification bodies to them."""

    def __init__(self, session: aiohttp.ClientSession, settings: WebhookSettings) -> None:
        """Call out through ``session``."""
        self._session = session
        self._settings = settings
        self._workers: dict[tuple[str, Callback], _Worker] = {}

    def check_url(self, url: str) -> URL:
        """The callback URL, if the grid may call it (HTTPS; HTTP to loopback when allowed)."""
        try:
            parsed = URL(url)
        except (TypeError, ValueError) as err:
            raise BadRequest(f"callbackUrl '{url}' is not a URL") from err
        if parsed.scheme == "https" and parsed.host:
            return parsed
        if parsed.scheme == "http" and (
            (self._settings.allow_http_loopback and _loopback(parsed.host))
            or parsed.host in self._settings.allow_http_hosts
        ):
            return parsed
        hint = (
            " or http to a loopback address"
            if self._settings.allow_http_loopback
            else " (http only to loopback, and only with webhooks.allow_http_loopback)"
        )
        raise BadRequest(f"callbackUrl '{url}' must be an https URL{hint}")

    async def verify(self, url: str) -> None:
        """Check that the callback answers ``GET ?echo=<random>`` with the same text."""
        challenge = secrets.token_urlsafe(16)
        target = self.check_url(url).update_query(echo=challenge)
        try:
            async with asyncio.timeout(self._settings.timeout):
                # No redirects: they could point the grid at hosts the subscriber does not own.
                async with self._session.get(target, allow_redirects=False) as response:
                    status = response.status
                    body = (await response.content.read(_ECHO_LIMIT)).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError) as err:
            raise BadRequest(f"callbackUrl '{url}' did not answer the echo check: {err!r}") from err
        if status != 200:
            raise BadRequest(f"callbackUrl '{url}' answered the echo check with HTTP {status}")
        if body.strip() not in {challenge, json.dumps(challenge)}:
            raise BadRequest(f"callbackUrl '{url}' did not echo the challenge back")

    def send(self, subscription_id: str, callback: Callback, body: dict[str, Any]) -> None:
        """Queue a notification for a callback; never waits for the subscriber."""
        key = (subscription_id, callback)
        worker = self._workers.get(key)
        if worker is None:
            worker = _Worker(asyncio.Queue(QUEUE_LIMIT))
            worker.task = asyncio.create_task(
                self._work(callback, worker.queue), name=f"webhook {subscription_id}"
            )
            self._workers[key] = worker
        if worker.queue.full():
            worker.queue.get_nowait()
            _LOGGER.warning(
                "subscriber %s is not keeping up; dropped its oldest notification", callback.url
            )
        worker.queue.put_nowait(body)

    async def forget(self, subscription_id: str) -> None:
        """Stop delivering to a deleted subscription."""
        keys = [key for key in self._workers if key[0] == subscription_id]
        await self._stop([self._workers.pop(key) for key in keys])

    async def close(self) -> None:
        """Stop every delivery (the grid is shutting down)."""
        workers = list(self._workers.values())
        self._workers.clear()
        await self._stop(workers)

    @staticmethod
    async def _stop(workers: list[_Worker]) -> None:
        tasks = [worker.task for worker in workers if worker.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _work(self, callback: Callback, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            body = await queue.get()
            await self._deliver(callback, body)

    async def _deliver(self, callback: Callback, body: dict[str, Any]) -> None:
        headers = (
            {"Authorization": f"Bearer {callback.bearer_token}"} if callback.bearer_token else {}
        )
        settings = self._settings
        for attempt in range(1, settings.attempts + 1):
            try:
                async with asyncio.timeout(settings.timeout):
                    async with self._session.post(
                        callback.url, json=body, headers=headers, allow_redirects=False
                    ) as response:
                        status = response.status
            except (aiohttp.ClientError, TimeoutError) as err:
                failure = repr(err)
            else:
                if status < 300:
                    return
                if status < 500 and status != 429:
                    # The subscriber refuses it (bad token, gone); asking again will not help.
                    _LOGGER.warning(
                        "subscriber %s refused a notification: HTTP %s", callback.url, status
                    )
                    return
                failure = f"HTTP {status}"
            if attempt < settings.attempts:
                await asyncio.sleep(settings.backoff * 2 ** (attempt - 1))
        _LOGGER.warning(
            "gave up notifying %s after %d attempts: %s", callback.url, settings.attempts, failure
        )
