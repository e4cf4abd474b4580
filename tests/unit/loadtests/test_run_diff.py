from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli.report import report
from tritonforge.errors import ConfigError
from tritonforge.loadtests.run_diff import diff_runs, format_diff, load_run


def _summary(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema_version": 1, "model": "digits", "host": "127.0.0.1:8001", "users": 4, "run_time_s": 10,
        "requests": 20000, "failures": 0, "error_ratio": 0.0, "rps": 2000.0, "p50_ms": 2.0, "p95_ms": 4.0,
        "p99_ms": 8.0, "passed": True, "generator_cpu_percent": 60.0, "started_at": "2025-01-01T00:00:00+00:00",
        "files": {"log": "/tmp/locust.log"},
        "slo": [
            {"name": "p99_ms", "objective": 10.0, "comparison": "<=", "unit": "ms", "measured": 8.0, "passed": True},
        ],
    }  # fmt: skip
    document.update(changes)
    return document


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _rows(a: Path, b: Path) -> dict[str, tuple[str, str, str]]:
    return {row.name: (row.a, row.b, row.change) for row in diff_runs(a, b).rows}


def test_two_summaries_side_by_side_with_ratios_verdicts_and_new_keys(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", _summary())
    b = _write(
        tmp_path / "b.json",
        _summary(
            schema_version=2, rps=3000.0, p99_ms=12.0, passed=False, late_requests=25,
            server={"queue_ms": 0.5, "compute_infer_ms": 1.2, "others": [{"model": "x"}]},
            late={"late": 7, "unsent": 0}, generator={"saturated": False, "processes": [{"pid": 1}]},
            slo=[{"name": "p99_ms", "objective": 10.0, "comparison": "<=", "unit": "ms", "measured": 12.0,
                  "passed": False}],
        ),
    )  # fmt: skip

    rows = _rows(a, b)

    assert rows["rps"] == ("2000.0", "3000.0", "x1.50")
    assert rows["p99_ms"] == ("8.0", "12.0", "x1.50")
    assert rows["passed"] == ("PASS", "FAIL", "changed")
    assert rows["failures"] == ("0", "0", "same")
    assert rows["late_requests"] == ("-", "25", "")  # the older summary lacks the key
    assert rows["server.queue_ms"] == ("-", "0.5", "")
    assert rows["slo p99_ms <= 10.0 ms"] == ("8.0 PASS", "12.0 FAIL", "x1.50")
    assert rows["late.late"] == ("-", "7", "")
    assert rows["generator.saturated"] == ("-", "false", "")
    assert "files.log" not in rows and "started_at" not in rows
    assert "server.others" not in rows and "generator.processes" not in rows
    names = list(rows)
    assert names[:9] == [
        "passed",
        "requests",
        "failures",
        "error_ratio",
        "rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "late.late",
    ]


def test_difference_is_shown_where_a_is_zero(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", _summary())
    b = _write(tmp_path / "b.json", _summary(failures=3))

    assert _rows(a, b)["failures"] == ("0", "3", "+3")


def test_difference_is_shown_where_a_ratio_of_signed_values_would_mislead(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", _summary(server={"overhead_p50_ms": 1.5}))
    b = _write(tmp_path / "b.json", _summary(server={"overhead_p50_ms": -0.05}))

    assert _rows(a, b)["server.overhead_p50_ms"] == ("1.5", "-0.05", "-1.55")


def test_format_diff_names_both_files_and_aligns_the_table(tmp_path: Path) -> None:
    old = _summary()
    del old["schema_version"]
    a = _write(tmp_path / "a.json", old)
    b = _write(tmp_path / "b.json", _summary(p50_ms=3.0))

    text = format_diff(diff_runs(a, b))

    lines = text.splitlines()
    assert lines[0].startswith(f"A: {a} (loadtest: digits @ 127.0.0.1:8001")
    assert "no schema_version" in lines[0]
    assert "schema 1" in lines[1]
    assert lines[3].split() == ["metric", "A", "B", "B", "vs", "A"]
    p50 = next(line for line in lines if line.startswith("p50_ms "))
    assert p50.split() == ["p50_ms", "2.0", "3.0", "x1.50"]


def test_capacity_reports_compare_their_knees(tmp_path: Path) -> None:
    capacity = {"schema_version": 1, "kind": "capacity", "model": "digits", "knee_rps": 800.0, "found": True,
                "knee_p99_ms": 9.0, "steps": [{"target_rps": 100.0}], "curve": [100.0]}  # fmt: skip
    a = _write(tmp_path / "a.json", capacity)
    b = _write(tmp_path / "b.json", {**capacity, "knee_rps": 1200.0})

    rows = _rows(a, b)

    assert list(rows)[:2] == ["found", "knee_rps"]
    assert rows["knee_rps"] == ("800.0", "1200.0", "x1.50")
    assert "steps" not in rows and "curve" not in rows


def test_a_load_test_and_a_capacity_report_are_not_compared(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", _summary())
    b = _write(tmp_path / "b.json", {"kind": "capacity", "knee_rps": 5.0})

    with pytest.raises(ConfigError, match="cannot compare a loadtest summary"):
        diff_runs(a, b)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "holds a JSON list"),
        ('{"hello": 1}', "is not a tritonforge run summary"),
    ],
)
def test_bad_files_are_one_line_config_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")

    with pytest.raises(ConfigError, match=message) as info:
        load_run(path)
    assert "\n" not in str(info.value)


def test_report_command_prints_the_table_and_fails_cleanly_on_a_missing_file(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(report)
    a = _write(tmp_path / "a.json", _summary())
    b = _write(tmp_path / "b.json", _summary(rps=1000.0))

    ok = CliRunner().invoke(app, [str(a), str(b)])
    assert ok.exit_code == 0, ok.output
    assert "x0.50" in ok.output

    missing = CliRunner().invoke(app, [str(a), str(tmp_path / "nope.json")])
    assert missing.exit_code != 0
    assert isinstance(missing.exception, ConfigError)
