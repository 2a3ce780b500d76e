"""The bridge's own command line, run under a profiler, to find where it spends time or memory.

``python -m bench.profiled_bridge --mode cpu|memory|gc|freeze --out DIR -- --config FILE serve``

SIGUSR1 opens a window and SIGUSR2 closes it: in ``cpu`` mode the window is profiled with
cProfile (``DIR/cpu-<n>.txt``, functions by own time and by cumulative time); in ``memory`` mode
tracemalloc runs from the start and the window's growth is written by allocation site
(``DIR/memory-<n>.txt``). In ``gc`` mode every garbage-collector pause of 5 ms or more is
appended to ``DIR/gc.txt`` as it happens (monotonic time, generation, milliseconds); ``freeze``
logs the same and calls ``gc.freeze()`` on SIGUSR1 (an experiment: what the fan-out would be
without full collections over every connection's objects). The bridge code is not touched.
Profiled figures are not benchmark figures: the profiler slows the bridge down.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import linecache
from pathlib import Path
import pstats
import signal
import sys
import time
import tracemalloc
from types import FrameType

from .common import raise_file_limit

TOP = 40
GC_REPORTED = 0.005


class Windows:
    """Profiling windows opened and closed by signals."""

    def __init__(self, mode: str, out: Path) -> None:
        """Profile ``mode`` (cpu or memory), writing reports into ``out``."""
        self._mode = mode
        self._out = out
        self._count = 0
        self._profile: cProfile.Profile | None = None
        self._snapshot: tracemalloc.Snapshot | None = None
        if mode == "memory":
            tracemalloc.start(8)
        if mode in {"gc", "freeze"}:
            self._gc_log = (out / "gc.txt").open("a", encoding="utf-8", buffering=1)
            self._gc_started = 0.0
            gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        paused = time.perf_counter() - self._gc_started
        if paused >= GC_REPORTED:
            self._gc_log.write(
                f"{time.monotonic():.6f} gen={info['generation']} {paused * 1000:.1f} ms"
                f" collected={info['collected']}\n"
            )

    def open(self, _signum: int, _frame: FrameType | None) -> None:
        """Start a window."""
        if self._mode == "freeze":
            gc.freeze()
            self._gc_log.write(f"{time.monotonic():.6f} froze {gc.get_freeze_count()} objects\n")
            return
        if self._mode == "gc":
            return
        if self._mode == "cpu":
            self._profile = cProfile.Profile()
            self._profile.enable()
        else:
            self._snapshot = tracemalloc.take_snapshot()

    def close(self, _signum: int, _frame: FrameType | None) -> None:
        """End the window and write its report."""
        if self._mode in {"gc", "freeze"}:
            return
        self._count += 1
        path = self._out / f"{self._mode}-{self._count}.txt"
        if self._mode == "cpu" and self._profile is not None:
            self._profile.disable()
            text = io.StringIO()
            stats = pstats.Stats(self._profile, stream=text)
            stats.sort_stats("tottime").print_stats(TOP)
            stats.sort_stats("cumulative").print_stats(TOP)
            path.write_text(text.getvalue(), encoding="utf-8")
            self._profile = None
        elif self._mode == "memory" and self._snapshot is not None:
            path.write_text(_memory_report(self._snapshot), encoding="utf-8")
            self._snapshot = None


def _memory_report(before: tracemalloc.Snapshot) -> str:
    after = tracemalloc.take_snapshot()
    ignore = [tracemalloc.Filter(inclusive=False, filename_pattern=tracemalloc.__file__)]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    lines = []
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    lines.append(f"traced growth in the window: {total / 1024:.0f} KiB\n")
    lines.append("== by file")
    lines.extend(str(stat) for stat in after.compare_to(before, "filename")[:TOP])
    lines.append("\n== by line")
    for stat in after.compare_to(before, "lineno")[:TOP]:
        frame = stat.traceback[0]
        source = linecache.getline(frame.filename, frame.lineno).strip()
        lines.append(f"{stat}\n    {source}")
    lines.append("\n== by traceback (largest 15)")
    for stat in after.compare_to(before, "traceback")[:15]:
        lines.append(f"{stat.size_diff / 1024:.0f} KiB in {stat.count_diff} blocks")
        lines.extend(f"    {line}" for line in stat.traceback.format(limit=8))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point; arguments after ``--`` go to the bridge's command line."""
    parser = argparse.ArgumentParser(prog="bench.profiled_bridge", description=__doc__)
    parser.add_argument("--mode", choices=["cpu", "memory", "gc", "freeze"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("bridge_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    bridge_args = args.bridge_args[1:] if args.bridge_args[:1] == ["--"] else args.bridge_args
    raise_file_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    windows = Windows(args.mode, args.out)
    signal.signal(signal.SIGUSR1, windows.open)
    signal.signal(signal.SIGUSR2, windows.close)
    from smart_community_bridge.cli import main as bridge_main  # noqa: PLC0415 - after tracemalloc

    return bridge_main(bridge_args)


if __name__ == "__main__":
    sys.exit(main())
