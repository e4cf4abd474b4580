"""A repository model's signature: config.pbtxt's names, dtypes and dims, with the ONNX graph's symbolic dim names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from converter_models import FP32, INT64, identity_onnx
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.converters.repo_signature import repository_signature
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config, write_config
from tritonforge.errors import ConfigError
from tritonforge.signature import SignatureTensor


def _text_model(repository: Path, *, versions: tuple[int, ...] = (1,), max_batch_size: int = 8) -> Path:
    """A two-input model whose inputs share one symbolic `seq` axis, as a BERT-like export has it."""
    spec = ModelConfigSpec(
        name="bert",
        max_batch_size=max_batch_size,
        inputs=[
            TensorSpec(name="input_ids", shape=(-1,), dtype="int64"),
            TensorSpec(name="attention_mask", shape=(-1,), dtype="int64"),
        ],
        outputs=[
            TensorSpec(name="hidden", shape=(-1,), dtype="int64"),
            TensorSpec(name="mask_out", shape=(-1,), dtype="int64"),
        ],
    )
    model_dir = repository / "bert"
    for version in versions:
        identity_onnx(
            model_dir / str(version) / "model.onnx",
            inputs=[("input_ids", ["batch", "seq"], INT64), ("attention_mask", ["batch", "seq"], INT64)],
            outputs=[("hidden", ["batch", "seq"], INT64), ("mask_out", ["batch", f"seq_v{version}"], INT64)],
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    write_config(build_model_config(spec), model_dir / "config.pbtxt")
    return model_dir


def test_repository_signature_names_shared_symbolic_dims_from_the_graph(tmp_path: Path) -> None:
    _text_model(tmp_path)

    signature = repository_signature(tmp_path, "bert")

    assert signature.inputs == (
        SignatureTensor(name="input_ids", dtype="int64", dims=("seq",)),
        SignatureTensor(name="attention_mask", dtype="int64", dims=("seq",)),
    )
    assert signature.outputs[0].dims == ("seq",)
    assert (signature.max_batch_size, signature.version, signature.platform) == (8, "1", "onnxruntime_onnx")


def test_repository_signature_reads_the_version_asked_for_or_the_latest(tmp_path: Path) -> None:
    _text_model(tmp_path, versions=(1, 2))

    assert repository_signature(tmp_path, "bert").outputs[1].dims == ("seq_v2",)
    assert repository_signature(tmp_path, "bert", version=1).outputs[1].dims == ("seq_v1",)
    with pytest.raises(ConfigError, match=r"has no version 3 \(versions: \[1, 2\]\)"):
        repository_signature(tmp_path, "bert", version=3)


def test_repository_signature_keeps_minus_one_when_there_is_no_graph(tmp_path: Path) -> None:
    model_dir = _text_model(tmp_path)
    (model_dir / "1" / "model.onnx").unlink()

    signature = repository_signature(tmp_path, "bert")

    assert signature.inputs[0].dims == (-1,)


def test_repository_signature_names_known_models_when_model_is_missing(tmp_path: Path) -> None:
    _text_model(tmp_path)
    with pytest.raises(ConfigError, match=r"no model 'bart' in .* \(models: bert\)"):
        repository_signature(tmp_path, "bart")


def test_model_signature_cli_prints_table_with_batch_and_symbolic_dims(tmp_path: Path) -> None:
    _text_model(tmp_path)

    result = CliRunner().invoke(app, ["model", "signature", "bert", "--repository", str(tmp_path)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "bert version 1 (onnxruntime_onnx)"
    assert ["input", "input_ids", "int64", "[batch,", "seq]"] in [line.split() for line in lines]
    assert ["input", "attention_mask", "int64", "[batch,", "seq]"] in [line.split() for line in lines]
    assert lines[-1].startswith("max batch size 8")


def test_model_signature_cli_prints_json_for_scripts(tmp_path: Path) -> None:
    _text_model(tmp_path, max_batch_size=4)

    result = CliRunner().invoke(app, ["model", "signature", "bert", "-r", str(tmp_path), "--format", "json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["max_batch_size"] == 4
    assert document["inputs"][0] == {"name": "input_ids", "dtype": "int64", "dims": ["seq"], "shape": ["batch", "seq"]}


def test_model_signature_cli_fails_in_one_line_when_model_or_version_is_wrong(tmp_path: Path) -> None:
    _text_model(tmp_path)
    runner = CliRunner()

    missing = runner.invoke(app, ["model", "signature", "bart", "-r", str(tmp_path)])
    bad_version = runner.invoke(app, ["model", "signature", "bert", "-r", str(tmp_path), "--version", "latest"])

    assert missing.exit_code == 1 and "ConfigError: no model 'bart'" in missing.output
    assert bad_version.exit_code == 1 and "must be a version number" in bad_version.output


def test_model_signature_cli_shows_unbatched_model_without_batch_axis(tmp_path: Path) -> None:
    spec = ModelConfigSpec(
        name="fixed",
        max_batch_size=0,
        inputs=[TensorSpec(name="x", shape=(2, 4), dtype="float32")],
        outputs=[TensorSpec(name="y", shape=(2, 4), dtype="float32")],
    )
    identity_onnx(tmp_path / "fixed" / "1" / "model.onnx", inputs=[("x", [2, 4], FP32)], outputs=[("y", [2, 4], FP32)])
    write_config(build_model_config(spec), tmp_path / "fixed" / "config.pbtxt")

    result = CliRunner().invoke(app, ["model", "signature", "fixed", "-r", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert ["input", "x", "float32", "[2,", "4]"] in [line.split() for line in result.output.splitlines()]
    assert "max batch size 0 (no batching" in result.output
