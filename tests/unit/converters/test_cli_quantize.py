"""`tritonforge quantize` on the real digits model: the table, the exit status, and options that do not fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli.quantize import build_settings, quantize
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
