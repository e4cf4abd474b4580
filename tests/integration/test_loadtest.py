"""The load test against the real embedded tritonserver serving `digits`: the SLO gate, the reports, and a
Locust process that always ends by itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tritonforge import loadtests
from tritonforge.cli.loadtest import loadtest
from tritonforge.errors import ConfigError, SLOViolationError
from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest
from tritonforge.loadtests.slo import SLOSpec

pytestmark = pytest.mark.integration

RUN_TIME_S = 6
# The keys every summary.json has: the schema's required list is their one source.
SUMMARY_KEYS = set(json.loads((Path(loadtests.__file__).parent / "summary.schema.json").read_text())["required"])


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(loadtest)
    return app


def _slo_file(tmp_path: Path, objectives: str) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(f"digits:\n{objectives}", encoding="utf-8")
    return path


def _summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_loadtest_passes_and_ends_by_itself_when_slo_is_lenient(
    app: typer.Typer, triton_server: Any, tmp_path: Path
) -> None:
    # Lenient beyond any host: a p99 of 10 s, one request a second.
    slo = _slo_file(tmp_path, "  p99_ms: 10000\n  max_error_ratio: 0.01\n  min_rps: 1\n")
    out = tmp_path / "out"
    args = ["--model", "digits", "--url", triton_server.grpc_url, "--users", "4", "--run-time-s", str(RUN_TIME_S)]

    result = CliRunner().invoke(app, [*args, "--slo", str(slo), "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "PASS: 3/3 SLOs met" in result.output
    summary = _summary(out)
    assert set(summary) == SUMMARY_KEYS
    assert summary["passed"] is True
    assert summary["requests"] > 0
    assert summary["failures"] == 0
    # Locust (tritonclient's gRPC under gevent) must not hang after its run: it exited by itself, not killed.
    assert summary["locust_killed"] is False
    assert summary["locust_exit_code"] == 0
    assert [check["name"] for check in summary["slo"]] == ["p99_ms", "max_error_ratio", "min_rps"]
    for name in ("locust_stats.csv", "locust_stats_history.csv", "report.html", "locust.log", "request.npz"):
        assert (out / name).is_file(), name
    # The closed loop has no schedule, hence no late starts; the server saw every request the client made.
    assert (summary["mode"], summary["late"]) == ("closed", None)
    assert summary["server"]["count_check"]["agree"] is True
    assert summary["server"]["model"]["success"] == summary["requests"]
    assert summary["versions"]["triton_server"] == "2.51.0"
    assert [p["role"] for p in summary["generator"]["processes"]] == ["locust"]
    assert "request counts agree" in result.output
    assert "generator: OK" in result.output or "generator SATURATED" in result.output

    # A rerun into the same folder is refused (nothing deleted) until --overwrite is given.
    again = CliRunner().invoke(app, [*args, "--slo", str(slo), "--out", str(out)])
    assert isinstance(again.exception, ConfigError), again.output
    assert "already holds a load-test run (summary.json); pass --overwrite" in str(again.exception)
    assert _summary(out) == summary


def test_loadtest_exits_non_zero_when_slo_is_impossible(app: typer.Typer, triton_server: Any, tmp_path: Path) -> None:
    slo = _slo_file(tmp_path, "  p99_ms: 0.001\n")
    out = tmp_path / "out"
    args = ["--model", "digits", "--url", triton_server.grpc_url, "--users", "2", "--run-time-s", "5"]

    result = CliRunner().invoke(app, [*args, "--slo", str(slo), "--out", str(out)])

    assert result.exit_code != 0
    assert isinstance(result.exception, SLOViolationError)
    summary = _summary(out)
    assert summary["passed"] is False
    assert summary["requests"] > 0
    assert summary["slo"][0]["name"] == "p99_ms"
    assert summary["slo"][0]["passed"] is False


def test_run_loadtest_sends_the_sample_when_a_real_request_is_given(
    triton_server: Any, digits_split: Any, tmp_path: Path
) -> None:
    sample = tmp_path / "request.npy"
    np.save(sample, np.ascontiguousarray(digits_split.x_test[:8], dtype=np.float32))
    config = LoadTestConfig(
        host=triton_server.grpc_url,
        model="digits",
        output_dir=tmp_path / "out",
        users=2,
        run_time_s=3,
        sample_path=sample,
        slo=SLOSpec(max_error_ratio=0.0),
    )

    result = run_loadtest(config)

    assert result.passed, result.to_dict()
    assert result.measurement.requests > 0
    assert result.measurement.failures == 0
    with np.load(tmp_path / "out" / "request.npz") as sent:
        np.testing.assert_array_equal(sent["image"], digits_split.x_test[:8])
