from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonforge.errors import TritonForgeError
from tritonforge.loadtests.report import LoadTestResult, format_table, read_locust_stats, write_summary
from tritonforge.loadtests.slo import Measurement, SLOSpec, evaluate

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "locust"

SUMMARY_KEYS = {
    "schema_version",
    "model",
    "host",
    "users",
    "spawn_rate",
    "run_time_s",
    "batch_size",
    "requests",
    "failures",
    "error_ratio",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "slo",
    "passed",
    "locust_version",
    "locust_exit_code",
    "locust_killed",
    "generator_cpu_percent",
    "started_at",
    "ended_at",
    "wall_s",
    "files",
}


def _result(measurement: Measurement, spec: SLOSpec | None) -> LoadTestResult:
    return LoadTestResult(
        model="digits",
        host="127.0.0.1:8001",
        users=2,
        spawn_rate=2.0,
        run_time_s=2,
        batch_size=1,
        measurement=measurement,
        checks=tuple(evaluate(spec, measurement)) if spec is not None else (),
        locust_version="2.47.0",
        locust_exit_code=0,
    )


def test_read_locust_stats_reads_the_model_row_when_csv_comes_from_locust() -> None:
    measured = read_locust_stats(ASSETS / "digits_stats.csv", name="digits")

    assert measured.requests == 334
    assert measured.failures == 5
    assert measured.rps == pytest.approx(334.2212840332413)
    assert (measured.p50_ms, measured.p95_ms, measured.p99_ms) == (4.0, 5.0, 22.0)
    assert measured.error_ratio == pytest.approx(5 / 334)


def test_read_locust_stats_falls_back_to_aggregated_when_name_has_no_row() -> None:
    measured = read_locust_stats(ASSETS / "digits_stats.csv", name="other-model")

    assert measured.requests == 334
    assert measured.p99_ms == 22.0


def test_read_locust_stats_gives_none_percentiles_when_no_request_was_made() -> None:
    measured = read_locust_stats(ASSETS / "no_requests_stats.csv", name="digits")

    assert measured.requests == 0
    assert (measured.p50_ms, measured.p95_ms, measured.p99_ms) == (None, None, None)
    assert measured.error_ratio is None


def test_read_locust_stats_raises_when_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(TritonForgeError, match="Locust wrote no statistics file"):
        read_locust_stats(tmp_path / "locust_stats.csv", name="digits")


def test_read_locust_stats_raises_when_columns_are_not_locusts(tmp_path: Path) -> None:
    path = tmp_path / "locust_stats.csv"
    path.write_text("Type,Name,Requests\n,Aggregated,5\n", encoding="utf-8")

    with pytest.raises(TritonForgeError, match="not in the expected format"):
        read_locust_stats(path, name="digits")


def test_write_summary_writes_documented_keys_when_slo_is_checked(tmp_path: Path) -> None:
    measured = read_locust_stats(ASSETS / "digits_stats.csv", name="digits")
    result = _result(measured, SLOSpec(p99_ms=50.0, min_rps=100.0))

    path = write_summary(result, tmp_path / "summary.json")

    summary = json.loads(path.read_text(encoding="utf-8"))
    assert set(summary) == SUMMARY_KEYS
    assert summary["requests"] == 334
    assert summary["p99_ms"] == 22.0
    assert summary["passed"] is True
    assert [(c["name"], c["objective"], c["measured"], c["passed"]) for c in summary["slo"]] == [
        ("p99_ms", 50.0, 22.0, True),
        ("min_rps", 100.0, pytest.approx(334.2212840332413), True),
    ]
    assert not (tmp_path / "summary.json.tmp").exists()


def test_result_fails_when_an_objective_is_missed() -> None:
    measured = read_locust_stats(ASSETS / "digits_stats.csv", name="digits")

    result = _result(measured, SLOSpec(p99_ms=10.0, max_error_ratio=0.05))

    assert result.passed is False
    assert [c.name for c in result.missed] == ["p99_ms"]


def test_result_fails_when_no_request_was_made_even_without_slo() -> None:
    measured = read_locust_stats(ASSETS / "no_requests_stats.csv", name="digits")

    result = _result(measured, None)

    assert result.passed is False
    assert "no request was made" in format_table(result)


def test_format_table_shows_each_objective_with_its_verdict_when_one_is_missed() -> None:
    measured = read_locust_stats(ASSETS / "digits_stats.csv", name="digits")
    table = format_table(_result(measured, SLOSpec(p50_ms=10.0, p99_ms=10.0)))

    lines = table.splitlines()
    assert lines[0].split() == ["SLO", "objective", "measured", "result"]
    assert lines[1].split() == ["p50_ms", "<=", "10", "ms", "4", "ms", "PASS"]
    assert lines[2].split() == ["p99_ms", "<=", "10", "ms", "22", "ms", "FAIL"]
    assert "334 requests, 5 failures" in table
    assert lines[-1] == "FAIL: 1/2 SLOs met"
