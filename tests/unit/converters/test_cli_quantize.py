"""`tritonforge quantize` on the real digits model: the table, the exit status, and options that do not fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner
from variant_figures import measure_with

from tritonforge.cli.quantize import build_settings, quantize
from tritonforge.converters import variants
from tritonforge.converters.quality_gate import QualityGateError
from tritonforge.converters.quantize import CalibrationMethod, QuantMethod
from tritonforge.errors import ConfigError
from tritonforge.examples.digits import load_split


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("quantize")(quantize)
    app.command("other")(lambda: None)  # two commands, so "quantize" stays a subcommand as in the real CLI
    return app


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory: pytest.TempPathFactory, trained_digits: Path) -> tuple[Path, Path, Path]:
    """A digits repository, eval.npz (test images + labels) and calib.npz (training images)."""
    root = tmp_path_factory.mktemp("digits")
    split = load_split()
    np.savez(root / "eval.npz", image=split.x_test, labels=split.y_test)
    np.savez(root / "calib.npz", image=split.x_train[:128])
    return trained_digits, root / "eval.npz", root / "calib.npz"


def test_quantize_prints_a_row_per_variant_and_writes_the_passing_ones(
    app: typer.Typer, digits_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import shutil

    repo, eval_npz, calib_npz = digits_files
    shutil.copytree(repo, tmp_path / "repo")
    args = ["quantize", "digits", "-r", str(tmp_path / "repo"), "--eval-set", str(eval_npz), "--metric", "accuracy"]
    args += ["--speed-seconds", "0.02"]
    args += ["-m", "int8-dynamic", "-m", "int8-static", "--calibration-set", str(calib_npz), "--calibrate", "entropy"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["variant", "gate", "result"] and "batch 16" in lines[0]
    assert lines[1].startswith("fp32 (source)")
    assert lines[2].startswith("int8-dynamic ") and " pass " in lines[2]
    assert lines[3].startswith("int8-static-entropy ")
    assert lines[3].endswith(str(tmp_path / "repo" / "digits_int8_static_entropy" / "1"))
    assert (tmp_path / "repo" / "digits_int8_static_entropy" / "1" / "model.onnx").is_file()


def test_quantize_exits_with_a_quality_gate_error_when_nothing_passes(
    app: typer.Typer, digits_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import shutil

    repo, eval_npz, _ = digits_files
    shutil.copytree(repo, tmp_path / "repo")
    args = ["quantize", "digits", "-r", str(tmp_path / "repo"), "--eval-set", str(eval_npz), "--metric", "max-abs"]
    args += ["--speed-seconds", "0.02"]
    result = CliRunner().invoke(app, [*args, "--max-abs-error", "1e-7"])
    assert isinstance(result.exception, QualityGateError)
    assert "nothing was written" in str(result.exception) and "max abs error" in str(result.exception)
    assert "FAIL: max abs error" in result.output and "not written" in result.output
    assert not (tmp_path / "repo" / "digits_int8_dynamic").exists()


def test_build_settings_applies_options_to_the_methods_they_fit() -> None:
    settings = build_settings(
        [QuantMethod.INT8_DYNAMIC, QuantMethod.INT8_STATIC, QuantMethod.FP16],
        per_channel=True, calibrate=CalibrationMethod.PERCENTILE, percentile=99.9,
    )  # fmt: skip
    assert [s.label for s in settings] == ["int8-dynamic-pc", "int8-static-percentile-p99.9-pc", "fp16"]


@pytest.mark.parametrize(
    ("methods", "kwargs", "message"),
    [
        ([QuantMethod.INT8_DYNAMIC], {"calibrate": CalibrationMethod.ENTROPY}, "add --method int8-static"),
        ([QuantMethod.FP16], {"per_channel": True}, "apply to INT8 methods"),
    ],
)
def test_build_settings_refuses_options_no_method_can_use(
    methods: list[QuantMethod], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_settings(methods, **kwargs)  # type: ignore[arg-type]


def test_quantize_table_and_report_show_the_fp32_baseline_beside_every_variant(
    app: typer.Typer, digits_files: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    repo, eval_npz, _ = digits_files
    shutil.copytree(repo, tmp_path / "repo")
    monkeypatch.setattr(variants, "measure_models", measure_with(speedup=[0.5, 0.8]))  # real sizes: INT8 is smaller
    args = ["quantize", "digits", "-r", str(tmp_path / "repo"), "--eval-set", str(eval_npz), "--metric", "accuracy"]
    result = CliRunner().invoke(app, [*args, "--report", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    header, fp32, variant = result.output.splitlines()[:3]
    assert header.split()[:5] == ["variant", "gate", "result", "batch", "1"]
    fp32_size = (repo / "digits" / "1" / "model.onnx").stat().st_size
    assert fp32.startswith("fp32 (source)") and " baseline " in fp32 and f"{fp32_size / 1e6:.2f} MB 1.00x" in fp32
    assert "1.000 ms 1,000/s 1.00x" in fp32 and "acc 0.9" in fp32
    assert variant.startswith("int8-dynamic ") and "2.000 ms 500/s 0.50x" in variant and " pass " in variant
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fp32"]["file_size"] == fp32_size and report["fp32"]["accuracy"] > 0.9
    assert report["variants"][0]["merit"]["smaller"] is True and report["written"] == ["digits_int8_dynamic"]


def test_quantize_refuses_a_variant_slower_and_larger_than_fp32_unless_forced(
    app: typer.Typer, digits_files: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    repo, eval_npz, _ = digits_files
    shutil.copytree(repo, tmp_path / "repo")
    monkeypatch.setattr(variants, "measure_models", measure_with(speedup=0.8, size_ratio=1.2))
    args = ["quantize", "digits", "-r", str(tmp_path / "repo"), "--eval-set", str(eval_npz), "--metric", "accuracy"]
    refused = CliRunner().invoke(app, args)
    assert isinstance(refused.exception, QualityGateError)
    assert "REFUSED: neither smaller nor faster than FP32" in str(refused.exception)
    assert "force it (--force)" in str(refused.exception) and "not written" in refused.output
    assert not (tmp_path / "repo" / "digits_int8_dynamic").exists()
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "pass (WARNING: neither smaller nor faster than FP32 (size 1.20x FP32" in forced.output
    assert (tmp_path / "repo" / "digits_int8_dynamic" / "1" / "model.onnx").is_file()
