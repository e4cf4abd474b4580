from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonforge.errors import TritonForgeError
from tritonforge.loadtests.report import (
    SCHEMA_PATH,
    LateTally,
    LoadTestResult,
    ProcessLoad,
    format_table,
    generator_load,
    read_locust_stats,
    write_summary,
)
from tritonforge.loadtests.server_stats import ServerSnapshot, parse_statistics, server_breakdown
from tritonforge.loadtests.slo import Measurement, SLOSpec, evaluate

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "locust"

SUMMARY_KEYS = {
    "schema_version",
    "model",
    "host",
    "users",
    "spawn_rate",
    "run_time_s",
    "warmup_s",
    "batch_size",
    "mode",
    "arrival",
    "rate_rps",
    "requests",
    "failures",
    "error_ratio",
    "rps",
    "mean_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "late",
    "server",
    "generator",
    "slo",
    "passed",
    "machine",
    "versions",
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
    assert measured.mean_ms == pytest.approx(3.8547088083862286)


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


def _open_loop_result() -> LoadTestResult:
    """A result with every optional part filled in: late starts, server breakdown, generator load."""
    measured = read_locust_stats(ASSETS / "digits_stats.csv", name="digits")
    tally = LateTally(threshold_ms=2.0)
    for ms in (0.5, 3.0, 120.0):
        tally.record(ms)
    tally.record_unsent(4)
    stats = {
        "model_stats": [
            {
                "name": "digits",
                "inference_count": "334",
                "execution_count": "100",
                "inference_stats": {
                    "success": {"count": "329", "ns": str(329 * 900_000)},
                    "fail": {"count": "5"},
                    "queue": {"count": "329", "ns": str(329 * 200_000)},
                },
            }
        ]
    }
    server = server_breakdown(
        ServerSnapshot(models={}),
        ServerSnapshot(models=parse_statistics(stats), server_version="2.51.0"),
        model="digits",
        client=measured,
        in_flight=4,
    )
    generator = generator_load(
        [ProcessLoad(role="master", pid=10, cpu_percent=3.0), ProcessLoad(role="worker-1", pid=11, cpu_percent=97.0)],
        total_percent=100.0,
    )
    return LoadTestResult(
        model="digits",
        host="127.0.0.1:8001",
        users=4,
        spawn_rate=100.0,
        run_time_s=5,
        batch_size=1,
        measurement=measured,
        checks=tuple(evaluate(SLOSpec(p99_ms=50.0), measured)),
        locust_version="2.47.0",
        locust_exit_code=0,
        arrival="poisson",
        rate_rps=350.0,
        late=tally.summary(),
        server=server,
        generator=generator,
        machine={"platform": "Linux", "machine": "x86_64", "python": "3.11.9", "cpus": 2},
        versions={"tritonforge": "0.1.0", "locust": "2.47.0", "tritonclient": "2.51.0", "triton_server": "2.51.0"},
        files={"stats_csv": "out/locust_stats.csv"},
    )


def _schema_errors(value: object, schema: dict[str, object], where: str = "$") -> list[str]:
    """The few JSON Schema keywords summary.schema.json uses (jsonschema is not installed here)."""
    errors: list[str] = []
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:  # type: ignore[operator]
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]

        def fits(kind: str) -> bool:
            if kind == "integer":
                return isinstance(value, int) and not isinstance(value, bool)
            if kind == "number":
                return isinstance(value, int | float) and not isinstance(value, bool)
            return isinstance(value, kinds[kind])

        if not any(fits(kind) for kind in allowed):
            errors.append(f"{where}: {value!r} is not {allowed}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        assert isinstance(properties, dict)
        errors += [f"{where}: lacks {key}" for key in schema.get("required", []) if key not in value]  # type: ignore[attr-defined]
        errors += [f"{where}: undocumented key {key}" for key in value if properties and key not in properties]
        for key, item in value.items():
            sub = properties.get(key) or schema.get("additionalProperties")
            if isinstance(sub, dict):
                errors += _schema_errors(item, sub, f"{where}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += _schema_errors(item, schema["items"], f"{where}[{index}]")  # type: ignore[arg-type]
    return errors


@pytest.mark.parametrize("kind", ["closed loop, nothing optional", "open loop, everything"])
def test_summary_follows_its_documented_json_schema(kind: str, tmp_path: Path) -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    if kind.startswith("closed"):
        result = _result(read_locust_stats(ASSETS / "digits_stats.csv", name="digits"), SLOSpec(p99_ms=50.0))
    else:
        result = _open_loop_result()

    summary = json.loads(write_summary(result, tmp_path / "summary.json").read_text(encoding="utf-8"))

    assert _schema_errors(summary, schema) == []
    assert set(summary) == set(schema["required"]) == SUMMARY_KEYS
    assert summary["schema_version"] == 2


def test_schema_check_catches_a_summary_that_breaks_it() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    summary = _open_loop_result().to_dict()
    summary["mode"] = "half-open"
    del summary["server"]["count_check"]["agree"]
    summary["late"]["late"] = "many"

    errors = _schema_errors(summary, schema)

    assert len(errors) == 3, errors


def test_open_loop_summary_reports_late_starts_server_breakdown_and_generator() -> None:
    summary = _open_loop_result().to_dict()

    assert (summary["mode"], summary["arrival"], summary["rate_rps"]) == ("open", "poisson", 350.0)
    assert summary["late"] == {
        "threshold_ms": 2.0, "sent": 3, "late": 2, "unsent": 4, "woke_late": 0,
        "p50_ms": 3.0, "p99_ms": 120.0, "max_ms": 120.0,
    }  # fmt: skip
    assert summary["server"]["model"]["avg_batch"] == 3.34
    assert summary["server"]["count_check"] == {
        "client_requests": 334, "server_requests": 334, "tolerance": 4, "agree": True
    }  # fmt: skip
    assert summary["generator"]["saturated"] is True
    assert summary["versions"]["triton_server"] == "2.51.0"


def test_format_table_prints_late_starts_generator_verdict_and_server_table_when_known() -> None:
    table = format_table(_open_loop_result())

    assert "2 of 3 requests started late (> 2 ms; p50 3 ms, p99 120 ms, max 120 ms), 4 never sent" in table
    assert "generator SATURATED: worker-1 used 97% of one core" in table
    assert "--processes N" in table
    assert "request counts agree: client 334, server 334" in table
    assert table.splitlines()[-1] == "PASS: 1/1 SLOs met"


@pytest.mark.parametrize(
    ("percents", "saturated"),
    [((40.0,), False), ((84.9, 10.0), False), ((85.0,), True), ((2.0, 30.0, 99.0), True), ((), False)],
)
def test_generator_is_saturated_when_any_process_nears_a_full_core(
    percents: tuple[float, ...], saturated: bool
) -> None:
    loads = [ProcessLoad(role=f"worker-{i}", pid=i, cpu_percent=p) for i, p in enumerate(percents)]

    verdict = generator_load(loads, total_percent=sum(percents))

    assert verdict.saturated is saturated
    assert ("SATURATED" in verdict.advice) is saturated
