"""The command line: publish-event as a real BL client, and serve until a signal."""

from __future__ import annotations

import asyncio
from pathlib import Path
import signal
import sys

import pytest
import yaml

from smart_community_grid.cli import main

from .conftest import SECRETS, Grid, scenario_dict


async def test_publish_event_creates_a_signed_event(
    grid: Grid, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "publish-event",
        "--grid",
        grid.url,
        "--client-id",
        "bl",
        "--client-secret",
        SECRETS["bl"],
        "--program",
        "dr",
        "--type",
        "SIMPLE",
        "--value",
        "2",
        "--start-in",
        "60",
        "--duration",
        "PT15M",
        "--randomize-start",
        "PT2M",
        "--target",
        "transformer:c1/t1",
    ]
    # The CLI runs its own event loop, so it gets a thread while the grid serves on this one.
    assert await asyncio.to_thread(main, argv) == 0
    event_id = capsys.readouterr().out.strip()
    event = await grid.ok("GET", f"/events/{event_id}", as_="ven1")
    assert event["targets"] == ["transformer:c1/t1"]
    assert event["intervalPeriod"]["duration"] == "PT15M"
    assert event["intervalPeriod"]["randomizeStart"] == "PT2M"
    assert event["intervals"][0]["payloads"] == [{"type": "SIMPLE", "values": [2]}]
    (await grid.verifier("c1")).verify(event)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--client-secret", "wrong"], "HTTP 401: client authentication failed"),
        (["--program", "missing"], "no program named 'missing'"),
    ],
)
async def test_publish_event_reports_failures(
    grid: Grid, capsys: pytest.CaptureFixture[str], change: list[str], message: str
) -> None:
    argv = [
        "publish-event",
        "--grid",
        grid.url,
        "--client-id",
        "bl",
        "--client-secret",
        SECRETS["bl"],
        "--program",
        "dr",
        "--type",
        "SIMPLE",
        "--value",
        "1",
        *change,
    ]
    assert await asyncio.to_thread(main, argv) == 1
    assert message in capsys.readouterr().err


async def test_serve_prints_its_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(scenario_dict()))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smart_community_grid",
        "serve",
        "--scenario",
        str(scenario),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("grid serving on http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_serve_refuses_a_bad_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(scenario_dict(communities=[])))
    assert main(["serve", "--scenario", str(scenario)]) == 2
    assert "scenario: communities:" in capsys.readouterr().err
