from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    written = str(tmp_path / "repo" / "digits" / "1")
    assert result.output.splitlines()[-1] == f"wrote {written}" and result.output.count(written) == 1
    lines = result.output.splitlines()
    assert lines[0].split() == ["output", "batch", "max", "abs", "max", "rel", "result"]
    assert lines[1].split()[:2] == ["logits", "1"] and lines[2].split()[:2] == ["logits", "4"]
    assert "digits version 1 (onnxruntime_onnx)" in result.output
    assert "[batch, 1, 8, 8]" in result.output and "[batch, 10]" in result.output
    assert "max batch size 4" in result.output
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


def test_export_command_shows_each_axis_size_and_a_symbolic_signature_when_inputs_share_an_axis(
    app: typer.Typer, tmp_path: Path
) -> None:
    args = ["export", "converter_models:token_pool", "-r", str(tmp_path / "repo"), "--name", "pool"]
    args += ["--input", "attention_mask:seq:int64:0..1", "--input", "input_ids:seq:int64:0..99", "--axis", "seq=2,5,40"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["output", "batch", "seq", "max", "abs", "max", "rel", "result"]
    assert {line.split()[2] for line in lines[1:7]} == {"2", "5", "40"}
    assert "axis seq: sizes 2, 5, 40; traced at 5 (the typical size)" in result.output
    assert result.output.count("[batch, seq]") == 2


def test_export_command_traces_on_a_sample_file(app: typer.Typer, tmp_path: Path) -> None:
    ids = np.array([[5, 6, 7, 0], [1, 2, 3, 4], [9, 9, 0, 0]], dtype=np.int64)
    np.savez(tmp_path / "tokens.npz", input_ids=ids, attention_mask=(ids > 0).astype(np.int64))
    args = ["export", "converter_models:token_pool", "-r", str(tmp_path / "repo"), "--name", "pool"]
    args += ["-i", "input_ids:seq:int64", "-i", "attention_mask:seq:int64", "--sample", str(tmp_path / "tokens.npz")]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "traced at 4" in result.output
    manifest = json.loads((tmp_path / "repo" / "pool" / "1" / "manifest.json").read_text())
    assert manifest["parity"]["axes"]["seq"] == {"sizes": [1, 4, 33], "typical": 4}


def test_export_command_refuses_a_new_signature_unless_asked(app: typer.Typer, tmp_path: Path) -> None:
    base = ["export", "converter_models:tiny_cnn", "-i", "image:1x8x8", "-r", str(tmp_path / "repo"), "-n", "m"]
    assert CliRunner().invoke(app, base).exit_code == 0

    refused = CliRunner().invoke(app, [*base, "--max-batch-size", "8"])
    changed = CliRunner().invoke(app, [*base, "--max-batch-size", "8", "--new-signature"])

    assert refused.exit_code == 1 and "clients of 'm' would break" in str(refused.exception)
    assert changed.exit_code == 0, changed.output
    assert "new signature (--new-signature): max_batch_size 64 -> 8" in changed.output


def test_export_command_refuses_a_default_name_taken_by_another_factory(app: typer.Typer, tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    assert (
        CliRunner().invoke(app, ["export", "converter_models:tiny_cnn", "-i", "image:1x8x8", "-r", repo]).exit_code == 0
    )

    other = CliRunner().invoke(app, ["export", "converter_models:baked_batch_cnn", "-i", "image:1x8x8", "-r", repo])

    assert other.exit_code == 1
    assert "exported from converter_models:tiny_cnn, not converter_models:baked_batch_cnn" in str(other.exception)
    assert "--name" in str(other.exception)
