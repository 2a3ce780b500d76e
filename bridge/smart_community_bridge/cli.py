"""Command line of the community bridge: ``serve``, ``migrate``, ``add-home``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path
import sys

from aiohttp import web

from smart_community_protocol import Placement, TargetError

from . import homes
from .app import create_app
from .config import BridgeConfig, ConfigError, load_config
from .ledger import Ledger


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smart-community-bridge", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help="YAML configuration file (environment overrides it)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the bridge")
    commands.add_parser("migrate", help="create or upgrade the database, then exit")
    add = commands.add_parser("add-home", help="register a home and print its credential")
    add.add_argument("home")
    add.add_argument("--feeder", required=True)
    add.add_argument("--transformer", required=True)
    return parser


async def _migrate(config: BridgeConfig) -> int:
    ledger = await Ledger.open(config.database)
    version = await ledger.schema_version()
    await ledger.close()
    print(f"database {config.database} at schema version {version}")
    return 0


async def _add_home(config: BridgeConfig, home: str, feeder: str, transformer: str) -> int:
    placement = Placement(
        community=config.community, feeder=feeder, transformer=transformer, home=home
    )
    ledger = await Ledger.open(config.database)
    try:
        credential = await homes.add_home(ledger, placement)
    finally:
        await ledger.close()
    print(credential)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, os.environ)
    except ConfigError as err:
        print(f"smart-community-bridge: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "add-home":
            return asyncio.run(_add_home(config, args.home, args.feeder, args.transformer))
    except TargetError as err:
        print(f"smart-community-bridge: {err}", file=sys.stderr)
        return 2
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        shutdown_timeout=8.0,
        print=lambda text: print(text, flush=True),
    )
    return 0
