from pathlib import Path

import pytest

from tritonforge.errors import ConfigError
from tritonforge.loadtests.plots import (
    CurvePoint,
    pareto_front,
    plot_latency_throughput,
    plot_pareto,
    plot_run_history,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _points() -> list[CurvePoint]:
    return [
        CurvePoint(label="a", throughput_rps=100, p50_ms=1, p95_ms=2, p99_ms=3, passed=True),
        CurvePoint(label="b", throughput_rps=200, p50_ms=1, p95_ms=3, p99_ms=5, passed=True),
        CurvePoint(label="c", throughput_rps=150, p50_ms=2, p95_ms=6, p99_ms=9, passed=False),  # beaten by b
        CurvePoint(label="d", throughput_rps=300, p50_ms=5, p95_ms=30, p99_ms=80, passed=False),
    ]


def test_pareto_front_keeps_only_unbeaten_points():
    assert [p.label for p in pareto_front(_points())] == ["a", "b", "d"]


def test_plots_write_png_files(tmp_path: Path):
    for path in (
        plot_latency_throughput(_points(), tmp_path / "curve.png", title="t", slo_p99_ms=50),
        plot_pareto(_points(), tmp_path / "sub" / "pareto.png", title="t", slo_p99_ms=50, best="b"),
    ):
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["curve.png", "pareto.png", "sub"]  # no temp files left


def test_run_history_plot_reads_locusts_aggregated_rows(tmp_path: Path):
    history = tmp_path / "stats_history.csv"
    history.write_text(
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,95%,99%\n"
        "1000,4,,Aggregated,0,0,N/A,N/A,N/A\n"
        "1001,4,INFER,digits,900,0,1,2,3\n"
        "1001,4,,Aggregated,900,0,1,2,3\n"
        "1002,4,,Aggregated,950,1,1,2,4\n"
    )
    assert plot_run_history(history, tmp_path / "history.png", title="t").read_bytes().startswith(PNG_MAGIC)


def test_empty_inputs_are_clear_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="no measured points"):
        plot_pareto([], tmp_path / "x.png", title="t")
    empty = tmp_path / "empty.csv"
    empty.write_text("Timestamp,Name,Requests/s\n")
    with pytest.raises(ConfigError, match="--csv-full-history"):
        plot_run_history(empty, tmp_path / "y.png", title="t")
