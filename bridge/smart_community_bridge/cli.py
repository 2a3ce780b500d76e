"""Command line of the community bridge.

``serve`` runs it; ``migrate`` and ``operator-token`` work on its database; ``enroll``,
``revoke`` and ``status`` ask the running bridge through its operator API, so the bridge stays
the one writer of its ledger and a revoked home is disconnected at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
import sys
from typing import Any

import aiohttp

from .access import OPERATOR_PREFIX, new_token, token_hash
from .app import create_app
from .config import BridgeConfig, ConfigError, load_config
from .ledger import Ledger
from .observability import configure_logging
from .serving import serve

# Below a container's usual 10 s stop grace period.
SHUTDOWN_TIMEOUT = 6.0
TOKEN_VARIABLE = "SMART_COMMUNITY_OPERATOR_TOKEN"  # noqa: S105 - a variable name


class CommandError(Exception):
    """A command failed; the message says why."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smart-community-bridge", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help="YAML configuration file (environment overrides it)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the bridge")
    commands.add_parser("migrate", help="create or upgrade the database, then exit")
    commands.add_parser(
        "healthcheck", help="exit 0 when the local bridge is ready (container probe)"
    )
    token = commands.add_parser("operator-token", help="create an operator token and print it once")
    token.add_argument("name")
    for name, text in (
        ("enroll", "issue an enrollment code for a home and print it"),
        ("revoke", "revoke a home's credential and disconnect it"),
        ("status", "show the running bridge's state"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--url", help="the bridge (default: http://127.0.0.1:<port>)")
        command.add_argument("--token", help=f"operator token (default: ${TOKEN_VARIABLE})")
        if name in {"enroll", "revoke"}:
            command.add_argument("home")
        if name == "enroll":
            command.add_argument("--feeder", required=True)
            command.add_argument("--transformer", required=True)
            command.add_argument(
                "--ttl", type=int, help="seconds until the code expires (default 7 days)"
            )
    return parser


async def _migrate(config: BridgeConfig) -> str:
    ledger = await Ledger.open(config.database)
    try:
        return f"database {config.database} at schema version {await ledger.schema_version()}"
    finally:
        await ledger.close()


async def _healthcheck(config: BridgeConfig) -> int:
    url = f"http://127.0.0.1:{config.port}/health/ready"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
            session.get(url) as response,
        ):
            return 0 if response.status == 200 else 1
    except aiohttp.ClientError, TimeoutError:
        return 1


async def _operator_token(config: BridgeConfig, name: str) -> str:
    token = new_token(OPERATOR_PREFIX)
    ledger = await Ledger.open(config.database)
    try:
        await ledger.add_operator_token(name, token_hash(token))
    except Exception as err:
        raise CommandError(f"cannot create operator token {name!r}: {err}") from err
    finally:
        await ledger.close()
    return token


async def _operator_call(args: argparse.Namespace, config: BridgeConfig) -> Any:
    url = (args.url or f"http://127.0.0.1:{config.port}").rstrip("/")
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise CommandError(f"an operator token is needed: --token or ${TOKEN_VARIABLE}")
    body: dict[str, Any] | None = None
    if args.command == "enroll":
        method, path = "POST", "/operator/enrollment-codes"
        body = {"home": args.home, "feeder": args.feeder, "transformer": args.transformer}
        if args.ttl is not None:
            body["ttl"] = args.ttl
    elif args.command == "revoke":
        method, path = "POST", f"/operator/homes/{args.home}/revoke"
    else:
        method, path = "GET", "/operator/status"
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, url + path, json=body, headers={"Authorization": f"Bearer {token}"}
            ) as response,
        ):
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, ValueError) as err:
        raise CommandError(f"cannot reach the bridge at {url}: {err}") from err
    if response.status >= 400:
        detail = answer.get("detail") if isinstance(answer, dict) else None
        raise CommandError(f"the bridge answered {response.status}: {detail or answer}")
    return answer


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as err:
        print(f"smart-community-bridge: {err}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    if args.command == "healthcheck":
        return asyncio.run(_healthcheck(config))
    if args.command == "serve":
        asyncio.run(
            serve(
                create_app(config),
                config.host,
                config.port,
                header_deadline=config.header_deadline,
                shutdown_timeout=SHUTDOWN_TIMEOUT,
            )
        )
        return 0
    try:
        if args.command == "migrate":
            print(asyncio.run(_migrate(config)))
        elif args.command == "operator-token":
            print(asyncio.run(_operator_token(config, args.name)))
        else:
            answer = asyncio.run(_operator_call(args, config))
            print(answer["code"] if args.command == "enroll" else json.dumps(answer, indent=2))
    except CommandError as err:
        print(f"smart-community-bridge: {err}", file=sys.stderr)
        return 1
    return 0
