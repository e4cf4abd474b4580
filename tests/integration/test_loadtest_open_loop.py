"""The open loop (arrival-rate mode) against the real embedded tritonserver serving `digits`: the rate holds, late
starts are counted, latency runs from the schedule, and the server's statistics agree with the client's count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli.loadtest import loadtest
from tritonforge.errors import SLOViolationError
from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest

pytestmark = pytest.mark.integration

RUN_TIME_S = 5


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(loadtest)
    return app


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_open_loop_holds_its_rate_and_the_server_agrees_when_the_rate_is_modest(
    app: typer.Typer, triton_server: Any, tmp_path: Path
) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  max_error_ratio: 0.0\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["--model", "digits", "--url", triton_server.grpc_url, "--rate", "200", "--arrival", "poisson"]
    args += ["--run-time-s", str(RUN_TIME_S), "--metrics-url", triton_server.metrics_url, "--slo", str(slo)]

    result = CliRunner().invoke(app, [*args, "--out", str(out)])

    assert result.exit_code == 0, result.output
    summary = _summary(out)
    assert (summary["mode"], summary["arrival"], summary["rate_rps"]) == ("open", "poisson", 200.0)
    assert summary["rps"] == pytest.approx(200.0, rel=0.10)
    late = summary["late"]
    assert late["sent"] == summary["requests"]
    # Few late starts: on a quiet machine none; this one is shared, so a stall may delay a handful.
    assert late["late"] <= 0.25 * late["sent"], late
    assert late["unsent"] <= 0.02 * late["sent"], late
    server = summary["server"]
    assert server["count_check"]["agree"] is True, server["count_check"]
    assert server["model"]["success"] + server["model"]["fail"] == pytest.approx(summary["requests"], abs=10)
    assert server["model"]["avg_batch"] >= 1.0
    for phase in ("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us", "request_us"):
        assert server["model"][phase] > 0, phase
    assert server["model"]["request_us"] / 1000 < summary["mean_ms"]  # the client's view includes the server's
    assert server["metrics"]["agree"] is True  # the Prometheus endpoint tells the same story
    assert "request counts agree" in result.output
    assert "open loop, poisson arrivals at 200 req/s" in result.output


def test_open_loop_counts_late_starts_and_shows_the_latency_a_closed_loop_hides_when_the_rate_is_too_high(
    app: typer.Typer, triton_server: Any, tmp_path: Path
) -> None:
    closed = run_loadtest(
        LoadTestConfig(
            host=triton_server.grpc_url, model="digits", output_dir=tmp_path / "closed", users=1, run_time_s=RUN_TIME_S
        )
    )
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  p99_ms: 50\n", encoding="utf-8")
    out = tmp_path / "open"
    args = ["--model", "digits", "--url", triton_server.grpc_url, "--users", "1", "--rate", "5000"]

    result = CliRunner().invoke(app, [*args, "--run-time-s", str(RUN_TIME_S), "--slo", str(slo), "--out", str(out)])

    # One user cannot start 5,000 requests a second: most start late, many never; measured from the schedule,
    # the latency grows through the run and the SLO fails, where the closed loop's p99 looked fine.
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SLOViolationError)
    summary = _summary(out)
    assert summary["late"]["late"] > 0.5 * summary["requests"]
    assert summary["late"]["unsent"] > 0
    assert summary["late"]["max_ms"] > 100
    assert closed.measurement.p99_ms is not None
    assert summary["p99_ms"] > 5 * closed.measurement.p99_ms
    assert summary["server"]["count_check"]["agree"] is True
    assert "never sent" in result.output


def test_a_paced_closed_loop_holds_a_modest_rate(triton_server: Any, tmp_path: Path) -> None:
    result = run_loadtest(
        LoadTestConfig(
            host=triton_server.grpc_url, model="digits", output_dir=tmp_path, users=4, pace_rps=100.0,
            run_time_s=RUN_TIME_S, plot=False,
        )
    )  # fmt: skip
    assert result.mode == "closed" and result.late is None
    assert result.measurement.rps == pytest.approx(100.0, rel=0.15)
