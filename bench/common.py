"""Pieces the benchmark's processes share: limits, the control channel, the home's backoff."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import random
import resource
import signal
import socket
import sys
from typing import Any

# Mirrors the Home Assistant integration's reconnect_delay (coordinator.py): exponential from
# 1 s, with jitter in the upper half. The integration caps at 5 min; the benchmark at 30 s.
RECONNECT_BASE = 1.0
RECONNECT_CAP = 30.0

# Homes per source address: bind(addr, 0) draws from half the ephemeral range (about 14,000
# ports on a default Linux), so a few thousand per address leaves room for reconnect storms.
HOMES_PER_SOURCE = 2000
FIRST_SOURCE = 10  # 127.0.0.10, 127.0.0.11, ...


def reconnect_delay(failures: int, cap: float = RECONNECT_CAP) -> float:
    """Seconds to wait after ``failures`` failed connections (0 after a lost connection)."""
    ceiling = min(cap, RECONNECT_BASE * 2 ** min(failures, 16))
    return random.uniform(ceiling / 2, ceiling)


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1_048_576
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (used as preexec_fn)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def source_address(index: int) -> str:
    """The loopback source address of home number ``index`` (127.0.0.10 for the first 2,000)."""
    return f"127.0.0.{FIRST_SOURCE + index // HOMES_PER_SOURCE}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def stdin_reader() -> asyncio.StreamReader:
    """This process's stdin as an asyncio stream (the control channel's commands)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def emit(message: dict[str, Any]) -> None:
    """Write one control-channel message (a JSON line) to stdout."""
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()
