"""The bridge benchmark still runs end to end: a tiny run, every figure present and well typed.

Only the harness is checked here, never a figure against its bound (timed unit tests are not
allowed; figures come from ``scripts/bench`` alone).
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

REPO = Path(__file__).resolve().parents[2]
NUMBER = (int, float)
FIGURES: dict[str, tuple[type, ...]] = {
    "homes": (int,),
    "fanout_p50_s": NUMBER,
    "fanout_p99_s": NUMBER,
    "fanout_max_s": NUMBER,
    "baseline_fanout_max_s": NUMBER,
    "rss_per_home_kb": NUMBER,
    "slow_homes_p99_ratio": NUMBER,
    "restart_caught_up_s": NUMBER,
    "restart_caught_up_fraction": NUMBER,
    "ingest_reports_per_s": NUMBER,
    "rounds": (int,),
    "machine_cores": (int,),
    "python": (str,),
    "date": (str,),
}


def test_a_tiny_benchmark_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    completed = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "bench",
            "--homes",
            "20",
            "--rounds",
            "2",
            "--restart-signals",
            "1",
            "--restart-window",
            "20",
            "--ingest-seconds",
            "1",
            "--timeout",
            "80",
            "--output",
            str(output),
            "--workdir",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]

    results = json.loads(output.read_text(encoding="utf-8"))
    for key, types in FIGURES.items():
        assert isinstance(results.get(key), types), (key, results.get(key))
    # Sampled every 0.25 s by the bridge: a short run may have no sample.
    assert isinstance(results["loop_lag_p99_ms"], (*NUMBER, type(None)))
    assert results["homes"] == 20
    assert results["rounds"] == 2
    assert results["fanout_missing"] == 0
    assert results["baseline_fanout_missing"] == 0
    assert 0 < results["fanout_p50_s"] <= results["fanout_p99_s"] <= results["fanout_max_s"]
    assert results["slow_homes_p99_ratio"] > 0
    assert results["restart_caught_up_fraction"] == 1.0
    assert results["client_rejected"] == 0
    assert results["ingest_failed"] == {}
    for label in ("fan-out max", "RSS per connected home", "restart", "PASS", "baseline"):
        assert label in completed.stdout
