from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.errors import ConfigError, SLOViolationError
from tritonforge.loadtests import capacity
from tritonforge.loadtests.arrivals import open_loop_users
from tritonforge.loadtests.capacity import (
    CapacityReport,
    StepResult,
    find_capacity,
    format_capacity,
    run_capacity,
    write_capacity,
)
from tritonforge.loadtests.report import LateRequests, LoadTestResult, ProcessLoad, generator_load
from tritonforge.loadtests.runner import LoadTestConfig
from tritonforge.loadtests.slo import Measurement, SLOSpec, evaluate

SLO = SLOSpec(p99_ms=15.0, max_error_ratio=0.01)


def _measure(rate: float, *, achieved: float | None = None, failures: int = 0) -> Measurement:
    """A server whose p99 grows with the rate: 5 ms + 1 ms per 100 req/s, so p99 <= 15 ms up to 1000 req/s."""
    rps = rate if achieved is None else achieved
    requests = max(int(rps * 5), 1)
    return Measurement(
        requests=requests, failures=failures, rps=rps, p50_ms=1 + rate / 1000, p95_ms=3 + rate / 200,
        p99_ms=5 + rate / 100,
    )  # fmt: skip


def _fake(
    cpu: float | None = 40.0, achieved: Callable[[float], float] | None = None
) -> tuple[Callable[[float], StepResult], list[float]]:
    calls: list[float] = []

    def step(rate: float) -> StepResult:
        calls.append(rate)
        m = _measure(rate, achieved=achieved(rate) if achieved else None)
        return StepResult(
            target_rps=rate, achieved_rps=m.rps, requests=m.requests, failures=m.failures, p50_ms=m.p50_ms,
            p95_ms=m.p95_ms, p99_ms=m.p99_ms, checks=tuple(evaluate(SLO, m)), generator_cpu_percent=cpu,
            generator_saturated=None if cpu is None else cpu >= 90,
        )  # fmt: skip

    return step, calls


def test_search_grows_the_rate_then_bisects_to_the_exact_knee() -> None:
    step, calls = _fake()

    report = find_capacity(step, start_rps=100, factor=2, max_rps=10_000, refine_steps=2)

    assert calls == [100, 200, 400, 800, 1600, 1200, 1000]
    assert report.knee_rps == 1000
    assert report.first_failing_rps == 1200
    assert report.found and not report.reached_max
    assert report.knee_step is not None and report.knee_step.p99_ms == 15
    first_failing = report.first_failing_step
    assert first_failing is not None and not first_failing.passed
    assert first_failing.broken == ["p99_ms 17 (objective <= 15 ms)"]
    assert [s.target_rps for s in report.curve] == sorted(calls)


def test_without_refinement_the_knee_is_the_last_passing_geometric_step() -> None:
    step, calls = _fake()

    report = find_capacity(step, start_rps=100, factor=2, max_rps=10_000, refine_steps=0)

    assert calls == [100, 200, 400, 800, 1600]
    assert (report.knee_rps, report.first_failing_rps) == (800, 1600)


def test_first_step_failing_gives_no_knee() -> None:
    step, calls = _fake()

    report = find_capacity(step, start_rps=2000, factor=1.5, max_rps=10_000, refine_steps=3)

    assert calls == [2000]
    assert report.knee_rps is None and not report.found
    assert report.first_failing_rps == 2000
    assert "no knee" in format_capacity(report)


def test_never_failing_stops_at_max_rps_and_says_the_knee_is_higher() -> None:
    step, calls = _fake()

    report = find_capacity(step, start_rps=100, factor=3, max_rps=700, refine_steps=2)

    assert calls == [100, 300, 700]  # 900 is capped to max_rps, tried last
    assert report.knee_rps == 700
    assert report.first_failing_rps is None
    assert report.reached_max
    assert "real knee is higher" in format_capacity(report)


def test_a_step_short_of_its_target_fails_and_names_the_server_when_the_generator_had_cpu_left() -> None:
    step, _ = _fake(cpu=40.0, achieved=lambda rate: min(rate, 450.0))

    report = find_capacity(step, start_rps=100, factor=2, max_rps=10_000, refine_steps=0)

    assert (report.knee_rps, report.first_failing_rps) == (400, 800)
    failing = report.first_failing_step
    assert failing is not None
    assert all(check.passed for check in failing.checks)  # latency was fine: only the rate was missed
    assert failing.shortfall is not None
    assert "achieved 450.0 of 800 req/s" in failing.shortfall
    assert "server could not keep up" in failing.shortfall


def test_a_shortfall_with_a_saturated_generator_blames_the_generator() -> None:
    step, _ = _fake(cpu=98.0, achieved=lambda rate: min(rate, 450.0))

    report = find_capacity(step, start_rps=100, factor=2, max_rps=10_000, refine_steps=0)

    failing = report.first_failing_step
    assert failing is not None and failing.shortfall is not None
    assert "load generator could not keep up" in failing.shortfall
    assert "--processes" in failing.shortfall


def test_a_small_shortfall_within_the_ratio_still_passes() -> None:
    step, _ = _fake(achieved=lambda rate: rate * 0.95)

    report = find_capacity(step, start_rps=100, factor=2, max_rps=400, refine_steps=0, min_achieved_ratio=0.9)

    assert report.knee_rps == 400
    assert all(s.shortfall is None for s in report.steps)


def test_search_accepts_load_test_results_and_reports_progress() -> None:
    seen: list[StepResult] = []

    def step(rate: float) -> LoadTestResult:
        m = _measure(rate)
        return LoadTestResult(
            model="digits", host="127.0.0.1:8001", users=4, spawn_rate=4.0, run_time_s=2, batch_size=1,
            measurement=m, checks=tuple(evaluate(SLO, m)), generator_cpu_percent=30.0,
        )  # fmt: skip

    report = find_capacity(step, start_rps=500, factor=2, max_rps=10_000, refine_steps=1, on_step=seen.append)

    assert [s.target_rps for s in seen] == [500, 1000, 2000, 1500]
    assert report.knee_rps == 1000
    assert seen[0].generator_saturated is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_rps": 0, "max_rps": 10}, "start_rps"),
        ({"start_rps": 100, "max_rps": 10}, "max_rps"),
        ({"start_rps": 10, "max_rps": 100, "factor": 1.0}, "factor"),
        ({"start_rps": 10, "max_rps": 100, "refine_steps": -1}, "refine_steps"),
        ({"start_rps": 10, "max_rps": 100, "min_achieved_ratio": 1.5}, "min_achieved_ratio"),
    ],
)
def test_bad_search_parameters_are_config_errors(kwargs: dict[str, float], message: str) -> None:
    step, calls = _fake()
    with pytest.raises(ConfigError, match=message):
        find_capacity(step, **kwargs)  # type: ignore[arg-type]
    assert calls == []


def test_report_json_and_png_are_written(tmp_path: Path) -> None:
    step, _ = _fake()
    report = find_capacity(step, start_rps=100, factor=2, max_rps=10_000, refine_steps=2)

    written = write_capacity(report, tmp_path / "cap")

    document = json.loads((tmp_path / "cap" / "capacity.json").read_text(encoding="utf-8"))
    assert document["kind"] == "capacity"
    assert document["schema_version"] == 1
    assert document["knee_rps"] == 1000
    assert document["first_failing_rps"] == 1200
    assert document["knee_p99_ms"] == 15
    assert len(document["steps"]) == 7
    assert document["curve"] == [100, 200, 400, 800, 1000, 1200, 1600]
    assert document["steps"][4]["passed"] is False
    assert document["steps"][4]["broken"] == ["p99_ms 21 (objective <= 15 ms)"]
    png = Path(written.files["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "cap").glob(".*.tmp"))


def test_format_capacity_prints_a_row_per_step_and_the_knee_line() -> None:
    step, _ = _fake()
    report = find_capacity(step, start_rps=100, factor=2, max_rps=10_000, refine_steps=2)

    text = format_capacity(report)

    lines = text.splitlines()
    assert lines[0].split()[:2] == ["target", "req/s"]
    assert len([line for line in lines if line.endswith("PASS")]) == 5
    assert lines[-1].startswith("knee: meets its SLO up to 1000 req/s")
    assert "first failing rate 1200 req/s: p99_ms 17" in lines[-1]


def test_run_capacity_steps_the_runner_open_loop_and_judges_min_rps_against_the_knee(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[LoadTestConfig] = []

    def fake_run_loadtest(config: LoadTestConfig) -> LoadTestResult:
        configs.append(config)
        assert config.rate_rps is not None
        m = _measure(config.rate_rps)
        return LoadTestResult(
            model=config.model, host=config.host, users=config.users, spawn_rate=1.0, run_time_s=config.run_time_s,
            batch_size=1, measurement=m, checks=tuple(evaluate(config.slo, m)) if config.slo else (),
            generator_cpu_percent=20.0,
        )  # fmt: skip

    monkeypatch.setattr(capacity, "run_loadtest", fake_run_loadtest)
    template = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path / "runs")
    slo = SLOSpec(p99_ms=15.0, min_rps=300.0)

    report = run_capacity(template, slo, start_rps=100, factor=2, max_rps=10_000, step_s=2, refine_steps=1)

    assert [c.rate_rps for c in configs] == [100, 200, 400, 800, 1600, 1200]
    assert {c.arrival for c in configs} == {"constant"}
    assert [c.users for c in configs] == [open_loop_users(c.rate_rps or 0) for c in configs]
    assert configs[-2].users == 80  # sized to the rate: 50 ms of requests in flight at 1600 req/s
    assert {c.run_time_s for c in configs} == {2}
    assert {c.warmup_s for c in configs} == {1}  # max(1 s, 20 % of 2 s) before each measured step
    assert all(c.slo == SLOSpec(p99_ms=15.0) for c in configs)  # min_rps is judged against the knee instead
    assert configs[0].output_dir == tmp_path / "runs" / "step_01_100rps"
    assert report.knee_rps == 800 and report.first_failing_rps == 1200
    assert report.meets_min_rps is True
    assert report.slo == {"p99_ms": 15.0, "min_rps": 300.0}
    document = json.loads((tmp_path / "runs" / "capacity.json").read_text(encoding="utf-8"))
    assert document["model"] == "digits" and document["step_s"] == 2 and document["warmup_s"] == 1
    assert document["steps"][0]["summary"] == str(tmp_path / "runs" / "step_01_100rps" / "summary.json")


def _fake_loadtest(configs: list[LoadTestConfig]) -> Callable[[LoadTestConfig], LoadTestResult]:
    def fake_run_loadtest(config: LoadTestConfig) -> LoadTestResult:
        configs.append(config)
        m = _measure(config.rate_rps or 0.0)
        return LoadTestResult(
            model=config.model, host=config.host, users=config.users, spawn_rate=1.0, run_time_s=config.run_time_s,
            batch_size=1, measurement=m, checks=tuple(evaluate(config.slo, m)) if config.slo else (),
            warmup_s=config.warmup_s,
        )  # fmt: skip

    return fake_run_loadtest


def test_a_rerun_into_a_folder_that_holds_a_search_is_refused_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[LoadTestConfig] = []
    monkeypatch.setattr(capacity, "run_loadtest", _fake_loadtest(configs))
    template = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path / "runs")
    earlier = tmp_path / "runs" / "step_09_5000rps"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text("{}", encoding="utf-8")

    with pytest.raises(
        ConfigError, match=r"runs already holds a capacity search \(step_09_5000rps\); pass --overwrite"
    ):
        run_capacity(template, SLO, start_rps=100, max_rps=100, step_s=1)

    assert configs == []
    assert (earlier / "summary.json").read_text(encoding="utf-8") == "{}"


def test_overwrite_replaces_an_earlier_search_and_keeps_other_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[LoadTestConfig] = []
    monkeypatch.setattr(capacity, "run_loadtest", _fake_loadtest(configs))
    template = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path / "runs")
    stale = tmp_path / "runs" / "step_09_5000rps"
    stale.mkdir(parents=True)
    (tmp_path / "runs" / "capacity.json").write_text("{}", encoding="utf-8")
    (tmp_path / "runs" / "notes.txt").write_text("mine", encoding="utf-8")

    report = run_capacity(template, SLO, start_rps=100, max_rps=100, step_s=1, overwrite=True)

    assert not stale.exists()  # an earlier search's step is not left to be read as this one's
    assert (tmp_path / "runs" / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert json.loads((tmp_path / "runs" / "capacity.json").read_text(encoding="utf-8"))["knee_rps"] == 100
    assert report.knee_rps == 100


@pytest.mark.parametrize(("step_s", "warmup_s"), [(1, 1), (2, 1), (5, 1), (6, 2), (10, 2), (12, 3), (30, 6)])
def test_the_default_warm_up_is_a_fifth_of_the_step_and_at_least_a_second(step_s: int, warmup_s: int) -> None:
    assert capacity.step_warmup_s(step_s) == warmup_s


def test_an_explicit_warm_up_reaches_every_step_and_zero_turns_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs: list[LoadTestConfig] = []
    monkeypatch.setattr(capacity, "run_loadtest", _fake_loadtest(configs))
    template = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path / "a")

    run_capacity(template, SLO, start_rps=100, factor=2, max_rps=200, step_s=5, warmup_s=3)
    run_capacity(dataclasses.replace(template, output_dir=tmp_path / "b"), SLO, start_rps=100, max_rps=100, step_s=5,
                 warmup_s=0)  # fmt: skip

    assert [(c.warmup_s, c.run_time_s, c.locust_run_time_s) for c in configs] == [(3, 5, 8), (3, 5, 8), (0, 5, 5)]
    with pytest.raises(ConfigError, match="warmup_s must be a whole number of seconds of at least 0, got -1"):
        run_capacity(template, SLO, start_rps=100, max_rps=100, step_s=5, warmup_s=-1)


def test_a_step_is_judged_on_its_steady_part_when_the_ramp_up_fell_short() -> None:
    # Over the whole step (1 s warm-up ramping 0 -> 800 req/s, then 2 s at 800) the client made 400 + 1600
    # requests in 3 s: 667 req/s, under 90 % of 800. The runner's measurement is the steady part only: 1600 in 2 s.
    steady = Measurement(requests=1600, failures=0, rps=800.0, p50_ms=2.0, p95_ms=4.0, p99_ms=6.0)
    result = LoadTestResult(
        model="digits", host="127.0.0.1:8001", users=40, spawn_rate=40.0, run_time_s=2, warmup_s=1, batch_size=1,
        measurement=steady, checks=tuple(evaluate(SLO, steady)), arrival="constant", rate_rps=800.0,
        late=LateRequests(threshold_ms=2, sent=2000, late=30, unsent=0, p50_ms=5.0, p99_ms=9.0, max_ms=9.0),
        generator=generator_load([ProcessLoad(role="locust", pid=1, cpu_percent=50.0)], total_percent=50.0),
    )  # fmt: skip

    report = find_capacity(lambda rate: result, start_rps=800, max_rps=800)

    (step,) = report.steps
    assert step.achieved_rps == 800.0 and step.requests == 1600
    assert step.shortfall is None and step.passed
    assert report.knee_rps == 800


def test_report_without_steps_that_made_requests_writes_no_png(tmp_path: Path) -> None:
    empty = StepResult(target_rps=100, achieved_rps=0.0, requests=0, failures=0)
    report = find_capacity(lambda rate: empty, start_rps=100, max_rps=200)

    written = write_capacity(report, tmp_path)

    assert not report.found
    assert report.steps[0].broken == ["no request was made"]
    assert "png" not in written.files
    assert isinstance(written, CapacityReport)


def _cli_app(monkeypatch: pytest.MonkeyPatch, start_fails: bool) -> tuple[typer.Typer, list[dict[str, object]]]:
    """The capacity command over a fake search: these tests are about the command line, not Locust."""
    from tritonforge.cli import capacity as capacity_cli

    calls: list[dict[str, object]] = []

    def fake_run_capacity(template: LoadTestConfig, slo: SLOSpec, **kwargs: object) -> CapacityReport:
        calls.append({"template": template, "slo": slo, **kwargs})
        step, _ = _fake()
        start = 2000.0 if start_fails else float(kwargs["start_rps"])  # type: ignore[arg-type]
        on_step = kwargs["on_step"]
        report = find_capacity(step, start_rps=start, factor=2, max_rps=10_000, refine_steps=0, on_step=on_step)  # type: ignore[arg-type]
        return dataclasses.replace(report, model=template.model)

    monkeypatch.setattr(capacity_cli, "run_capacity", fake_run_capacity)
    app = typer.Typer()
    app.command()(capacity_cli.capacity)
    return app, calls


def test_capacity_command_prints_steps_and_knee_and_exits_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    app, calls = _cli_app(monkeypatch, start_fails=False)
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  p99_ms: 15\n", encoding="utf-8")
    args = ["--model", "digits", "--url", "127.0.0.1:8001", "--slo", str(slo), "--start-rps", "100"]

    result = CliRunner().invoke(app, [*args, "--users", "16", "--processes", "2", "--out", str(tmp_path / "o")])

    assert result.exit_code == 0, result.output
    assert "knee: 'digits' meets its SLO up to 800 req/s" in result.output
    template = calls[0]["template"]
    assert isinstance(template, LoadTestConfig)
    assert (template.processes, template.output_dir) == (2, tmp_path / "o")
    assert calls[0]["users"] == 16
    assert calls[0]["slo"] == SLOSpec(p99_ms=15.0)


def test_capacity_command_fails_when_the_first_rate_misses_the_slo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app, _ = _cli_app(monkeypatch, start_fails=True)
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  p99_ms: 15\n", encoding="utf-8")

    result = CliRunner().invoke(app, ["--model", "digits", "--url", "127.0.0.1:8001", "--slo", str(slo)])

    assert result.exit_code == 1
    assert isinstance(result.exception, SLOViolationError)
    assert "no knee" in str(result.exception) and "\n" not in str(result.exception)


def test_a_step_reads_late_requests_and_the_generator_verdict_from_an_open_loop_result() -> None:
    m = _measure(800, achieved=500.0)
    result = LoadTestResult(
        model="digits", host="127.0.0.1:8001", users=4, spawn_rate=4.0, run_time_s=2, batch_size=1, measurement=m,
        checks=tuple(evaluate(SLO, m)), generator_cpu_percent=99.0, arrival="constant", rate_rps=800.0,
        late=LateRequests(threshold_ms=10, sent=1000, late=120, unsent=300, p50_ms=40.0, p99_ms=90.0, max_ms=95.0),
        generator=generator_load([ProcessLoad(role="locust", pid=1, cpu_percent=99.0)], total_percent=99.0),
    )  # fmt: skip

    report = find_capacity(lambda rate: result, start_rps=800, max_rps=800)

    step = report.steps[0]
    assert (step.late_requests, step.unsent_requests, step.generator_saturated) == (120, 300, True)
    assert step.shortfall is not None
    assert "120 requests late, 300 never sent" in step.shortfall
    assert "load generator could not keep up" in step.shortfall
