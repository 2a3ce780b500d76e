"""Figures, their bounds (docs: ARCHITECTURE.md section 6) and the printed table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
import math
from typing import Any

# Telemetry design rate: 20,000 homes each reporting every 10 s; the bound is twice that.
INGEST_BOUND = 2 * 20_000 / 10
NOT_MEASURED_INGEST = "not measured: the bridge stored no reports (no ingest endpoint?)"
NOT_MEASURED_LAG = "not measured: the bridge exposes no event-loop lag at /metrics"
LAG_BOUND_MS = 100.0


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (p99 of 10 values is the largest); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def fanout_bound(homes: int) -> float | None:
    """The fan-out bound for this many homes: 0.5 s up to 5,000, 2 s up to 20,000."""
    if homes <= 5_000:
        return 0.5
    if homes <= 20_000:
        return 2.0
    return None


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table."""

    figure: str
    key: str
    unit: str
    bound: str
    passed: bool | None
    baseline_key: str | None = None


def rows(results: dict[str, Any]) -> list[Row]:
    """The table's lines for a results dictionary."""
    homes = int(results["homes"])
    fan_bound = fanout_bound(homes)

    def at_most(key: str, bound: float | None) -> bool | None:
        value = results.get(key)
        return None if value is None or bound is None else bool(value <= bound)

    def at_least(key: str, bound: float) -> bool | None:
        value = results.get(key)
        return None if value is None else bool(value >= bound)

    bound_text = (
        f"<= {fan_bound:g} s (N {'<= 5,000' if fan_bound == 0.5 else '<= 20,000'})"
        if fan_bound
        else "none above 20,000"
    )
    missing = results.get("fanout_missing") or 0
    fan_pass = at_most("fanout_max_s", fan_bound)
    if missing:
        fan_pass = False
    lag = results.get("loop_lag_p99_ms")
    return [
        Row(
            "fan-out max (last home)",
            "fanout_max_s",
            "s",
            bound_text,
            fan_pass,
            "baseline_fanout_max_s",
        ),
        Row("fan-out p99, all homes", "fanout_p99_s", "s", "", None, "baseline_fanout_p99_s"),
        Row("fan-out p50, all homes", "fanout_p50_s", "s", "", None, "baseline_fanout_p50_s"),
        Row(
            "fan-out per-round max, p50",
            "fanout_round_max_p50_s",
            "s",
            "",
            None,
            "baseline_fanout_round_max_p50_s",
        ),
        Row(
            "fan-out first home, p50",
            "fanout_first_p50_s",
            "s",
            "",
            None,
            "baseline_fanout_first_p50_s",
        ),
        Row(
            "bridge RSS per connected home",
            "rss_per_home_kb",
            "KB",
            "<= 24 KB",
            at_most("rss_per_home_kb", 24.0),
            "baseline_rss_per_home_kb",
        ),
        Row(
            "slow homes (1 %): p99 ratio",
            "slow_homes_p99_ratio",
            "x",
            "<= 1.2",
            at_most("slow_homes_p99_ratio", 1.2),
        ),
        Row("  same, median of round p99s", "slow_homes_round_p99_median_ratio", "x", "", None),
        Row(
            "restart: 99 % caught up after",
            "restart_caught_up_s",
            "s",
            "<= 60 s",
            at_most("restart_caught_up_s", 60.0),
        ),
        Row(
            "restart: caught up within 60 s",
            "restart_caught_up_fraction",
            "",
            ">= 0.99",
            at_least("restart_caught_up_fraction", 0.99),
        ),
        Row("  restart: 99 % reconnected after", "restart_reconnected_99_s", "s", "", None),
        Row(
            "telemetry ingest, most stored",
            "ingest_reports_per_s",
            "/s",
            f">= {INGEST_BOUND:g}/s",
            at_least("ingest_reports_per_s", INGEST_BOUND),
        ),
        Row(
            f"  stored when offered {INGEST_BOUND:g}/s",
            "ingest_paced_stored_per_s",
            "/s",
            "",
            None,
        ),
        Row(
            f"event-loop lag p99 at {INGEST_BOUND:g} reports/s",
            "loop_lag_p99_ms",
            "ms",
            f"<= {LAG_BOUND_MS:g} ms",
            None if lag is None else bool(lag <= LAG_BOUND_MS),
        ),
        Row("  event-loop lag p99, fan-out", "fanout_loop_lag_p99_ms", "ms", "", None),
        Row(
            "  event-loop lag p99, most stored", "ingest_saturated_loop_lag_p99_ms", "ms", "", None
        ),
    ]


def _value(value: Any, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if unit == "":
            return f"{value:.4f}"
        return f"{value:.3f} {unit}" if unit in {"s", "x"} else f"{value:.1f} {unit}"
    return f"{value} {unit}".strip()


def table(results: dict[str, Any]) -> str:
    """The figures, their bounds, PASS/MISS and the baseline beside each, as text."""
    header = ("figure", "value", "bound", "verdict", "baseline")
    lines = []
    for row in rows(results):
        verdict = {True: "PASS", False: "MISS", None: ""}[row.passed]
        if row.bound and row.passed is None:
            verdict = "not measured" if results.get(row.key) is None else ""
        baseline = _value(results.get(row.baseline_key), row.unit) if row.baseline_key else ""
        lines.append(
            (row.figure, _value(results.get(row.key), row.unit), row.bound, verdict, baseline)
        )
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(5)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True))

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(header), rule, *(fmt(cells) for cells in lines)])
