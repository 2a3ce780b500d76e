"""The bridge benchmark: the real mock grid, the real bridge and thousands of homes on 127.0.0.1.

Phases, in order (each bounded in time; every process is stopped at the end, on failure and
on Ctrl-C):

1. setup: a scenario (one community, a BL and a VEN client, one program, no scheduled events)
   and a bridge configuration in a work directory; N homes registered straight into the bridge's
   SQLite ledger through its Python API (``Ledger.open`` + ``homes.add_home``), 126 per
   transformer; their credentials written to a file the client processes read.
2. memory: bridge RSS (psutil) before the homes connect and once all N are connected.
3. fan-out: R events POSTed at the grid's BL API; per round, from just before the POST to the
   moment the last home has received and verified the signal.
4. slow homes: 1 % of the homes reconnect with sockets that stop reading after the welcome (and
   get large events addressed to them only, so their buffers fill); R more rounds; the p99 of
   the other homes against their p99 without slow homes.
5. ingest: every home reports over its push channel, first paced at twice the design rate in
   all (2 x 20,000 homes every 10 s = 4,000/s; the bridge's event-loop lag read from its
   /metrics meanwhile), then each home keeping one report outstanding (the most it stores).
6. restart: min(5,000, N) homes connected; ``kill -9`` of the bridge; K events published while
   it is down; the bridge started again; homes reconnect with jittered exponential backoff and
   resume after their last acknowledged sequence; time until 99 % have every missed signal.
7. baseline: the bridge stopped, a bare aiohttp broadcaster (``bench.baseline``) serves the same
   homes in the same client processes and sends the very frames the bridge sent in phase 3.

``python -m bench [--homes N | --quick] [--output PATH]``; ``--help`` lists every option.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import platform
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]  # no stubs in the environment
import yaml

from smart_community_bridge import homes as bridge_homes
from smart_community_bridge.ledger import Ledger
from smart_community_protocol import Placement, format_datetime

from . import report
from .common import die_with_parent, free_port, raise_file_limit

REPO = Path(__file__).resolve().parent.parent
COMMUNITY = "bench"
BL_ID, BL_SECRET = "bench-bl", "bench-bl-secret"
VEN_ID, VEN_SECRET = "bench-bridge", "bench-bridge-secret"
PROGRAM = "bench-dr"
HOMES_PER_TRANSFORMER = 126
TRANSFORMERS_PER_FEEDER = 8
FD_RESERVE = 128  # descriptors the bridge needs besides its homes' sockets
SLOW_FILL_EVENTS = 3
SLOW_FILL_INTERVALS = 1500  # about 90 KB of JSON per filler event
ROUND_TIMEOUT = 30.0
ROUND_PAUSE = 0.5
RESTART_WINDOW = 60.0
CLIENT_NICE = 10


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(slots=True)
class Options:
    """What to run."""

    homes: int
    rounds: int
    clients: int
    restart_homes: int
    restart_signals: int
    restart_window: float
    ingest_seconds: float
    slow_fraction: float
    output: Path
    workdir: Path | None
    keep: bool
    timeout: float
    profile: str | None
    profile_window: str
    phases: frozenset[str]
    concurrency: int
    client_nice: int
    quick: bool
    homes_requested: int = 0


# --- processes -------------------------------------------------------------------------------


def _child_environment() -> dict[str, str]:
    # The bridge reads SMART_COMMUNITY_BRIDGE_* overrides; the benchmark's file must be all.
    return {k: v for k, v in os.environ.items() if not k.startswith("SMART_COMMUNITY_BRIDGE_")}


async def spawn(
    args: Sequence[str], log: Path | None, *, pipes: bool = False, nice: int = 0
) -> asyncio.subprocess.Process:
    """A Python child of the benchmark, in its own session, that dies with the benchmark.

    ``nice`` lowers its CPU priority (the simulated homes: other machines in reality).
    """
    output: Any = asyncio.subprocess.PIPE if pipes else log.open("ab") if log else None

    def prepare() -> None:
        die_with_parent()
        if nice:
            os.nice(nice)

    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=REPO,
            env=_child_environment(),
            stdin=asyncio.subprocess.PIPE if pipes else asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=log.open("ab") if log else None,
            start_new_session=True,
            preexec_fn=prepare,
            limit=64 * 1024 * 1024,
        )
    finally:
        if output is not None and not pipes:
            output.close()


async def stop(process: asyncio.subprocess.Process | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


LAG_METRIC = "smart_community_event_loop_lag_seconds"
INGESTED_METRIC = "smart_community_reports_ingested_total"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition to {'name{labels}': value} (comments left out)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def lag_p99_ms(before: dict[str, float], after: dict[str, float]) -> float | None:
    """p99 of the bridge's event-loop lag between two scrapes, as its histogram bucket's bound.

    The bridge samples the lag every 0.25 s into buckets up to 2.5 s; the answer is the upper
    bound of the bucket the 99th percentile falls in (None without samples).
    """
    total = after.get(f"{LAG_METRIC}_count", 0.0) - before.get(f"{LAG_METRIC}_count", 0.0)
    if total <= 0:
        return None
    prefix = f'{LAG_METRIC}_bucket{{le="'
    bounds = sorted(
        (float(key[len(prefix) : -2]), value - before.get(key, 0.0))
        for key, value in after.items()
        if key.startswith(prefix)
    )
    finite = [bound for bound, _ in bounds if bound != float("inf")]
    for bound, cumulative in bounds:
        if cumulative >= 0.99 * total:
            # Beyond the largest bucket: report that bound (the lag is at least that).
            return round((bound if bound != float("inf") else max(finite)) * 1000, 1)
    return None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator to three places, None when either is missing."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _sockets(port: int) -> list[tuple[int, int]]:
    """(state, bytes in the kernel's send queue) of each TCP socket on local ``port``."""
    found = []
    with contextlib.suppress(OSError), Path("/proc/net/tcp").open(encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.append((int(fields[3], 16), int(fields[4].split(":")[0], 16)))
    return found


def send_queues(port: int) -> list[int]:
    """Bytes waiting in the kernel's send queue of each TCP socket on local ``port``."""
    return [queued for _, queued in _sockets(port)]


async def closed_by_server(port: int, within: float = 15.0) -> None:
    """Wait until the server on ``port`` has closed every socket its peers closed.

    (No socket left in CLOSE_WAIT: the descriptors are free again, which matters when the
    file-descriptor limit leaves only a small reserve.)
    """
    close_wait = 0x08
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(state == close_wait for state, _ in _sockets(port)):
            return
        await asyncio.sleep(0.05)


def git_commit() -> str | None:
    """The repository's checked-out commit, read from .git (git itself may be absent)."""
    git = REPO / ".git"
    try:
        head = (git / "HEAD").read_text(encoding="ascii").strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).exists():
            return (git / ref).read_text(encoding="ascii").strip()
        for line in (git / "packed-refs").read_text(encoding="ascii").splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0]
    except OSError:
        return None
    return None


def log_tail(path: Path, lines: int = 30) -> str:
    """The end of a log file, for failure messages."""
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ClientProcess:
    """One ``bench.client`` process and its JSON-line control channel."""

    def __init__(self, process: asyncio.subprocess.Process, index: int, log: Path) -> None:
        """Wrap a started process."""
        self.process = process
        self.index = index
        self.log = log
        self._next = 0

    @classmethod
    async def start(
        cls, workdir: Path, credentials: Path, index: int, options: Options
    ) -> ClientProcess:
        """Start client process ``index`` of ``options.clients``; wait until it has its homes."""
        log = workdir / f"client-{index}.log"
        process = await spawn(
            [
                "-m",
                "bench.client",
                "--credentials",
                str(credentials),
                "--community",
                COMMUNITY,
                "--worker",
                str(index),
                "--workers",
                str(options.clients),
                "--concurrency",
                str(options.concurrency),
            ],
            log,
            pipes=True,
            nice=options.client_nice,
        )
        client = cls(process, index, log)
        await client._read(60.0)
        return client

    async def _read(self, within: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), within)
        except TimeoutError as err:
            raise BenchError(f"client {self.index} did not answer in {within:.0f} s") from err
        if not line:
            raise BenchError(f"client {self.index} exited:\n{log_tail(self.log)}")
        message: dict[str, Any] = json.loads(line)
        return message

    async def call(self, command: str, wait: float = 120.0, **args: Any) -> Any:
        """Run one command in the client process and return its result."""
        assert self.process.stdin is not None
        self._next += 1
        self.process.stdin.write(
            json.dumps({"cmd": command, "id": self._next, **args}).encode() + b"\n"
        )
        await self.process.stdin.drain()
        answer = await self._read(wait + 30.0)
        if "error" in answer:
            raise BenchError(f"client {self.index}: {command}: {answer['error']}")
        return answer["result"]

    async def close(self) -> None:
        """Ask it to exit, then make sure it has."""
        if self.process.returncode is None and self.process.stdin is not None:
            with contextlib.suppress(Exception):
                self.process.stdin.close()
        await stop(self.process, grace=5.0)


class Clients:
    """All client processes, driven together."""

    def __init__(self, processes: list[ClientProcess]) -> None:
        """Drive ``processes``."""
        self.processes = processes

    async def all(self, command: str, wait: float = 120.0, **args: Any) -> list[Any]:
        """The same command in every process, concurrently (``wait``: its own time limit)."""
        return list(await asyncio.gather(*(p.call(command, wait, **args) for p in self.processes)))

    async def connect(
        self, indices: list[int] | None = None, *, fresh: bool = False, within: float = 300.0
    ) -> dict[str, float]:
        """Connect homes and wait for their welcomes; raise if some never got one."""
        answers = await self.all("connect", within, indices=indices, fresh=fresh, timeout=within)
        missing = sum(a["missing"] for a in answers)
        if missing:
            raise BenchError(f"{missing} homes did not connect within {within:.0f} s")
        return {
            "connected": sum(a["connected"] for a in answers),
            "seconds": max(a["seconds"] for a in answers),
        }

    async def times(
        self,
        events: list[str],
        within: float,
        *,
        indices: list[int] | None = None,
        frames: bool = False,
    ) -> dict[str, Any]:
        """Merged per-home times (monotonic) at which each home had all of ``events``."""
        answers = await self.all(
            "times", within, events=events, indices=indices, timeout=within, frames=frames
        )
        merged: dict[str, Any] = {"indices": [], "times": [], "welcomed": [], "frames": {}}
        for answer in answers:
            merged["indices"] += answer["indices"]
            merged["times"] += answer["times"]
            merged["welcomed"] += answer["welcomed"]
            for event, frame in answer.get("frames", {}).items():
                if frame is not None:
                    merged["frames"].setdefault(event, frame)
        return merged

    async def close(self) -> None:
        """Stop every process."""
        await asyncio.gather(*(p.close() for p in self.processes))


# --- the grid as the utility's business logic ------------------------------------------------


class GridBL:
    """Publishes events through the grid's BL API, as tests/e2e does."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        """Talk to the grid at ``url``."""
        self._session = session
        self._url = url
        self._token = ""
        self._program = ""

    async def login(self) -> None:
        """Fetch a BL token and the benchmark program's id."""
        form = {"grant_type": "client_credentials", "client_id": BL_ID, "client_secret": BL_SECRET}
        async with self._session.post(f"{self._url}/auth/token", data=form) as response:
            if response.status != 200:
                raise BenchError(f"grid token: HTTP {response.status} {await response.text()}")
            self._token = (await response.json())["access_token"]
        async with self._session.get(f"{self._url}/programs", headers=self._headers) as response:
            programs = await response.json()
        self._program = next(p["id"] for p in programs if p["programName"] == PROGRAM)

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def publish(
        self,
        name: str,
        *,
        targets: list[str] | None = None,
        start_in: timedelta = timedelta(hours=1),
        duration: str = "PT30M",
        intervals: int = 1,
    ) -> tuple[float, str]:
        """POST one event; returns the monotonic time just before the POST and the event id."""
        start = datetime.now(UTC).replace(microsecond=0) + start_in
        body = {
            "programID": self._program,
            "eventName": name,
            "targets": targets or [f"community:{COMMUNITY}"],
            "intervalPeriod": {"start": format_datetime(start), "duration": duration},
            "intervals": [
                {"id": i, "payloads": [{"type": "SIMPLE", "values": [i % 4]}]}
                for i in range(intervals)
            ],
        }
        data = json.dumps(body).encode()
        headers = {**self._headers, "Content-Type": "application/json"}
        started = time.monotonic()
        async with self._session.post(
            f"{self._url}/events", data=data, headers=headers
        ) as response:
            if response.status != 201:
                raise BenchError(
                    f"grid POST /events: HTTP {response.status} {await response.text()}"
                )
            event = await response.json()
        return started, str(event["id"])


# --- the benchmark ---------------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    """One fan-out round: each home's latency (None: it never had the signal)."""

    by_home: dict[int, float | None]
    frame: str | None = None

    @property
    def latencies(self) -> list[float]:
        """Latencies of the homes that had the signal."""
        return [x for x in self.by_home.values() if x is not None]

    @property
    def missing(self) -> int:
        """Homes that never had the signal."""
        return sum(x is None for x in self.by_home.values())

    def latencies_except(self, excluded: set[int]) -> list[float]:
        """Latencies of the homes not in ``excluded``."""
        return [x for i, x in self.by_home.items() if x is not None and i not in excluded]


@dataclass(slots=True)
class Bench:
    """State of one benchmark run."""

    options: Options
    workdir: Path
    results: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    grid: asyncio.subprocess.Process | None = None
    bridge: asyncio.subprocess.Process | None = None
    baseline: asyncio.subprocess.Process | None = None
    clients: Clients | None = None
    session: aiohttp.ClientSession | None = None
    grid_url: str = ""
    bridge_port: int = 0
    bridge_url: str = ""
    credentials: Path = Path()
    first_credential: str = ""
    bl: GridBL | None = None

    @property
    def settle(self) -> float:
        """Seconds to let the processes settle between steps (longer with more homes)."""
        return min(2.0, 0.3 + self.options.homes / 2500)

    def say(self, text: str) -> None:
        """Progress, on stderr (stdout carries the table)."""
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # --- setup ---------------------------------------------------------------------------

    def write_scenario(self) -> Path:
        """The grid's scenario: one community, BL and VEN clients, one program, no events."""
        scenario = {
            "grid": "bench-grid",
            "signing_key": "grid-signing-key.pem",
            "token_lifetime": 86400,
            "max_body_size": 4 * 1024 * 1024,
            "webhooks": {"timeout": 5, "attempts": 3, "backoff": 1, "allow_http_loopback": True},
            "communities": [COMMUNITY],
            "clients": [
                {"client_id": BL_ID, "secret": BL_SECRET, "role": "BL"},
                {
                    "client_id": VEN_ID,
                    "secret": VEN_SECRET,
                    "role": "VEN",
                    "community": COMMUNITY,
                },
            ],
            "programs": [{"name": PROGRAM, "targets": [f"community:{COMMUNITY}"]}],
        }
        path = self.workdir / "scenario.yaml"
        path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
        return path

    def write_bridge_config(self, grid_port: int) -> Path:
        """The bridge's configuration: defaults except where it listens and what it talks to."""
        self.bridge_port = free_port()
        self.bridge_url = f"http://127.0.0.1:{self.bridge_port}"
        config = {
            "community": COMMUNITY,
            "host": "127.0.0.1",
            "port": self.bridge_port,
            "public_url": self.bridge_url,
            "database": str(self.workdir / "bridge.sqlite3"),
            "grid": {
                "url": f"http://127.0.0.1:{grid_port}",
                "client_id": VEN_ID,
                "client_secret": VEN_SECRET,
            },
        }
        path = self.workdir / "bridge.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    async def register_homes(self) -> None:
        """Register every home through the bridge's Python API; write their credentials."""
        started = time.monotonic()
        self.credentials = self.workdir / "credentials.jsonl"
        ledger = await Ledger.open(self.workdir / "bridge.sqlite3")
        try:
            with self.credentials.open("w", encoding="utf-8") as file:
                for index in range(self.options.homes):
                    transformer = index // HOMES_PER_TRANSFORMER
                    placement = Placement(
                        community=COMMUNITY,
                        feeder=f"f{transformer // TRANSFORMERS_PER_FEEDER}",
                        transformer=f"t{transformer}",
                        home=f"h{index}",
                    )
                    credential = await bridge_homes.add_home(ledger, placement)
                    file.write(
                        json.dumps(
                            {
                                "home": placement.home,
                                "feeder": placement.feeder,
                                "transformer": placement.transformer,
                                "credential": credential,
                            }
                        )
                        + "\n"
                    )
                    if index == 0:
                        self.first_credential = credential
        finally:
            await ledger.close()
        self.results["setup_register_s"] = round(time.monotonic() - started, 3)

    async def start_grid(self) -> None:
        """Start the mock grid and wait until it answers."""
        scenario = self.write_scenario()
        port = free_port()
        self.grid_url = f"http://127.0.0.1:{port}"
        self.grid = await spawn(
            [
                "-m",
                "smart_community_grid",
                "serve",
                "--scenario",
                str(scenario),
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            self.workdir / "grid.log",
        )
        await self.wait_http(f"{self.grid_url}/auth/server", self.grid, "grid")

    async def start_bridge(self, config: Path) -> asyncio.subprocess.Process:
        """Start the bridge (its own CLI, or under the profiler)."""
        bridge_args = ["--config", str(config), "serve"]
        if self.options.profile:
            args = [
                "-m",
                "bench.profiled_bridge",
                "--mode",
                self.options.profile,
                "--out",
                str(self.workdir / "profile"),
                "--",
                *bridge_args,
            ]
        else:
            args = ["-m", "smart_community_bridge", *bridge_args]
        process = await spawn(args, self.workdir / "bridge.log")
        self.bridge = process
        return process

    async def wait_http(
        self,
        url: str,
        process: asyncio.subprocess.Process,
        name: str,
        *,
        headers: dict[str, str] | None = None,
        ready: Any = None,
        within: float = 60.0,
    ) -> None:
        """Poll ``url`` until it answers 200 (and ``ready(body)`` holds)."""
        assert self.session is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if process.returncode is not None:
                log = self.workdir / f"{name}.log"
                raise BenchError(f"{name} exited with {process.returncode}:\n{log_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                async with self.session.get(url, headers=headers) as response:
                    if response.status == 200 and (
                        ready is None or ready(await response.json(content_type=None))
                    ):
                        return
            await asyncio.sleep(0.1)
        raise BenchError(f"{name} not ready at {url} within {within:.0f} s")

    async def wait_bridge_synced(self) -> None:
        """Wait until the bridge has pinned the grid key, subscribed and read the program."""
        assert self.bridge is not None
        headers = {"Authorization": f"Bearer {self.first_credential}"}
        await self.wait_http(f"{self.bridge_url}/health", self.bridge, "bridge")
        await self.wait_http(
            f"{self.bridge_url}/programs",
            self.bridge,
            "bridge",
            headers=headers,
            ready=lambda body: isinstance(body, list) and len(body) > 0,
        )

    def rss(self, process: asyncio.subprocess.Process | None) -> int:
        """Resident memory of a process, in bytes."""
        assert process is not None
        return int(psutil.Process(process.pid).memory_info().rss)

    def signal_bridge(self, mode: str, signum: int) -> None:
        """Open or close a profiling window (only when profiling in ``mode``)."""
        if (
            self.options.profile == mode
            and self.bridge is not None
            and self.bridge.returncode is None
        ):
            os.kill(self.bridge.pid, signum)

    async def metrics(self) -> dict[str, float]:
        """The bridge's Prometheus metrics now (empty when it has none)."""
        assert self.session is not None
        try:
            async with self.session.get(f"{self.bridge_url}/metrics") as response:
                if response.status != 200:
                    return {}
                return parse_metrics(await response.text())
        except aiohttp.ClientError, OSError:
            return {}

    def window(self, phase: str, *, opening: bool) -> None:
        """Open or close the profiling window when ``phase`` is the one profiled."""
        if self.options.profile in {"cpu", "memory"} and self.options.profile_window == phase:
            self.signal_bridge(self.options.profile, signal.SIGUSR1 if opening else signal.SIGUSR2)

    def bridge_cpu(self) -> float:
        """CPU seconds the bridge has used so far."""
        assert self.bridge is not None
        times = psutil.Process(self.bridge.pid).cpu_times()
        return float(times.user + times.system)

    # --- phases --------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Every phase; returns the results."""
        options = self.options
        bridge_config = await self.start_stack()
        await self.memory_phase()

        self.window("fanout", opening=True)
        before = await self.metrics()
        normal = await self.fanout_rounds("fan-out", options.rounds)
        self.results["fanout_loop_lag_p99_ms"] = lag_p99_ms(before, await self.metrics())
        self.window("fanout", opening=False)
        self.record_fanout("", normal)
        self.results["rss_after_fanout_mb"] = round(self.rss(self.bridge) / 2**20, 1)

        if "slow" in options.phases:
            await self.slow_phase(normal)
        else:
            self.results["slow_homes_p99_ratio"] = None
        if "ingest" in options.phases:
            self.window("ingest", opening=True)
            await self.ingest_phase()
            self.window("ingest", opening=False)
        else:
            self.results["ingest_reports_per_s"] = None
            self.results["loop_lag_p99_ms"] = None
        if "restart" in options.phases:
            await self.restart_phase(bridge_config)
        else:
            self.results["restart_caught_up_s"] = None
            self.results["restart_caught_up_fraction"] = None
        assert self.clients is not None
        stats = await self.clients.all("stats")
        await self.clients.all("close", indices=None)
        await stop(self.bridge)
        if "baseline" in options.phases:
            await self.baseline_phase(normal)
        else:
            self.results["baseline_fanout_max_s"] = None
        self.results.update(
            {
                "client_frames": sum(s["frames"] for s in stats),
                "client_signature_checks": sum(s["verifications"] for s in stats),
                "client_connection_drops": sum(s["drops"] for s in stats),
                "client_rejected": sum(s["rejected"] for s in stats),
                "verification": (
                    "every home verifies every frame; byte-identical frames within one client"
                    " process share one JSON decode and signature check (exact text compared);"
                    " audience, replay guard and ack are per home"
                ),
            }
        )
        return self.results

    async def start_stack(self) -> Path:
        """Homes registered, grid and bridge started and in step; returns the bridge config."""
        options = self.options
        self.results.update(
            {
                "homes": options.homes,
                "homes_requested": options.homes_requested,
                "rounds": options.rounds,
                "client_processes": options.clients,
                "quick": options.quick,
                "profiled": options.profile,
            }
        )
        self.session = aiohttp.ClientSession()
        self.say(f"work directory {self.workdir}")
        await self.register_homes()
        self.say(f"registered {options.homes} homes in {self.results['setup_register_s']} s")
        await self.start_grid()
        bl = self.bl = GridBL(self.session, self.grid_url)
        await bl.login()
        bridge_config = self.write_bridge_config(int(self.grid_url.rsplit(":", 1)[1]))
        await self.start_bridge(bridge_config)
        await self.wait_bridge_synced()
        self.say("grid and bridge up; bridge synced")
        return bridge_config

    async def memory_phase(self) -> None:
        """Start the client processes and connect every home; the bridge's RSS before and after."""
        options = self.options
        await asyncio.sleep(self.settle)
        rss_before = self.rss(self.bridge)
        self.clients = Clients(
            list(
                await asyncio.gather(
                    *(
                        ClientProcess.start(self.workdir, self.credentials, i, options)
                        for i in range(options.clients)
                    )
                )
            )
        )
        await self.clients.all("target", url=self.bridge_url, fetch_keys=True)
        self.window("connect", opening=True)
        connected = await self.clients.connect(fresh=True, within=max(120.0, options.homes / 50))
        self.say(f"{connected['connected']} homes connected in {connected['seconds']:.1f} s")
        self.results["connect_all_s"] = round(connected["seconds"], 3)
        await asyncio.sleep(self.settle)
        rss_after = self.rss(self.bridge)
        self.window("connect", opening=False)
        self.signal_bridge("freeze", signal.SIGUSR1)
        self.results.update(
            {
                "rss_before_homes_mb": round(rss_before / 2**20, 1),
                "rss_with_homes_mb": round(rss_after / 2**20, 1),
                "rss_per_home_kb": round((rss_after - rss_before) / options.homes / 1024, 2),
            }
        )

    async def fanout_rounds(
        self,
        label: str,
        rounds: int,
        post: Callable[[int], Awaitable[float]] | None = None,
        events: list[str] | None = None,
    ) -> list[Round]:
        """Publish ``rounds`` signals one after another; per round, every home's latency.

        Signals go to the grid's BL API, or through ``post(round)`` (which returns the time just
        before it sent) for the already known ``events``.
        """
        assert self.clients is not None
        assert self.bl is not None
        measured = []
        for number in range(rounds):
            cpu_before = self.bridge_cpu() if post is None else 0.0
            if post is None:
                started, event = await self.bl.publish(f"bench {label} {number}")
            else:
                assert events is not None
                event = events[number]
                started = await post(number)
            merged = await self.clients.times([event], ROUND_TIMEOUT, frames=post is None)
            measured.append(
                Round(
                    {
                        index: None if t is None else round(t - started, 6)
                        for index, t in zip(merged["indices"], merged["times"], strict=True)
                    },
                    merged["frames"].get(event),
                )
            )
            latencies, missing = measured[-1].latencies, measured[-1].missing
            with (self.workdir / "rounds.jsonl").open("a", encoding="utf-8") as log:
                log.write(
                    json.dumps(
                        {
                            "phase": label,
                            "round": number,
                            "event": event,
                            "started": started,
                            "first": min(latencies, default=None),
                            "last": max(latencies, default=None),
                            "bridge_cpu": (
                                round(self.bridge_cpu() - cpu_before, 3) if post is None else None
                            ),
                        }
                    )
                    + "\n"
                )
            last = max(latencies) if latencies else float("nan")
            self.say(
                f"{label} round {number + 1}/{rounds}: last home after {last:.3f} s"
                + (f", {missing} missing" if missing else "")
            )
            await asyncio.sleep(min(ROUND_PAUSE, self.settle))
        return measured

    def record_fanout(self, prefix: str, rounds: list[Round]) -> None:
        """Fan-out figures: over all homes, and of the per-round maximum and minimum."""
        pooled = [x for r in rounds for x in r.latencies]
        maxima = [max(r.latencies) for r in rounds if r.latencies]
        minima = [min(r.latencies) for r in rounds if r.latencies]
        key = f"{prefix}fanout"
        self.results.update(
            {
                f"{key}_p50_s": report.percentile(pooled, 0.50),
                f"{key}_p99_s": report.percentile(pooled, 0.99),
                f"{key}_max_s": max(pooled) if pooled else None,
                f"{key}_round_max_p50_s": report.percentile(maxima, 0.50),
                f"{key}_round_max_p99_s": report.percentile(maxima, 0.99),
                f"{key}_first_p50_s": report.percentile(minima, 0.50),
                f"{key}_missing": sum(r.missing for r in rounds),
                f"{key}_round_max_s": maxima,
                f"{key}_round_first_s": minima,
            }
        )

    async def slow_phase(self, normal: list[Round]) -> None:
        """1 % of homes stop reading; the others' p99 against their p99 without them."""
        assert self.clients is not None
        assert self.bl is not None
        options = self.options
        per_process = options.clients
        slow = [
            i
            for i in range(options.homes)
            if (i // per_process) % round(1 / options.slow_fraction) == 0
        ]
        await self.clients.all("close", indices=slow)
        await closed_by_server(self.bridge_port)
        opened = await self.clients.all("slow", indices=slow)
        failed = sum(a["failed"] for a in opened)
        if failed:
            raise BenchError(f"{failed} slow homes could not connect")
        self.say(f"{len(slow)} homes connected that stop reading after the welcome")
        targets = [f"home:{COMMUNITY}/h{i}" for i in slow]
        for number in range(SLOW_FILL_EVENTS):
            # Large, addressed to the slow homes only, ended within seconds (so the bridge's
            # periodic resync does not read them again): their socket buffers fill.
            await self.bl.publish(
                f"bench filler {number}",
                targets=targets,
                start_in=timedelta(0),
                duration="PT5S",
                intervals=SLOW_FILL_INTERVALS,
            )
        await asyncio.sleep(self.settle)
        queued = send_queues(self.bridge_port)
        blocked = sorted(q for q in queued if q >= 16 * 1024)
        self.results["slow_homes_blocked"] = len(blocked)
        self.results["slow_homes_kernel_send_queue_kb"] = (
            round(blocked[len(blocked) // 2] / 1024, 1) if blocked else 0
        )
        self.say(f"{len(blocked)} bridge sockets have >= 16 KB unsent in the kernel")
        rounds = await self.fanout_rounds("slow-homes", options.rounds)
        slow_set = set(slow)
        with_slow = [x for r in rounds for x in r.latencies]
        without = [x for r in normal for x in r.latencies_except(slow_set)]
        p99_with = report.percentile(with_slow, 0.99)
        p99_without = report.percentile(without, 0.99)
        # Robust companion: the median over rounds of each round's p99, so one round that a
        # pause (the bridge's garbage collector) hit does not decide the ratio.
        median_with = report.percentile(
            [p for r in rounds if (p := report.percentile(r.latencies, 0.99)) is not None], 0.5
        )
        median_without = report.percentile(
            [
                p
                for r in normal
                if (p := report.percentile(r.latencies_except(slow_set), 0.99)) is not None
            ],
            0.5,
        )
        self.results.update(
            {
                "slow_homes": len(slow),
                "slow_homes_p99_s": p99_with,
                "slow_homes_reference_p99_s": p99_without,
                "slow_homes_p99_ratio": ratio(p99_with, p99_without),
                "slow_homes_round_p99_median_ratio": ratio(median_with, median_without),
                "slow_homes_max_s": max(with_slow) if with_slow else None,
                "slow_homes_missing": sum(r.missing for r in rounds),
            }
        )
        await self.clients.all("close", indices=slow)
        await closed_by_server(self.bridge_port)
        await self.clients.connect(slow, within=120.0)

    async def report_run(self, paced: bool, rate: float) -> dict[str, Any]:
        """One ingest run in every client process; the merged answer and the lag meanwhile."""
        assert self.clients is not None
        seconds = self.options.ingest_seconds
        before = await self.metrics()

        async def at(moment: float) -> dict[str, float]:
            await asyncio.sleep(moment)
            return await self.metrics()

        answers, after = await asyncio.gather(
            self.clients.all(
                "report", seconds + 60.0, paced=paced, rate=rate, duration=seconds, drain=15.0
            ),
            at(seconds),
        )
        idle = await self.ingest_idle()
        firsts = [a["first_sent"] for a in answers if a["first_sent"] is not None]
        lasts = [a["last_stored"] for a in answers if a["last_stored"] is not None]
        stored = sum(a["stored"] for a in answers)
        span = max(lasts) - min(firsts) if firsts and lasts else 0.0
        latencies = [x for a in answers for x in a["latencies"]]
        failed: dict[str, int] = {}
        for answer in answers:
            for status, count in answer["failed"].items():
                failed[status] = failed.get(status, 0) + count
        return {
            "sent": sum(a["sent"] for a in answers),
            "stored": stored,
            # Acknowledged (stored) reports over the time from the first sent to the last
            # acknowledged, by the homes' clocks (a scrape of the bridge's own counter is
            # answered late when its loop is saturated, so it cannot time a window).
            "stored_per_s": round(stored / span, 1) if span > 0 else 0.0,
            "idle_after_s": idle,
            "ack_p50_s": report.percentile(latencies, 0.5),
            "ack_p99_s": report.percentile(latencies, 0.99),
            "unanswered": sum(a["unanswered"] for a in answers),
            "failed": failed,
            "lag_p99_ms": lag_p99_ms(before, after),
            "lag_samples": after.get(f"{LAG_METRIC}_count", 0.0)
            - before.get(f"{LAG_METRIC}_count", 0.0),
        }

    async def ingest_idle(self, limit: float = 90.0) -> float | None:
        """Wait until the bridge has stored everything it took (its counter stands still).

        Returns the seconds it took, None if it was still storing after ``limit`` seconds.
        """
        started = time.monotonic()
        last = (await self.metrics()).get(INGESTED_METRIC)
        while time.monotonic() - started < limit:
            await asyncio.sleep(0.5)
            now = (await self.metrics()).get(INGESTED_METRIC)
            if now == last:
                return round(time.monotonic() - started, 1)
            last = now
        return None

    async def ingest_phase(self) -> None:
        """Reports over the push channel: at the bound's rate (lag), then as fast as stored."""
        options = self.options
        offered = report.INGEST_BOUND
        self.say(f"ingest: {options.homes} homes report {offered:g}/s in all")
        paced = await self.report_run(True, offered / options.homes)
        self.say("ingest: every home keeps one report outstanding")
        closed = await self.report_run(False, 0.0)
        stored_any = paced["stored"] > 0 or closed["stored"] > 0
        self.results.update(
            {
                "ingest_seconds": options.ingest_seconds,
                "ingest_offered_per_s": round(paced["sent"] / options.ingest_seconds, 1),
                "ingest_paced_stored_per_s": paced["stored_per_s"],
                "ingest_paced_ack_p50_s": paced["ack_p50_s"],
                "ingest_paced_ack_p99_s": paced["ack_p99_s"],
                "ingest_reports_per_s": closed["stored_per_s"] if stored_any else None,
                "ingest_idle_after_s": [paced["idle_after_s"], closed["idle_after_s"]],
                "ingest_saturated_ack_p99_s": closed["ack_p99_s"],
                "ingest_failed": {
                    status: paced["failed"].get(status, 0) + closed["failed"].get(status, 0)
                    for status in {*paced["failed"], *closed["failed"]}
                },
                "ingest_unanswered": paced["unanswered"] + closed["unanswered"],
                "loop_lag_p99_ms": paced["lag_p99_ms"],
                "loop_lag_samples": paced["lag_samples"],
                "ingest_saturated_loop_lag_p99_ms": closed["lag_p99_ms"],
                "loop_lag_note": (
                    "upper bound of the bridge's histogram bucket (probe every 0.25 s) that holds"
                    " the 99th percentile, while homes report at the bound's rate; 2500 ms means"
                    " beyond the largest bucket"
                    if paced["lag_p99_ms"] is not None
                    else report.NOT_MEASURED_LAG
                ),
            }
        )
        if not stored_any:
            self.results["ingest_note"] = report.NOT_MEASURED_INGEST
        self.say(
            f"ingest: {self.results['ingest_paced_stored_per_s']}/s stored when offered"
            f" {offered:g}/s (lag p99 {paced['lag_p99_ms']} ms);"
            f" at most {self.results['ingest_reports_per_s']}/s"
        )

    async def restart_phase(self, bridge_config: Path) -> None:
        """kill -9, K signals while down, restart; time until 99 % caught up."""
        assert self.clients is not None
        assert self.bl is not None
        assert self.bridge is not None
        options = self.options
        count = min(options.restart_homes, options.homes)
        if count < options.homes:
            await self.clients.all("close", indices=list(range(count, options.homes)))
        await self.clients.connect(list(range(count)), within=120.0)
        await asyncio.sleep(self.settle)
        self.say(f"restart: kill -9 of the bridge with {count} homes connected")
        killed = time.monotonic()
        self.bridge.kill()
        await self.bridge.wait()
        missed = []
        for number in range(options.restart_signals):
            _, event = await self.bl.publish(f"bench while down {number}")
            missed.append(event)
        await asyncio.sleep(0.5)
        restarted = time.monotonic()
        await self.start_bridge(bridge_config)
        self.say(f"restart: {len(missed)} signals published while down; bridge started again")
        merged = await self.clients.times(missed, options.restart_window + 5.0)
        caught = sorted(t - restarted for t in merged["times"] if t is not None)
        reconnected = sorted(t - restarted for t in merged["welcomed"] if t >= restarted)
        needed = max(1, -(-99 * count // 100))
        within = sum(t <= options.restart_window for t in caught)
        self.results.update(
            {
                "restart_homes": count,
                "restart_signals": len(missed),
                "restart_down_s": round(restarted - killed, 3),
                "restart_caught_up_s": (
                    round(caught[needed - 1], 3) if len(caught) >= needed else None
                ),
                "restart_caught_up_fraction": round(within / count, 4),
                "restart_all_caught_up_s": round(caught[-1], 3) if len(caught) == count else None,
                "restart_reconnected_99_s": (
                    round(reconnected[needed - 1], 3) if len(reconnected) >= needed else None
                ),
                "restart_window_s": options.restart_window,
            }
        )
        self.say(
            f"restart: {len(caught)}/{count} homes caught up; 99 % after "
            f"{self.results['restart_caught_up_s']} s"
        )

    async def baseline_phase(self, normal: list[Round]) -> None:
        """The same homes and frames against a bare aiohttp broadcaster."""
        assert self.clients is not None
        assert self.session is not None
        frames = [r.frame for r in normal]
        if any(frame is None for frame in frames):
            raise BenchError("a fan-out round left no frame to replay in the baseline")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.baseline = await spawn(
            ["-m", "bench.baseline", "--port", str(port), "--credentials", str(self.credentials)],
            self.workdir / "baseline.log",
        )
        await self.wait_http(f"{url}/connected", self.baseline, "baseline")
        rss_before = self.rss(self.baseline)
        await self.clients.all("target", url=url)
        await self.clients.connect(fresh=True, within=max(120.0, self.options.homes / 50))
        await asyncio.sleep(self.settle)
        rss_after = self.rss(self.baseline)
        if self.options.profile == "freeze":
            os.kill(self.baseline.pid, signal.SIGUSR1)
        session = self.session
        events = [json.loads(frame)["notification"]["object"]["id"] for frame in frames if frame]

        async def post(number: int) -> float:
            frame = frames[number]
            assert frame is not None
            started = time.monotonic()
            async with session.post(f"{url}/broadcast", data=frame.encode()) as response:
                if response.status != 200:
                    raise BenchError(f"baseline broadcast: HTTP {response.status}")
            return started

        rounds = await self.fanout_rounds("baseline", len(frames), post, events)
        self.record_fanout("baseline_", rounds)
        self.results["baseline_rss_per_home_kb"] = round(
            (rss_after - rss_before) / self.options.homes / 1024, 2
        )
        await self.clients.all("close", indices=None)

    async def close(self) -> None:
        """Stop everything this run started."""
        if self.clients is not None:
            await self.clients.close()
        await asyncio.gather(stop(self.bridge), stop(self.baseline), stop(self.grid))
        if self.session is not None:
            await self.session.close()


# --- entry point -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--homes", type=int, default=None, help="simulated homes (default 5000)")
    parser.add_argument(
        "--quick", action="store_true", help="500 homes, 3 rounds, a short restart (a quick look)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="fan-out rounds (default 20)")
    parser.add_argument("--clients", type=int, default=None, help="client processes")
    parser.add_argument(
        "--restart-homes", type=int, default=5000, help="homes connected at the kill -9"
    )
    parser.add_argument(
        "--restart-signals", type=int, default=None, help="signals published while down"
    )
    parser.add_argument("--restart-window", type=float, default=RESTART_WINDOW, metavar="SECONDS")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["slow", "ingest", "restart", "baseline"],
        help="leave out a phase (repeatable)",
    )
    parser.add_argument(
        "--ingest-seconds", type=float, default=None, help="length of each ingest run"
    )
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep work files here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--timeout", type=float, default=None, help="overall limit, seconds")
    parser.add_argument(
        "--concurrency", type=int, default=200, help="handshakes in flight per client process"
    )
    parser.add_argument(
        "--client-nice",
        type=int,
        default=CLIENT_NICE,
        help="CPU priority the client processes give up (nice increment; default %(default)s):"
        " the homes they stand for are other machines, whose work must not starve the bridge",
    )
    parser.add_argument(
        "--profile",
        choices=["cpu", "memory", "gc", "freeze"],
        default=None,
        help="run the bridge under cProfile (fan-out rounds), tracemalloc (connecting homes), a"
        " garbage-collector pause log (gc), or that log plus gc.freeze() once all homes are"
        " connected (freeze: an experiment, not the bridge as shipped); reports land in"
        " <workdir>/profile; profiled figures are not the bridge's",
    )
    parser.add_argument(
        "--profile-window",
        choices=["connect", "fanout", "ingest"],
        default=None,
        help="the phase a cpu or memory profile covers (default: memory connect, cpu fanout)",
    )
    return parser


def parse_options(argv: list[str] | None) -> Options:
    """Command line to options, with --quick defaults and the file-descriptor ceiling."""
    args = _parser().parse_args(argv)
    homes = args.homes or (500 if args.quick else 5000)
    requested = homes
    limit = raise_file_limit()
    if homes + FD_RESERVE > limit:
        homes = limit - FD_RESERVE
    if homes < 2:
        raise SystemExit("scripts/bench: --homes must be at least 2")
    rounds = args.rounds or (3 if args.quick else 20)
    clients = args.clients or max(1, min(4, -(-homes // 2500)))
    timeout = args.timeout or (180.0 if args.quick else 600.0 + homes * 0.03)
    return Options(
        homes=homes,
        homes_requested=requested,
        rounds=rounds,
        clients=clients,
        restart_homes=args.restart_homes,
        restart_signals=args.restart_signals or (2 if args.quick else 5),
        restart_window=args.restart_window,
        ingest_seconds=args.ingest_seconds or (3.0 if args.quick else 60.0),
        slow_fraction=0.01,
        output=args.output,
        workdir=args.workdir,
        keep=args.keep,
        timeout=timeout,
        profile=args.profile,
        profile_window=args.profile_window or ("connect" if args.profile == "memory" else "fanout"),
        phases=frozenset({"slow", "ingest", "restart", "baseline"} - set(args.skip)),
        concurrency=args.concurrency,
        client_nice=args.client_nice,
        quick=args.quick,
    )


@contextlib.asynccontextmanager
async def _workdir(options: Options) -> AsyncIterator[Path]:
    if options.workdir is not None:
        path = options.workdir.resolve()
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="smart-community-bench-"))
    try:
        yield path
    finally:
        if not options.keep:
            shutil.rmtree(path, ignore_errors=True)


async def run(options: Options) -> dict[str, Any]:
    """Run the benchmark and write the results file; returns the results."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    # Ctrl-C and SIGTERM cancel the run, whose cleanup then stops every process it started
    # (also when the shell started the benchmark with SIGINT ignored, as for background jobs).
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    async with _workdir(options) as workdir:
        bench = Bench(options, workdir)
        try:
            async with asyncio.timeout(options.timeout):
                results = await bench.run()
        except TimeoutError as err:
            raise BenchError(
                f"the benchmark did not finish within {options.timeout:.0f} s"
            ) from err
        finally:
            await bench.close()
    if options.homes != options.homes_requested:
        results["note_homes"] = (
            f"{options.homes_requested} homes requested; the bridge's file-descriptor limit"
            f" (RLIMIT_NOFILE hard {raise_file_limit()}) allows {options.homes}"
        )
    results.update(
        {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine_cores": os.cpu_count(),
            "machine_memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "commit": git_commit(),
            "bridge_module": str(Path(bridge_homes.__file__).parent),
            "platform": platform.platform(),
            "bridge_config": "defaults (heartbeat 30 s, home_send_buffer_kb 256), grid poll 60 s",
            "client_nice": options.client_nice,
        }
    )
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 when the benchmark ran, whatever the figures)."""
    options = parse_options(argv)
    if options.homes != options.homes_requested:
        print(
            f"scripts/bench: {options.homes_requested} homes need more file descriptors than the"
            f" limit allows; running {options.homes}",
            file=sys.stderr,
        )
    try:
        results = asyncio.run(run(options))
    except BenchError as err:
        print(f"scripts/bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt, asyncio.CancelledError:
        print("scripts/bench: interrupted; every process stopped", file=sys.stderr)
        return 130
    print(
        f"\nBridge benchmark: {results['homes']} homes, {results['rounds']} rounds,"
        f" {results['machine_cores']} cores, Python {results['python']}"
    )
    print(report.table(results))
    print(
        f"\nverification: {results['verification']}"
        f" ({results['client_frames']} frames, {results['client_signature_checks']}"
        " signature checks)"
    )
    for note in ("ingest_note", "loop_lag_note"):
        if note in results:
            print(f"{note.removesuffix('_note').replace('_', ' ')}: {results[note]}")
    if "note_homes" in results:
        print(f"note: {results['note_homes']}")
    print(f"results: {options.output}")
    return 0
