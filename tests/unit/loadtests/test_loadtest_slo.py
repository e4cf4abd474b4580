from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tritonforge.errors import ConfigError
from tritonforge.loadtests.slo import Comparison, Measurement, SLOSpec, evaluate, load_slo_file

REPO_ROOT = Path(__file__).resolve().parents[3]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _measurement(**overrides: object) -> Measurement:
    values: dict[str, object] = {
        "requests": 1000,
        "failures": 1,
        "rps": 250.0,
        "p50_ms": 2.0,
        "p95_ms": 5.0,
        "p99_ms": 9.0,
    }
    values.update(overrides)
    return Measurement(**values)  # type: ignore[arg-type]


def test_load_slo_file_reads_each_model_when_file_is_valid(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "digits:\n  p50_ms: 10\n  p99_ms: 50\n  max_error_ratio: 0.001\n  min_rps: 100\nminilm:\n  p95_ms: 12.5\n",
    )

    specs = load_slo_file(path)

    assert specs == {
        "digits": SLOSpec(p50_ms=10.0, p99_ms=50.0, max_error_ratio=0.001, min_rps=100.0),
        "minilm": SLOSpec(p95_ms=12.5),
    }


def test_load_slo_file_accepts_the_example_file_when_read_from_the_repository() -> None:
    specs = load_slo_file(REPO_ROOT / "slo" / "digits.yaml")

    assert specs["digits"].p99_ms == 50.0
    assert specs["digits"].max_error_ratio == 0.001
    assert specs["digits"].min_rps == 100.0


def test_load_slo_file_names_file_and_key_when_key_is_unknown(tmp_path: Path) -> None:
    path = _write(tmp_path, "digits:\n  p99_ms: 50\n  p999_ms: 80\n")

    with pytest.raises(ConfigError, match=r"digits\.p999_ms is not a known objective") as info:
        load_slo_file(path)

    assert str(path) in str(info.value)
    assert "p99_ms" in str(info.value)  # the allowed names are listed


def test_load_slo_file_names_file_and_key_when_value_is_negative(tmp_path: Path) -> None:
    path = _write(tmp_path, "digits:\n  min_rps: -5\n")

    with pytest.raises(ConfigError, match=r"digits\.min_rps.*must not be negative, got -5") as info:
        load_slo_file(path)

    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("p99_ms: fast", "must be a finite number, got 'fast'"),
        ("p99_ms: true", "must be a finite number, got True"),
        ("p99_ms: .nan", "must be a finite number"),
        ("p99_ms: 0", "must be above 0 ms"),
        ("max_error_ratio: 5", "ratio between 0 and 1"),
    ],
)
def test_load_slo_file_rejects_value_when_it_is_not_a_usable_objective(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, f"digits:\n  {line}\n")

    with pytest.raises(ConfigError, match=message):
        load_slo_file(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_load_slo_file_says_it_is_empty_when_file_has_no_objectives(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError, match="is empty"):
        load_slo_file(path)


def test_load_slo_file_rejects_model_when_it_has_no_objectives(tmp_path: Path) -> None:
    path = _write(tmp_path, "digits:\n")

    with pytest.raises(ConfigError, match="'digits' must map objective names to numbers"):
        load_slo_file(path)


def test_load_slo_file_rejects_document_when_it_is_a_list(tmp_path: Path) -> None:
    path = _write(tmp_path, "- p99_ms: 50\n")

    with pytest.raises(ConfigError, match="must be a mapping of model name to objectives, not list"):
        load_slo_file(path)


def test_load_slo_file_reports_yaml_error_when_syntax_is_broken(tmp_path: Path) -> None:
    path = _write(tmp_path, "digits: [p99_ms: 50\n")

    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_slo_file(path)


def test_load_slo_file_names_the_path_when_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_slo_file(tmp_path / "missing.yaml")


def test_slo_spec_rejects_spec_when_no_objective_is_set() -> None:
    with pytest.raises(ConfigError, match="at least one objective"):
        SLOSpec()


def test_slo_spec_objectives_cover_every_field_when_all_are_set() -> None:
    names = [field.name for field in dataclasses.fields(SLOSpec)]
    spec = SLOSpec(**dict.fromkeys(names, 1.0))

    assert list(spec.objectives()) == names


@pytest.mark.parametrize(
    ("spec", "measured", "passed"),
    [
        (SLOSpec(p50_ms=2.0), _measurement(p50_ms=2.0), True),
        (SLOSpec(p50_ms=2.0), _measurement(p50_ms=3.0), False),
        (SLOSpec(p95_ms=5.0), _measurement(p95_ms=4.0), True),
        (SLOSpec(p95_ms=5.0), _measurement(p95_ms=6.0), False),
        (SLOSpec(p99_ms=10.0), _measurement(p99_ms=9.0), True),
        (SLOSpec(p99_ms=0.001), _measurement(p99_ms=1.0), False),
        (SLOSpec(max_error_ratio=0.001), _measurement(requests=1000, failures=1), True),
        (SLOSpec(max_error_ratio=0.001), _measurement(requests=1000, failures=2), False),
        (SLOSpec(min_rps=250.0), _measurement(rps=250.0), True),
        (SLOSpec(min_rps=250.0), _measurement(rps=249.9), False),
    ],
)
def test_evaluate_passes_objective_when_measurement_meets_it(
    spec: SLOSpec, measured: Measurement, passed: bool
) -> None:
    (check,) = evaluate(spec, measured)

    assert check.passed is passed
    assert check.objective == next(iter(spec.objectives().values()))


def test_evaluate_reports_every_objective_in_table_order_when_all_are_set() -> None:
    spec = SLOSpec(min_rps=100.0, p99_ms=50.0, max_error_ratio=0.01, p50_ms=10.0, p95_ms=20.0)

    checks = evaluate(spec, _measurement())

    assert [c.name for c in checks] == ["p50_ms", "p95_ms", "p99_ms", "max_error_ratio", "min_rps"]
    assert [c.comparison for c in checks] == [Comparison.AT_MOST] * 4 + [Comparison.AT_LEAST]
    assert [c.measured for c in checks] == [2.0, 5.0, 9.0, 0.001, 250.0]
    assert all(c.passed for c in checks)


def test_evaluate_fails_objectives_when_no_request_was_made() -> None:
    empty = Measurement(requests=0, failures=0, rps=0.0, p50_ms=None, p95_ms=None, p99_ms=None)

    checks = evaluate(SLOSpec(p99_ms=50.0, max_error_ratio=0.01), empty)

    assert [(c.measured, c.passed) for c in checks] == [(None, False), (None, False)]


def test_slo_check_to_dict_has_the_summary_keys_when_serialized() -> None:
    (check,) = evaluate(SLOSpec(p99_ms=50.0), _measurement(p99_ms=9.0))

    assert check.to_dict() == {
        "name": "p99_ms",
        "objective": 50.0,
        "comparison": "<=",
        "unit": "ms",
        "measured": 9.0,
        "passed": True,
    }
