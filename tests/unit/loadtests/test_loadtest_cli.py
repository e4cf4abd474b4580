from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli import loadtest as loadtest_cli
from tritonforge.errors import ConfigError, SLOViolationError
from tritonforge.loadtests.report import LateTally, LoadTestResult, ProcessLoad, generator_load
from tritonforge.loadtests.runner import LoadTestConfig, ProcessOutcome
from tritonforge.loadtests.slo import Measurement, SLOSpec, evaluate

MEASURED = Measurement(requests=5000, failures=0, rps=500.0, p50_ms=2.0, p95_ms=4.0, p99_ms=7.0)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(loadtest_cli.loadtest)
    return app


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[LoadTestConfig]:
    """Replace the load test itself: these tests are about the command line, not Locust."""
    configs: list[LoadTestConfig] = []

    def fake_run_loadtest(config: LoadTestConfig) -> LoadTestResult:
        configs.append(config)
        return LoadTestResult(
            model=config.model,
            host=config.host,
            users=config.users,
            spawn_rate=float(config.users),
            run_time_s=config.run_time_s,
            batch_size=config.batch_size,
            measurement=MEASURED,
            checks=tuple(evaluate(config.slo, MEASURED)) if config.slo else (),
        )

    monkeypatch.setattr(loadtest_cli, "run_loadtest", fake_run_loadtest)
    return configs


def _slo(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_loadtest_exits_zero_and_prints_the_table_when_every_slo_is_met(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    slo = _slo(tmp_path, "digits:\n  p99_ms: 50\n  min_rps: 100\n")

    result = CliRunner().invoke(
        app, ["--model", "digits", "--url", "127.0.0.1:8001", "--slo", str(slo), "--out", str(tmp_path / "out")]
    )

    assert result.exit_code == 0, result.output
    assert "p99_ms" in result.output and "PASS: 2/2 SLOs met" in result.output
    assert runs[0].slo == SLOSpec(p99_ms=50.0, min_rps=100.0)
    assert runs[0].output_dir == tmp_path / "out"


def test_loadtest_exits_one_naming_the_missed_slo_when_an_objective_is_missed(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    slo = _slo(tmp_path, "digits:\n  p99_ms: 0.001\n  max_error_ratio: 0.01\n")

    result = CliRunner().invoke(app, ["--model", "digits", "--slo", str(slo), "--out", str(tmp_path / "out")])

    assert result.exit_code == 1
    assert isinstance(result.exception, SLOViolationError)
    assert "missed its SLO: p99_ms" in str(result.exception)
    assert "FAIL" in result.output  # the table is printed before the error


def test_loadtest_passes_options_into_the_config_when_given(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    args = ["--model", "digits", "--url", "grpc://127.0.0.5:8001", "--users", "8", "--spawn-rate", "2"]
    args += [
        "--run-time-s",
        "30",
        "--batch-size",
        "4",
        "--processes",
        "2",
        "--ready-timeout-s",
        "5",
        "--out",
        str(tmp_path),
    ]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    config = runs[0]
    assert (config.host, config.users, config.spawn_rate, config.run_time_s) == ("127.0.0.5:8001", 8, 2.0, 30)
    assert (config.batch_size, config.processes, config.slo, config.ready_timeout_s) == (4, 2, None, 5.0)


def test_loadtest_writes_to_a_folder_named_after_the_model_when_out_is_not_given(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["--model", "digits"])

    assert result.exit_code == 0, result.output
    assert runs[0].output_dir == Path("loadtest_results") / "digits"
    assert runs[0].host == "127.0.0.1:8001"


def test_loadtest_rejects_slo_file_when_it_has_no_entry_for_the_model(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    slo = _slo(tmp_path, "minilm:\n  p99_ms: 50\n")

    result = CliRunner().invoke(app, ["--model", "digits", "--slo", str(slo)])

    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)
    assert "has no objectives for 'digits'; it covers ['minilm']" in str(result.exception)
    assert runs == []


def test_loadtest_rejects_url_and_embedded_when_both_are_given(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["--model", "digits", "--url", "127.0.0.1:8001", "--embedded", str(tmp_path)])

    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)
    assert "not both" in str(result.exception)
    assert runs == []


def test_loadtest_runs_an_open_loop_when_a_rate_is_given(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    args = ["--model", "digits", "--rate", "200", "--arrival", "constant", "--late-threshold-ms", "5"]
    args += ["--metrics-url", "http://127.0.0.1:8002/metrics", "--out", str(tmp_path)]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    config = runs[0]
    assert (config.arrival, config.rate_rps, config.late_threshold_ms) == ("constant", 200.0, 5.0)
    assert config.users == 10  # derived from the rate: room for 50 ms of latency at 200 req/s
    assert config.metrics_url == "http://127.0.0.1:8002/metrics"


def test_loadtest_keeps_users_and_defaults_to_poisson_when_only_rate_and_users_are_given(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["--model", "digits", "--rate", "50", "--users", "3", "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert (runs[0].arrival, runs[0].users) == ("poisson", 3)


def test_loadtest_rejects_arrival_when_no_rate_is_given(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["--model", "digits", "--arrival", "poisson", "--out", str(tmp_path)])

    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)
    assert "needs a rate: add --rate" in str(result.exception)
    assert runs == []


def test_loadtest_runs_as_master_when_workers_are_expected(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path
) -> None:
    args = ["--model", "digits", "--expect-workers", "3", "--master-bind-host", "0.0.0.0", "--master-bind-port", "6000"]

    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert (runs[0].expect_workers, runs[0].master_bind_host, runs[0].master_bind_port) == (3, "0.0.0.0", 6000)


def test_loadtest_runs_a_worker_and_no_load_test_when_a_master_host_is_given(
    app: typer.Typer, runs: list[LoadTestConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers: list[LoadTestConfig] = []

    def fake_worker(config: LoadTestConfig) -> ProcessOutcome:
        workers.append(config)
        return ProcessOutcome(returncode=0, killed=False, wall_s=12.0, cpu_percent=40.0)

    monkeypatch.setattr(loadtest_cli, "run_locust_worker", fake_worker)
    args = ["--model", "digits", "--url", "10.0.0.9:8001", "--master-host", "10.0.0.5", "--master-port", "6000"]

    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert runs == []
    assert (workers[0].master_host, workers[0].master_port, workers[0].host) == ("10.0.0.5", 6000, "10.0.0.9:8001")
    assert "worker done" in result.output


def test_loadtest_prints_late_starts_and_the_generator_verdict_when_the_generator_saturates(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_run_loadtest(config: LoadTestConfig) -> LoadTestResult:
        tally = LateTally(threshold_ms=config.late_threshold_ms)
        for ms in (1.0, 30.0):
            tally.record(ms)
        return LoadTestResult(
            model=config.model, host=config.host, users=config.users, spawn_rate=100.0, run_time_s=config.run_time_s,
            batch_size=1, measurement=MEASURED, arrival=config.arrival, rate_rps=config.rate_rps, late=tally.summary(),
            generator=generator_load([ProcessLoad(role="locust", pid=1, cpu_percent=96.0)], total_percent=96.0),
        )  # fmt: skip

    monkeypatch.setattr(loadtest_cli, "run_loadtest", fake_run_loadtest)

    result = CliRunner().invoke(app, ["--model", "digits", "--rate", "5000", "--out", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "1 of 2 requests started late" in result.output
    assert "generator SATURATED: locust used 96% of one core" in result.output
    assert "--processes N" in result.output
