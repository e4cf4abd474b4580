"""The open loop (arrival-rate mode) against the real embedded tritonserver serving `digits`: every request is counted,
late starts among them, an unreachable rate fails its SLO, and the server's statistics agree with the client's count.
No assertion depends on the host's speed."""

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


def test_open_loop_counts_every_request_and_the_server_agrees_when_the_rate_is_modest(
    app: typer.Typer, triton_server: Any, tmp_path: Path
) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  max_error_ratio: 0.0\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["--model", "digits", "--url", triton_server.grpc_url, "--rate", "200", "--arrival", "poisson"]
    args += ["--run-time-s", str(RUN_TIME_S), "--metrics-url", triton_server.metrics_url, "--slo", str(slo)]

    result = CliRunner().invoke(app, [*args, "--out", str(out)])

    # How many requests start late or are never sent depends on the host's speed; the bookkeeping does not (it is
    # tested exactly on a fake clock in tests/unit/loadtests/test_loadtest_triton_user.py): every request sent is
    # counted once, late ones among them, and the server finished the same requests.
    assert result.exit_code == 0, result.output
    summary = _summary(out)
    assert (summary["mode"], summary["arrival"], summary["rate_rps"]) == ("open", "poisson", 200.0)
    late = summary["late"]
    assert late["sent"] == summary["requests"] > 0
    assert 0 <= late["woke_late"] <= late["late"] <= late["sent"]
    assert late["threshold_ms"] == 2.0
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


def test_open_loop_counts_late_and_unsent_starts_and_fails_the_slo_when_the_rate_is_out_of_reach(
    app: typer.Typer, triton_server: Any, tmp_path: Path
) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  p99_ms: 50\n", encoding="utf-8")
    out = tmp_path / "open"
    # One user, one request at a time, asked for 100,000 a second (10 us each, gRPC round trip included): out of
    # reach of any host, so requests start late, some never, and latency measured from the schedule grows.
    args = ["--model", "digits", "--url", triton_server.grpc_url, "--users", "1", "--rate", "100000"]

    result = CliRunner().invoke(app, [*args, "--run-time-s", str(RUN_TIME_S), "--slo", str(slo), "--out", str(out)])

    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SLOViolationError)
    summary = _summary(out)
    late = summary["late"]
    assert late["sent"] == summary["requests"] > 0
    assert late["late"] > 0 and late["unsent"] > 0
    assert summary["server"]["count_check"]["agree"] is True
    assert "never sent" in result.output


def test_a_paced_closed_loop_never_sends_more_than_its_schedule(triton_server: Any, tmp_path: Path) -> None:
    config = LoadTestConfig(
        host=triton_server.grpc_url, model="digits", output_dir=tmp_path, users=4, pace_rps=100.0,
        run_time_s=RUN_TIME_S, plot=False,
    )  # fmt: skip
    result = run_loadtest(config)
    assert result.mode == "closed" and result.late is None
    # Each user has 25 slots a second and skips the ones it missed: a slow host sends fewer, no host sends more
    # than the slots of the run and its stop grace (plus the one each user may be in).
    slots = 4 * (25 * (RUN_TIME_S + config.stop_timeout_s) + 1)
    assert 0 < result.measurement.requests <= slots
