"""PNG plots for load tests, capacity searches and the tuner, drawn with matplotlib's Agg backend (no display).

    plot_latency_throughput(points, Path("runs/capacity/curve.png"), title="digits", slo_p99_ms=50)
    plot_pareto(trials, Path("runs/tune/pareto.png"), title="digits tuning", slo_p99_ms=50, best="t7")
    plot_run_history(Path("runs/demo/locust_stats_history.csv"), Path("runs/demo/history.png"), title="digits")

SREs read a latency-throughput curve to see the knee (where the tail takes off) and a Pareto plot to see which
configurations are worth having (no other is both faster and tighter). Each function writes its PNG atomically and
returns the path.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonforge._atomic import atomic_output
from tritonforge.errors import ConfigError

_PASS_COLOR = "tab:green"
_FAIL_COLOR = "tab:red"
_NEUTRAL_COLOR = "tab:blue"


@dataclass(frozen=True, kw_only=True)
class CurvePoint:
    """One measured load level or configuration.

    Attributes:
        label: what was measured, e.g. "400 rps" or a trial id.
        throughput_rps: achieved requests (or items) per second.
        p50_ms: median latency.
        p95_ms: 95th percentile latency.
        p99_ms: 99th percentile latency.
        passed: whether it met its SLO (None: not judged).
    """

    label: str
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    passed: bool | None = None


def _figure(rows: int = 1) -> tuple[Any, Any]:
    """A new figure with `rows` stacked axes sharing the x axis (one axes object when rows == 1)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt.subplots(rows, 1, figsize=(8, 5 if rows == 1 else 6), dpi=110, sharex=True)


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as tmp:
            figure.savefig(tmp, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _color(passed: bool | None) -> str:
    return _NEUTRAL_COLOR if passed is None else _PASS_COLOR if passed else _FAIL_COLOR


def _slo_line(axes: Any, slo_p99_ms: float | None) -> None:
    if slo_p99_ms is not None:
        axes.axhline(slo_p99_ms, color="gray", linestyle="--", linewidth=1, label=f"SLO p99 {slo_p99_ms:g} ms")


def plot_latency_throughput(
    points: Sequence[CurvePoint], path: Path, *, title: str, slo_p99_ms: float | None = None
) -> Path:
    """Draw p50/p95/p99 against achieved throughput, in the order measured (rising load), marking SLO verdicts.

    Raises:
        ConfigError: no points.
    """
    if not points:
        raise ConfigError("nothing to plot: no measured points")
    figure, axes = _figure()
    x = [p.throughput_rps for p in points]
    for name, style in (("p50_ms", ":"), ("p95_ms", "--"), ("p99_ms", "-")):
        axes.plot(x, [getattr(p, name) for p in points], style, marker="o", markersize=3, label=name.replace("_ms", ""))
    axes.scatter(x, [p.p99_ms for p in points], c=[_color(p.passed) for p in points], zorder=3, s=30)
    _slo_line(axes, slo_p99_ms)
    axes.set_xlabel("achieved throughput (requests/s)")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return _save(figure, path)


def pareto_front(points: Sequence[CurvePoint]) -> list[CurvePoint]:
    """Return the points no other point beats on both throughput (higher) and p99 (lower), by rising throughput."""
    front = [
        p
        for p in points
        if not any(
            (q.throughput_rps >= p.throughput_rps and q.p99_ms <= p.p99_ms)
            and (q.throughput_rps > p.throughput_rps or q.p99_ms < p.p99_ms)
            for q in points
        )
    ]
    return sorted(front, key=lambda p: p.throughput_rps)


def plot_pareto(
    points: Sequence[CurvePoint],
    path: Path,
    *,
    title: str,
    slo_p99_ms: float | None = None,
    best: str | None = None,
) -> Path:
    """Scatter every configuration's throughput against its p99, draw the Pareto front, and ring the chosen one.

    Raises:
        ConfigError: no points.
    """
    if not points:
        raise ConfigError("nothing to plot: no measured points")
    figure, axes = _figure()
    axes.scatter(
        [p.throughput_rps for p in points], [p.p99_ms for p in points], c=[_color(p.passed) for p in points], s=25
    )
    front = pareto_front(points)
    axes.plot([p.throughput_rps for p in front], [p.p99_ms for p in front], "-", color="black", label="Pareto front")
    for point in points:
        axes.annotate(point.label, (point.throughput_rps, point.p99_ms), fontsize=7, alpha=0.7)
    chosen = [p for p in points if p.label == best]
    if chosen:
        axes.scatter(
            [chosen[0].throughput_rps], [chosen[0].p99_ms], s=160, facecolors="none", edgecolors="black",
            linewidths=2, label=f"chosen: {best}",
        )  # fmt: skip
    _slo_line(axes, slo_p99_ms)
    axes.set_xlabel("throughput (requests/s)")
    axes.set_ylabel("p99 latency (ms)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _history_rows(history_csv: Path) -> list[dict[str, str]]:
    try:
        with history_csv.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]
    except OSError as exc:
        raise ConfigError(f"cannot read Locust's stats history {history_csv}: {exc}") from exc
    if not rows:
        raise ConfigError(f"{history_csv} has no 'Aggregated' rows; run Locust with --csv-full-history")
    return rows


def _number(row: dict[str, str], key: str) -> float:
    try:
        return float(row.get(key) or "nan")
    except ValueError:  # Locust writes "N/A" before the first response
        return float("nan")


def plot_run_history(history_csv: Path, path: Path, *, title: str) -> Path:
    """Draw a run over time from Locust's `*_stats_history.csv`: requests/s on top, p50/p95/p99 below.

    Raises:
        ConfigError: the file is missing or holds no aggregated rows.
    """
    rows = _history_rows(history_csv)
    start = _number(rows[0], "Timestamp")
    seconds = [_number(row, "Timestamp") - start for row in rows]
    figure, (rate_axes, latency_axes) = _figure(rows=2)
    rate_axes.plot(seconds, [_number(row, "Requests/s") for row in rows], color=_NEUTRAL_COLOR)
    rate_axes.plot(seconds, [_number(row, "Failures/s") for row in rows], color=_FAIL_COLOR, label="failures/s")
    rate_axes.set_ylabel("requests/s")
    rate_axes.set_title(title)
    rate_axes.grid(True, alpha=0.3)
    for column, style in (("50%", ":"), ("95%", "--"), ("99%", "-")):
        latency_axes.plot(seconds, [_number(row, column) for row in rows], style, label=f"p{column.rstrip('%')}")
    latency_axes.set_xlabel("seconds since start")
    latency_axes.set_ylabel("latency (ms)")
    latency_axes.grid(True, alpha=0.3)
    latency_axes.legend()
    return _save(figure, path)
