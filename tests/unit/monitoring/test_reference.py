import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save_model
from typer.testing import CliRunner

from tritonforge.converters.export import _config_from_graph
from tritonforge.converters.repo_check import check_repository
from tritonforge.converters.repository import add_version
from tritonforge.converters.triton_config import InstanceKind, build_model_config
from tritonforge.errors import ConfigError
from tritonforge.monitoring.drift import TensorKind
from tritonforge.monitoring.reference import (
    REFERENCE_DIR,
    build_reference,
    load_reference,
    stage_reference,
    write_reference,
)
from tritonforge.serving.integrity import verify_repository

WEIGHTS = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)


def _linear_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(WEIGHTS, "w")],
    )
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    onnx_path = _linear_model(tmp_path / "model.onnx")
    spec = _config_from_graph(
        onnx_path,
        model_name="lin",
        max_batch_size=8,
        max_queue_delay_us=100,
        instance_count=1,
        instance_kind=InstanceKind.AUTO,
    )
    repo = tmp_path / "repo"
    add_version(repository=repo, config=build_model_config(spec), model_file=onnx_path, manifest={"source": "test"})
    return repo


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    return x, (x @ WEIGHTS).argmax(axis=1)


def test_stage_reference_keeps_holdout_disjoint_and_bounded(tmp_path: Path) -> None:
    x = np.arange(1000, dtype=np.float32).reshape(-1, 1).repeat(4, axis=1)
    folder = stage_reference(
        tmp_path, inputs={"x": x}, outputs={"logits": x[:, :3]}, max_items=300, holdout_fraction=0.3, seed=1
    )
    with np.load(folder / "reference.npz") as ref, np.load(folder / "holdout.npz") as held:
        kept, holdout = set(ref["input.x"][:, 0]), set(held["input.x"][:, 0])
    assert len(kept) == 300 and len(holdout) == 300 and not kept & holdout


def test_reference_profile_records_summaries_kinds_and_metrics(tmp_path: Path) -> None:
    x, y = _data()
    folder = stage_reference(tmp_path, inputs={"x": x}, outputs={"logits": x @ WEIGHTS}, labels=y)
    profile = json.loads((folder / "profile.json").read_text())
    assert profile["tensors"]["x"]["kind"] == "input"
    assert profile["tensors"]["logits"]["kind"] == "scores"
    assert profile["tensors"]["x"]["summary"]["mean"][0] == pytest.approx(float(x[:, 0].mean()), abs=0.2)
    assert profile["metrics"]["accuracy"] == 1.0  # the labels are the model's own predictions
    assert profile["items"] + profile["holdout_items"] == len(x)


def test_reference_beside_a_version_passes_repo_check_and_integrity(repository: Path) -> None:
    x, y = _data()
    write_reference(repository / "lin" / "1", inputs={"x": x}, outputs={"logits": x @ WEIGHTS}, labels=y)
    assert (repository / "lin" / "1" / REFERENCE_DIR / "profile.json").is_file()
    assert list(check_repository(repository)) == []
    assert verify_repository(repository).files == 1
    loaded = load_reference(repository, "lin")
    assert loaded.version == 1 and loaded.kinds["logits"] is TensorKind.SCORES
    assert set(loaded.data) == {"x", "logits"} and len(loaded.labels) == len(loaded.data["x"])


def test_build_reference_runs_the_onnx_model_over_the_data(repository: Path, tmp_path: Path) -> None:
    x, y = _data()
    np.savez(tmp_path / "eval.npz", x=x, labels=y)
    build_reference(repository=repository, model="lin", data=tmp_path / "eval.npz")
    loaded = load_reference(repository, "lin")
    assert np.allclose(loaded.data["logits"], loaded.data["x"] @ WEIGHTS, atol=1e-5)
    assert loaded.profile["metrics"]["accuracy"] == 1.0
    with pytest.raises(ConfigError, match="--overwrite"):
        build_reference(repository=repository, model="lin", data=tmp_path / "eval.npz")


def test_build_reference_names_inputs_the_model_lacks(repository: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "eval.npz", image=np.zeros((10, 4), np.float32))
    with pytest.raises(ConfigError, match="takes"):
        build_reference(repository=repository, model="lin", data=tmp_path / "eval.npz")


def test_load_reference_says_how_to_build_one_when_missing(repository: Path) -> None:
    with pytest.raises(ConfigError, match="monitor reference lin"):
        load_reference(repository, "lin")


def test_cli_reference_then_drift_exits_1_on_drift_and_0_without(repository: Path, tmp_path: Path) -> None:
    from tritonforge.cli.main import app
    from tritonforge.monitoring.logger import PredictionLogger
    from tritonforge.monitoring.parquet_sink import ParquetSink
    from tritonforge.monitoring.records import PredictionRecord

    x, y = _data(600)
    np.savez(tmp_path / "eval.npz", x=x, labels=y)
    runner = CliRunner()
    result = runner.invoke(
        app, ["monitor", "reference", "lin", "-r", str(repository), "--data", str(tmp_path / "eval.npz")]
    )
    assert result.exit_code == 0, result.output

    def log_window(root: Path, shift: float) -> None:
        logger = PredictionLogger(ParquetSink(root))
        rng = np.random.default_rng(7)
        for _ in range(60):
            batch = (rng.normal(size=(5, 4)) + shift).astype(np.float32)
            logger.log(
                PredictionRecord.create(model="lin", items=5, inputs={"x": batch}, outputs={"logits": batch @ WEIGHTS})
            )
        logger.close()

    log_window(tmp_path / "clean", 0.0)
    log_window(tmp_path / "shifted", 1.0)
    clean = runner.invoke(app, ["monitor", "drift", "lin", "--log", str(tmp_path / "clean"), "-r", str(repository)])
    assert clean.exit_code == 0, clean.output
    out = tmp_path / "report"
    shifted = runner.invoke(
        app,
        [
            "monitor",
            "drift",
            "lin",
            "--log",
            str(tmp_path / "shifted"),
            "-r",
            str(repository),
            "--last",
            "200",
            "--out",
            str(out),
        ],
    )
    assert shifted.exit_code == 1, shifted.output
    document = json.loads((out / "drift.json").read_text())
    assert document["drifted"] and document["n_window"] == 200
    assert list((out / "plots").glob("*.png")) and "x[0]" in (out / "report.html").read_text()
    empty = runner.invoke(app, ["monitor", "drift", "lin", "--log", str(tmp_path / "nothing"), "-r", str(repository)])
    assert empty.exit_code == 1 and "no logged predictions" in empty.output
