"""Command line of the mock grid: ``serve`` a scenario, or ``publish-event`` as a BL client."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
import logging
from pathlib import Path
import signal
import sys
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from smart_community_protocol import KeyFormatError, TimingError, parse_duration

from .app import create_app
from .demand_response import DemandResponse
from .scenario import ScenarioError, load_scenario

PAGE = 50
REQUEST_TIMEOUT = 10.0


class ClientFailure(Exception):
    """The grid refused or could not be reached; the message says what happened."""


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except TimingError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return text


def _value(text: str) -> float | int | str | bool:
    """A payload value: an integer, a number, true/false, or else the text itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smart-community-grid", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the grid for a scenario")
    serve.add_argument("--scenario", type=Path, required=True, help="scenario YAML file")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8081)
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--signing-key", type=Path, help="the signing key file, instead of the scenario's"
    )
    serve.add_argument(
        "--allow-http-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a webhook host reached over plain HTTP (a private container network; repeatable)",
    )
    publish = commands.add_parser("publish-event", help="publish a demand-response event")
    publish.add_argument("--grid", required=True, help="grid base URL, e.g. http://127.0.0.1:8081")
    publish.add_argument("--client-id", required=True)
    publish.add_argument("--client-secret", required=True)
    publish.add_argument("--program", required=True, help="programName of the event's program")
    publish.add_argument("--type", required=True, help="payload type, e.g. SIMPLE")
    publish.add_argument("--value", required=True, type=_value, help="payload value, e.g. 2")
    publish.add_argument("--name", default=None, help="eventName (default: type and value)")
    publish.add_argument("--start-in", type=float, default=0.0, metavar="SECONDS")
    publish.add_argument("--duration", type=_duration, default="PT30M")
    publish.add_argument("--randomize-start", type=_duration, default=None)
    publish.add_argument("--units", default=None, help="payload units, e.g. KW")
    publish.add_argument(
        "--target", action="append", default=[], help="target (repeatable); default: all"
    )
    return parser


async def _serve(app: web.Application, host: str, port: int) -> None:
    # Handlers first: whoever waits for the URL line may signal right after it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        url = URL.build(scheme="http", host=bound_host, port=bound_port)
        print(f"grid serving on {url}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


async def _call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    token: str | None = None,
    **kwargs: Any,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            async with session.request(method, url, headers=headers, **kwargs) as response:
                body = await response.json(content_type=None)
                if response.status >= 400:
                    detail = (
                        body.get("detail") or body.get("error_description")
                        if isinstance(body, dict)
                        else None
                    )
                    raise ClientFailure(f"{method} {url}: HTTP {response.status}: {detail or body}")
                return body
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise ClientFailure(f"{method} {url}: {err!r}") from err


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or name not in body:
        raise ClientFailure(f"the grid's answer has no '{name}': {body!r:.200}")
    return body[name]


async def _publish_event(args: argparse.Namespace) -> str:
    base = str(args.grid).rstrip("/")
    async with aiohttp.ClientSession() as session:
        server = await _call(session, "GET", f"{base}/auth/server")
        issued = await _call(
            session,
            "POST",
            _field(server, "tokenURL"),
            data={
                "grant_type": "client_credentials",
                "client_id": args.client_id,
                "client_secret": args.client_secret,
            },
        )
        token = _field(issued, "access_token")
        program_id = await _program_id(session, base, token, args.program)
        demand = DemandResponse(
            program_id=program_id,
            name=args.name or f"{args.type} {args.value}",
            payload_type=args.type,
            value=args.value,
            start=datetime.now(UTC) + timedelta(seconds=args.start_in),
            duration=args.duration,
            randomize_start=args.randomize_start,
            units=args.units,
            targets=args.target,
        )
        event = await _call(
            session, "POST", f"{base}/events", token=token, json=demand.event_body()
        )
        return str(_field(event, "id"))


async def _program_id(session: aiohttp.ClientSession, base: str, token: str, name: str) -> str:
    skip = 0
    while True:
        page = await _call(
            session, "GET", f"{base}/programs", token=token, params={"skip": skip, "limit": PAGE}
        )
        for program in page:
            if _field(program, "programName") == name:
                return str(_field(program, "id"))
        if len(page) < PAGE:
            raise ClientFailure(f"the grid has no program named '{name}'")
        skip += len(page)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "publish-event":
        try:
            print(asyncio.run(_publish_event(args)))
        except ClientFailure as err:
            print(f"smart-community-grid: {err}", file=sys.stderr)
            return 1
        return 0
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        scenario = load_scenario(args.scenario)
        scenario = replace(
            scenario,
            signing_key=args.signing_key.resolve() if args.signing_key else scenario.signing_key,
            webhooks=replace(
                scenario.webhooks,
                allow_http_hosts=(*scenario.webhooks.allow_http_hosts, *args.allow_http_host),
            ),
        )
        app = create_app(scenario)
    except (ScenarioError, KeyFormatError, OSError) as err:
        print(f"smart-community-grid: {err}", file=sys.stderr)
        return 2
    asyncio.run(_serve(app, args.host, args.port))
    return 0
