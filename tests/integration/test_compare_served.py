"""`tritonforge compare` end to end: a real gated INT8 variant of digits, served beside FP32 on the embedded Triton."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.examples.digits import DigitsBuild, load_split
from tritonforge.examples.variants import DIGITS_INT8, quantize_digits
from tritonforge.loadtests.compare import compare_variants, format_compare


@pytest.fixture(scope="module")
def repository_with_int8(digits_build: DigitsBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = tmp_path_factory.mktemp("compare") / "repo"
    shutil.copytree(digits_build.exported.model_dir.parent, repository)
    outcome = quantize_digits(repository)
    assert outcome.passed and outcome.written == repository / DIGITS_INT8 / "1"
    return repository


def test_compare_measures_fp32_and_the_int8_variant_side_by_side(repository_with_int8: Path) -> None:
    report = compare_variants(
        repository=repository_with_int8, model="digits", samples={"image": load_split().x_test},
        batch_sizes=(1, 8), concurrency=2, seconds=0.5, rounds=1,
    )  # fmt: skip
    assert [(row.variant.model, row.variant.label) for row in report.rows] == [
        ("digits", "fp32"),
        (DIGITS_INT8, "int8-static-minmax"),
    ]
    reference, variant = report.rows
    assert reference.speedup == {1: 1.0, 8: 1.0}
    for row in report.rows:
        for figures in row.figures.values():
            assert figures.requests > 0 and figures.errors == 0
            assert 0 < figures.p50_ms <= figures.p99_ms
    assert variant.figures[8].items_per_s == pytest.approx(variant.speedup[8] * reference.figures[8].items_per_s)
    assert variant.variant.gate is not None and variant.variant.gate["metric"] == "accuracy"
    assert "acc 98." in format_compare(report)


def test_compare_cli_prints_the_table_and_writes_json(repository_with_int8: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, image=load_split().x_test[:64])
    result = CliRunner().invoke(
        app,
        ["compare", "digits", "--repository", str(repository_with_int8), "--inputs", str(inputs), "-b", "4",
         "--seconds", "0.3", "--rounds", "1", "--concurrency", "1", "--json", str(tmp_path / "report.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "digits_int8 v1 (int8-static-minmax)" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [row["model"] for row in report["rows"]] == ["digits", DIGITS_INT8]


def test_compare_without_fp32_model_is_one_line_error(repository_with_int8: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, image=load_split().x_test[:8])
    result = CliRunner().invoke(
        app, ["compare", "nosuch", "--repository", str(repository_with_int8), "--inputs", str(inputs)]
    )
    assert result.exit_code == 1
    assert "ConfigError: model 'nosuch' has no FP32 version" in result.output
