"""A served model seen from the CLI: `model signature --url` and `infer` on a model with a float and an int output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config, write_config
from tritonforge.serving.launcher import EmbeddedTriton

MODEL = "scorer"


def _scorer(repository: Path) -> Path:
    """scores = x (float32 [batch, 4]) and label = argmax(x) (int64 [batch, 1]): a score and a class-id output."""
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["scores"]),
            helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=1),
        ],
        MODEL,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch", 1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (repository / MODEL / "1").mkdir(parents=True)
    onnx.save(model, str(repository / MODEL / "1" / "model.onnx"))
    spec = ModelConfigSpec(
        name=MODEL,
        max_batch_size=4,
        inputs=[TensorSpec(name="x", shape=(4,), dtype="float32")],
        outputs=[
            TensorSpec(name="scores", shape=(4,), dtype="float32"),
            TensorSpec(name="label", shape=(1,), dtype="int64"),
        ],
    )
    write_config(build_model_config(spec), repository / MODEL / "config.pbtxt")
    return repository


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    root = tmp_path_factory.mktemp("scorer")
    triton = EmbeddedTriton(
        repository=_scorer(root / "repo"), log_path=root / "tritonserver.log", startup_timeout_s=120
    )
    triton.start()
    try:
        yield triton
    finally:
        triton.stop()


def test_model_signature_cli_shows_served_inputs_and_outputs(server: EmbeddedTriton) -> None:
    result = CliRunner().invoke(app, ["model", "signature", MODEL, "--url", server.grpc_url])

    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()]
    assert ["input", "x", "float32", "[batch,", "4]"] in rows
    assert ["output", "scores", "float32", "[batch,", "4]"] in rows
    assert ["output", "label", "int64", "[batch,", "1]"] in rows
    assert "max batch size 4" in result.output


def test_infer_cli_shows_class_id_output_as_values_and_scores_with_argmax(
    server: EmbeddedTriton, tmp_path: Path
) -> None:
    batch = np.array([[0.1, 0.9, 0.0, 0.0], [0.0, 0.0, 0.2, 0.7]], np.float32)
    np.save(tmp_path / "x.npy", batch)

    result = CliRunner().invoke(app, ["infer", "-m", MODEL, "-i", f"x={tmp_path / 'x.npy'}", "--url", server.grpc_url])

    assert result.exit_code == 0, result.output
    scores, label = result.output.split("label:")
    assert "argmax" in scores
    assert label.splitlines()[1:] == ["  item  values", "     0  1", "     1  3"]
