"""Run the three tiers on this machine: the mock grid, the community bridge and Home Assistant.

Home Assistant is onboarded through its own HTTP API (a demo owner account) and the Smart
Community integration is added through its config flow with the bridge's address and an
enrollment code the operator issued, as a resident would. Everything lives in .develop/ and
stops on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from pathlib import Path
import signal
import sys
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".develop"
SCENARIO = REPO / "scenarios" / "demo.yaml"
HA_USER, HA_PASSWORD = "demo", "smart-community"
HOME_ID, FEEDER, TRANSFORMER = "demo-home", "feeder-1", "transformer-1"


class Stack:
    """The child processes, stopped in reverse order."""

    def __init__(self) -> None:
        self.children: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(self, name: str, *args: str, log: Path) -> None:
        handle = log.open("ab")
        process = await asyncio.create_subprocess_exec(
            *args, cwd=REPO, stdout=handle, stderr=asyncio.subprocess.STDOUT, start_new_session=True
        )
        self.children.append((name, process))
        print(f"  {name:<14} pid {process.pid}, log {log.relative_to(REPO)}")

    def failed(self) -> str | None:
        return next((name for name, p in self.children if p.returncode is not None), None)

    async def stop(self) -> None:
        for _name, process in reversed(self.children):
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for _name, process in reversed(self.children):
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()


async def wait_http(
    session: aiohttp.ClientSession, url: str, stack: Stack, patience: float = 180
) -> None:
    """Wait until url answers at all (any status)."""
    deadline = asyncio.get_running_loop().time() + patience
    while asyncio.get_running_loop().time() < deadline:
        if (name := stack.failed()) is not None:
            raise SystemExit(f"{name} stopped during start-up; see its log in .develop/")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)):
                return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {patience:.0f} s")


def bridge_config(ports: dict[str, int]) -> Path:
    path = WORK / "bridge.yaml"
    path.write_text(
        "# Written by scripts/develop.\n"
        "community: demo\n"
        "host: 127.0.0.1\n"
        f"port: {ports['bridge']}\n"
        f"public_url: http://127.0.0.1:{ports['bridge']}\n"
        f"database: {WORK / 'bridge.sqlite3'}\n"
        "grid:\n"
        f"  url: http://127.0.0.1:{ports['grid']}\n"
        "  client_id: bridge-demo\n"
        "  client_secret: demo-bridge-secret-change-me\n"
        "  poll_interval: 30\n",
        encoding="utf-8",
    )
    return path


async def operator_token(config: Path) -> str:
    """The demo operator's token, created once in the bridge's database and kept in .develop/."""
    saved = WORK / "operator.token"
    if saved.exists():
        return saved.read_text(encoding="utf-8").strip()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smart_community_bridge",
        "--config",
        str(config),
        "operator-token",
        "develop",
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise SystemExit("the bridge could not create an operator token")
    token = out.decode().strip().splitlines()[-1]
    saved.write_text(token + "\n", encoding="utf-8")
    saved.chmod(0o600)
    return token


async def enrollment_code(session: aiohttp.ClientSession, bridge: str, operator: str) -> str:
    """A fresh enrollment code for the demo home, issued by the operator."""
    async with session.post(
        f"{bridge}/operator/enrollment-codes",
        json={"home": HOME_ID, "feeder": FEEDER, "transformer": TRANSFORMER},
        headers={"Authorization": f"Bearer {operator}"},
    ) as response:
        return str((await response.json())["code"])


def ha_config(ports: dict[str, int]) -> Path:
    config = WORK / "homeassistant"
    (config / "custom_components").mkdir(parents=True, exist_ok=True)
    link = config / "custom_components" / "smart_community"
    if not link.is_symlink():
        link.symlink_to(REPO / "custom_components" / "smart_community")
    blueprints = config / "blueprints" / "automation" / "smart_community"
    if (
        not blueprints.exists()
        and (REPO / "blueprints" / "automation" / "smart_community").exists()
    ):
        blueprints.parent.mkdir(parents=True, exist_ok=True)
        blueprints.symlink_to(REPO / "blueprints" / "automation" / "smart_community")
    onboarding = config / ".storage" / "onboarding"
    if not onboarding.exists():
        # Onboarding's location step would add weather and radio integrations the demo does not
        # need; only the owner account is created (through the API, below).
        onboarding.parent.mkdir(exist_ok=True)
        onboarding.write_text(
            json.dumps(
                {
                    "version": 4,
                    "minor_version": 1,
                    "key": "onboarding",
                    "data": {"done": ["core_config", "analytics", "integration"]},
                }
            ),
            encoding="utf-8",
        )
    # Only a port other than the default is written: a changed HTTP setting makes Home Assistant
    # ask, in its UI, to confirm it.
    port = ports["homeassistant"]
    http_section = f"http:\n  server_port: {port}\n" if port != 8123 else ""
    (config / "configuration.yaml").write_text(
        "# Written by scripts/develop: the parts of Home Assistant the demo needs.\n"
        "homeassistant:\n"
        "  name: Smart Community demo\n"
        "  time_zone: Asia/Shanghai\n"
        "  currency: CNY\n"
        "  country: CN\n"
        "  unit_system: metric\n"
        "frontend:\n"
        "config:\n"
        "history:\n"
        "logbook:\n"
        "energy:\n"
        "automation:\n"
        "logger:\n"
        "  default: warning\n"
        "  logs:\n"
        "    custom_components.smart_community: debug\n"
        # The demo has no cameras; these would only say that ffmpeg and libturbojpeg are absent.
        "    haffmpeg.core: critical\n"
        "    homeassistant.components.camera.img_util: critical\n" + http_section,
        encoding="utf-8",
    )
    return config


async def ha_token(session: aiohttp.ClientSession, base: str) -> str:
    """Create the demo owner on first run (onboarding's user step), else log in as it."""
    client_id = f"{base}/"
    async with session.get(f"{base}/api/onboarding") as response:
        steps = (
            {s["step"]: s["done"] for s in await response.json()} if response.status == 200 else {}
        )
    if steps and not steps.get("user"):
        async with session.post(
            f"{base}/api/onboarding/users",
            json={
                "client_id": client_id,
                "name": "Demo resident",
                "username": HA_USER,
                "password": HA_PASSWORD,
                "language": "en",
            },
        ) as response:
            code = (await response.json())["auth_code"]
    else:
        async with session.post(
            f"{base}/auth/login_flow",
            json={
                "client_id": client_id,
                "handler": ["homeassistant", None],
                "redirect_uri": client_id,
            },
        ) as response:
            flow = await response.json()
        async with session.post(
            f"{base}/auth/login_flow/{flow['flow_id']}",
            json={"client_id": client_id, "username": HA_USER, "password": HA_PASSWORD},
        ) as response:
            code = (await response.json())["result"]
    async with session.post(
        f"{base}/auth/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": client_id},
    ) as response:
        return str((await response.json())["access_token"])


async def add_integration(
    session: aiohttp.ClientSession, base: str, token: str, bridge: str, operator: str
) -> None:
    """Add Smart Community through its config flow, unless it is there already."""
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(f"{base}/api/config/config_entries/entry", headers=headers) as response:
        entries: list[dict[str, Any]] = await response.json()
    if any(entry["domain"] == "smart_community" for entry in entries):
        return
    async with session.post(
        f"{base}/api/config/config_entries/flow",
        json={"handler": "smart_community"},
        headers=headers,
    ) as response:
        flow = await response.json()
    # The user step takes the bridge and an enrollment code, as a resident would enter them;
    # the next (the grid keys' fingerprints to confirm) takes no input.
    answers = [{"url": bridge, "code": await enrollment_code(session, bridge, operator)}]
    result = flow
    while result.get("type") == "form":
        if result.get("errors"):
            raise SystemExit(f"the integration's config flow refused: {result['errors']}")
        async with session.post(
            f"{base}/api/config/config_entries/flow/{flow['flow_id']}",
            json=answers.pop(0) if answers else {},
            headers=headers,
        ) as response:
            result = await response.json()
    if result.get("type") != "create_entry":
        raise SystemExit(f"adding the integration failed: {result}")


async def main(ports: dict[str, int]) -> None:
    WORK.mkdir(exist_ok=True)
    stack = Stack()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    grid = f"http://127.0.0.1:{ports['grid']}"
    bridge = f"http://127.0.0.1:{ports['bridge']}"
    ha = f"http://127.0.0.1:{ports['homeassistant']}"
    print("Starting the Smart Community stack:")
    try:
        async with aiohttp.ClientSession() as session:
            await stack.start(
                "mock grid",
                sys.executable,
                "-m",
                "smart_community_grid",
                "serve",
                "--scenario",
                str(SCENARIO),
                "--port",
                str(ports["grid"]),
                log=WORK / "grid.log",
            )
            await wait_http(session, f"{grid}/auth/server", stack)
            config = bridge_config(ports)
            operator = await operator_token(config)
            await stack.start(
                "bridge",
                sys.executable,
                "-m",
                "smart_community_bridge",
                "--config",
                str(config),
                "serve",
                log=WORK / "bridge.log",
            )
            await wait_http(session, f"{bridge}/health", stack)
            await stack.start(
                "homeassistant",
                sys.executable,
                "-m",
                "homeassistant",
                "--config",
                str(ha_config(ports)),
                "--skip-pip",
                log=WORK / "homeassistant.log",
            )
            await wait_http(session, f"{ha}/api/onboarding", stack, patience=300)
            token = await ha_token(session, ha)
            await add_integration(session, ha, token, bridge, operator)
        print(
            "\nReady.\n"
            f"  Home Assistant  {ha}   (login: {HA_USER} / {HA_PASSWORD})\n"
            f"  bridge          {bridge}/health   (operator token in .develop/operator.token)\n"
            f"  mock grid       {grid}/programs (OAuth2; see scenarios/demo.yaml)\n"
            "The demo scenario publishes today's prices now and a demand-response event a minute\n"
            "from start, active two minutes from start. Ctrl-C stops everything."
        )
        while not stop.is_set():
            if (name := stack.failed()) is not None:
                print(f"{name} stopped; see .develop/{name.replace(' ', '-')}.log", file=sys.stderr)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1)
    finally:
        print("\nStopping...")
        await stack.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid-port", type=int, default=int(os.environ.get("GRID_PORT", "8081")))
    parser.add_argument(
        "--bridge-port", type=int, default=int(os.environ.get("BRIDGE_PORT", "8080"))
    )
    parser.add_argument("--ha-port", type=int, default=int(os.environ.get("HA_PORT", "8123")))
    arguments = parser.parse_args()
    asyncio.run(
        main(
            {
                "grid": arguments.grid_port,
                "bridge": arguments.bridge_port,
                "homeassistant": arguments.ha_port,
            }
        )
    )
