from __future__ import annotations

from pathlib import Path

import pytest

from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config, read_config, write_config
from tritonforge.errors import ServerError
from tritonforge.serving.derived_repository import ADAPTER_FILE, derive_repository, required_backend


def _write_model(
    repo: Path, name: str, *, platform: str = "onnxruntime_onnx", versions: tuple[int, ...] = (1,)
) -> None:
    spec = ModelConfigSpec(
        name=name,
        platform=platform,
        max_batch_size=8,
        inputs=(TensorSpec(name="x", shape=(4,), dtype="float32"),),
        outputs=(TensorSpec(name="y", shape=(2,), dtype="float32"),),
        max_queue_delay_us=500,
        instance_count=2,
    )
    (repo / name).mkdir(parents=True)
    write_config(build_model_config(spec), repo / name / "config.pbtxt")
    for version in versions:
        (repo / name / str(version)).mkdir()
        (repo / name / str(version) / ("model.plan" if platform == "tensorrt_plan" else "model.onnx")).write_bytes(b"x")


def test_derive_repository_returns_canonical_when_every_backend_exists(tmp_path: Path) -> None:
    _write_model(tmp_path / "repo", "m")
    served = derive_repository(repository=tmp_path / "repo", backends={"python", "onnxruntime"}, work_dir=tmp_path)
    assert served == tmp_path / "repo"


def test_derive_repository_rewrites_onnx_model_to_adapter_when_backend_missing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write_model(repo, "m", versions=(1, 3))
    before = (repo / "m" / "config.pbtxt").read_text()

    served = derive_repository(repository=repo, backends={"python"}, work_dir=tmp_path / "work")

    config = read_config(served / "m" / "config.pbtxt")
    original = read_config(repo / "m" / "config.pbtxt")
    assert config.backend == "python" and config.platform == ""
    assert config.parameters["onnx_file"].string_value == "model.onnx"
    assert config.name == original.name and config.max_batch_size == original.max_batch_size
    assert list(config.input) == list(original.input) and list(config.output) == list(original.output)
    assert config.dynamic_batching == original.dynamic_batching
    assert list(config.instance_group) == list(original.instance_group)
    for version in ("1", "3"):
        assert (served / "m" / version / "model.py").resolve() == ADAPTER_FILE.resolve()
        assert (served / "m" / version / "model.onnx").resolve() == (repo / "m" / version / "model.onnx").resolve()
    assert (repo / "m" / "config.pbtxt").read_text() == before  # the canonical repository is untouched


def test_derive_repository_links_models_whose_backend_exists(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write_model(repo, "onnx_model")
    _write_model(repo, "py_model", platform="")
    served = derive_repository(repository=repo, backends={"python"}, work_dir=tmp_path / "work")
    assert (served / "py_model").is_symlink()
    assert (served / "py_model").resolve() == (repo / "py_model").resolve()


def test_derive_repository_raises_when_backend_has_no_adapter(tmp_path: Path) -> None:
    _write_model(tmp_path / "repo", "engine", platform="tensorrt_plan")
    with pytest.raises(ServerError, match=r"'engine' \(tensorrt\).*--server-binary"):
        derive_repository(repository=tmp_path / "repo", backends={"python"}, work_dir=tmp_path / "work")


def test_derive_repository_raises_when_repository_missing(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="does not exist"):
        derive_repository(repository=tmp_path / "nope", backends={"python"}, work_dir=tmp_path)


def test_required_backend_maps_platforms() -> None:
    from tritonclient.grpc import model_config_pb2

    assert required_backend(model_config_pb2.ModelConfig(platform="onnxruntime_onnx")) == "onnxruntime"
    assert required_backend(model_config_pb2.ModelConfig(platform="tensorrt_plan")) == "tensorrt"
    assert required_backend(model_config_pb2.ModelConfig(platform="ensemble")) is None
    assert required_backend(model_config_pb2.ModelConfig(backend="python")) == "python"
