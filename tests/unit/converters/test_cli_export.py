from __future__ import annotations

from pathlib import Path

import pytest
import torch
import typer
from converter_models import tiny_cnn
from typer.testing import CliRunner

from tritonforge.cli.export import export
from tritonforge.errors import ConfigError, ParityError


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("export")(export)
    app.command("other")(lambda: None)  # two commands, so "export" stays a subcommand as in the real CLI
    return app


def test_export_command_prints_version_and_parity_table_when_the_gate_passes(app: typer.Typer, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save(tiny_cnn().state_dict(), weights)
    args = ["export", "converter_models:tiny_cnn", "--input", "image:1x8x8:float32", "--output", "logits"]
    args += ["--weights", str(weights), "--repository", str(tmp_path / "repo"), "--name", "digits"]

    result = CliRunner().invoke(app, [*args, "--max-batch-size", "4", "--instances", "2"])

    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'repo' / 'digits' / '1'}" in result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["output", "batch", "max", "abs", "max", "rel", "result"]
    assert lines[2].split()[:2] == ["logits", "1"] and lines[3].split()[:2] == ["logits", "4"]
    config = (tmp_path / "repo" / "digits" / "config.pbtxt").read_text()
    assert "max_batch_size: 4" in config and "count: 2" in config


def test_export_command_names_the_model_after_its_module_when_no_name_is_given(
    app: typer.Typer, tmp_path: Path
) -> None:
    args = ["export", "converter_models:tiny_cnn", "-i", "image:1x8x8", "-r", str(tmp_path / "repo")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "repo" / "converter_models" / "1" / "model.onnx").is_file()


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (["-i", "image:1x8"], ConfigError, "example inputs"),
        (["-i", "image/1x8x8"], ConfigError, "must look like NAME:SHAPE[:DTYPE[:LO..HI]]"),
        (["-i", "image:1x8x8", "--opset", "12"], ConfigError, "opset 12"),
    ],
)
def test_export_command_fails_with_config_error_when_arguments_are_wrong(
    app: typer.Typer, tmp_path: Path, extra: list[str], error: type, message: str
) -> None:
    result = CliRunner().invoke(app, ["export", "converter_models:tiny_cnn", "-r", str(tmp_path / "repo"), *extra])
    assert result.exit_code == 1
    assert isinstance(result.exception, error) and message in str(result.exception)
    assert not (tmp_path / "repo").exists()


def test_export_command_fails_with_parity_error_when_the_batch_is_baked_in(app: typer.Typer, tmp_path: Path) -> None:
    args = ["export", "converter_models:baked_batch_cnn", "-i", "image:1x8x8", "-r", str(tmp_path / "repo")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert isinstance(result.exception, ParityError) and "baked into the graph" in str(result.exception)
    assert not (tmp_path / "repo").exists()


def test_export_command_refuses_an_existing_version_unless_overwrite_is_given(app: typer.Typer, tmp_path: Path) -> None:
    args = ["export", "converter_models:tiny_cnn", "-i", "image:1x8x8", "-r", str(tmp_path / "repo"), "--version", "3"]
    assert CliRunner().invoke(app, args).exit_code == 0

    refused = CliRunner().invoke(app, args)
    replaced = CliRunner().invoke(app, [*args, "--overwrite"])

    assert refused.exit_code == 1 and "already exists" in str(refused.exception)
    assert replaced.exit_code == 0, replaced.output
