"""The container: the image's own entrypoint runs here, and the image installs as the tests do.

No Docker engine runs on the test machines, so the entrypoint script the image runs is run as a
process with the environment the compose file gives it, and the Dockerfile is checked against
what the rest of the repository does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import json
import os
from pathlib import Path
import re
import signal
import sys

import aiohttp
import pytest

from smart_community_bridge.access import OPERATOR_PREFIX
from tests.loopback import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(name="environment")
def environment_fixture(tmp_path: Path) -> dict[str, str]:
    port = free_port()
    return {
        **os.environ,
        "SMART_COMMUNITY_BRIDGE_COMMUNITY": "c1",
        "SMART_COMMUNITY_BRIDGE_HOST": "127.0.0.1",
        "SMART_COMMUNITY_BRIDGE_PORT": str(port),
        "SMART_COMMUNITY_BRIDGE_DATABASE": str(tmp_path / "data" / "bridge.sqlite3"),
        "SMART_COMMUNITY_BRIDGE_GRID__URL": "http://127.0.0.1:9",
        "SMART_COMMUNITY_BRIDGE_GRID__CLIENT_ID": "bridge-c1",
        "SMART_COMMUNITY_BRIDGE_GRID__CLIENT_SECRET": "secret",
        "SMART_COMMUNITY_BRIDGE_LOG_FORMAT": "json",
    }


@pytest.fixture(name="entrypoint")
async def entrypoint_fixture(
    environment: dict[str, str],
) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        str(REPO / "bridge" / "docker-entrypoint.sh"),
        cwd=REPO,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    yield process
    if process.returncode is None:
        process.kill()
        await process.wait()


async def wait_ready(port: str) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/health/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def run_cli(environment: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smart_community_bridge", *args,
        env=environment, stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_entrypoint_migrates_serves_and_stops_within_the_grace_period(
    entrypoint: asyncio.subprocess.Process, environment: dict[str, str]
) -> None:
    port = environment["SMART_COMMUNITY_BRIDGE_PORT"]
    await wait_ready(port)
    assert await run_cli(environment, "healthcheck") == (0, "")

    # An operator token made beside the running bridge works against it.
    code, token = await run_cli(environment, "operator-token", "ops")
    assert code == 0
    assert token.startswith(OPERATOR_PREFIX)
    status_env = {**environment, "SMART_COMMUNITY_OPERATOR_TOKEN": token.strip()}
    code, status = await run_cli(status_env, "status")
    assert code == 0
    assert json.loads(status)["community"] == "c1"

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            metrics = await response.text()
        assert "smart_community_homes_connected 0.0" in metrics
        assert "smart_community_event_loop_lag_seconds_bucket" in metrics

        entrypoint.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):  # the container's stop grace period
            assert await entrypoint.wait() == 0
    assert await run_cli(environment, "healthcheck") == (1, "")

    assert entrypoint.stderr is not None
    logs = (await entrypoint.stderr.read()).decode().splitlines()
    records = [json.loads(line) for line in logs if line.startswith("{")]
    assert records, logs
    assert {"time", "level", "logger", "message"} <= set(records[0])


async def test_entrypoint_refuses_bad_configuration_naming_the_key(
    environment: dict[str, str],
) -> None:
    environment = {**environment, "SMART_COMMUNITY_BRIDGE_PORT": "eighty"}
    process = await asyncio.create_subprocess_exec(
        str(REPO / "bridge" / "docker-entrypoint.sh"),
        cwd=REPO, env=environment, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode == 2
    assert "port" in err.decode()


def test_image_installs_like_the_test_environment() -> None:
    dockerfile = (REPO / "bridge" / "Dockerfile").read_text(encoding="utf-8")
    setup = (REPO / "scripts" / "setup").read_text(encoding="utf-8")
    assert re.search(r"^RUN scripts/install requirements/bridge\.txt", dockerfile, re.MULTILINE)
    assert "in_env scripts/install requirements/test.txt" in setup
    test_requirements = (REPO / "requirements" / "test.txt").read_text(encoding="utf-8")
    assert "-r bridge.txt" in test_requirements.splitlines()
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE):
        assert (REPO / source).exists(), source
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert 'smart_community_bridge", "healthcheck"' in dockerfile
    assert 'ENTRYPOINT ["bridge/docker-entrypoint.sh"]' in dockerfile
    assert re.search(r"^VOLUME /data", dockerfile, re.MULTILINE)


async def test_slow_clients_are_cut_off_and_others_served(environment: dict[str, str]) -> None:
    """Clients trickling headers ("slow loris") or silent are closed at the deadline; others not."""
    environment = {**environment, "SMART_COMMUNITY_BRIDGE_HEADER_DEADLINE": "1"}
    process = await asyncio.create_subprocess_exec(
        str(REPO / "bridge" / "docker-entrypoint.sh"),
        cwd=REPO, env=environment,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    port = int(environment["SMART_COMMUNITY_BRIDGE_PORT"])
    request = b"GET /health HTTP/1.1\r\nHost: bridge\r\n\r\n"
    try:
        await wait_ready(str(port))
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        for _, writer in slow:
            writer.write(b"GET /health HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")  # never finished
        silent, _ = await asyncio.open_connection("127.0.0.1", port)
        kept_reader, kept_writer = await asyncio.open_connection("127.0.0.1", port)
        kept_writer.write(request)

        async with asyncio.timeout(5):
            for reader, _ in slow:
                assert await reader.read() == b""  # closed by the bridge
            assert await silent.read() == b""
        # A client that sent its headers in time keeps its connection past the deadline.
        kept_writer.write(request)
        received = b""
        async with asyncio.timeout(5):
            while received.count(b"HTTP/1.1 200") < 2:
                chunk = await kept_reader.read(4096)
                assert chunk, "the kept-alive connection was closed"
                received += chunk
        kept_writer.close()
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
