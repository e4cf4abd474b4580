from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from converter_models import snapshot
from tritonclient.grpc import model_config_pb2

from tritonforge import _atomic as atomic_module
from tritonforge.converters import repository as repository_module
from tritonforge.converters.repository import add_version, model_filename, version_numbers
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config, read_config
from tritonforge.errors import ConfigError


@pytest.fixture
def config() -> model_config_pb2.ModelConfig:
    spec = ModelConfigSpec(
        name="digits",
        max_batch_size=8,
        max_queue_delay_us=100,
        inputs=[TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")],
        outputs=[TensorSpec(name="logits", shape=(10,), dtype="float32")],
    )
    return build_model_config(spec)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "build" / "model.onnx"
    path.parent.mkdir()
    path.write_bytes(b"onnx-bytes-v1")
    return path


def test_add_version_numbers_versions_one_two_three_when_called_repeatedly(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    written = [add_version(repository=repository, config=config, model_file=model_file, manifest={}) for _ in range(3)]

    assert [p.name for p in written] == ["1", "2", "3"]
    assert version_numbers(repository / "digits") == [1, 2, 3]
    assert read_config(repository / "digits" / "config.pbtxt") == config
    assert sorted(p.name for p in (repository / "digits").iterdir()) == ["1", "2", "3", "config.pbtxt"]


def test_add_version_continues_after_the_highest_version_when_there_are_gaps(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    (repository / "digits" / "7").mkdir(parents=True)
    (repository / "digits" / "notes").mkdir()
    assert add_version(repository=repository, config=config, model_file=model_file, manifest={}).name == "8"


def test_add_version_writes_manifest_with_sha256_and_tool_versions_when_adding(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    version_dir = add_version(
        repository=repository, config=config, model_file=model_file, manifest={"source": "pkg.mod:factory"}
    )

    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["source"] == "pkg.mod:factory"
    assert manifest["sha256"] == hashlib.sha256(b"onnx-bytes-v1").hexdigest()
    assert manifest["model_file"] == "model.onnx" and manifest["version"] == 1 and manifest["model"] == "digits"
    assert {"torch", "onnx", "onnxruntime", "tritonforge"} <= set(manifest["tool_versions"])
    assert manifest["created_at"].endswith("+00:00")
    assert (version_dir / "model.onnx").read_bytes() == b"onnx-bytes-v1"


def test_add_version_refuses_and_keeps_files_when_the_version_exists_without_overwrite(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    add_version(repository=repository, config=config, model_file=model_file, manifest={})
    before = snapshot(repository)
    model_file.write_bytes(b"onnx-bytes-v2")

    with pytest.raises(ConfigError, match=r"version 1 of model 'digits' already exists.*--overwrite"):
        add_version(repository=repository, config=config, model_file=model_file, manifest={}, version=1)

    assert snapshot(repository) == before


def test_add_version_replaces_the_version_when_overwrite_is_true(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    add_version(repository=repository, config=config, model_file=model_file, manifest={})
    model_file.write_bytes(b"onnx-bytes-v2")

    add_version(repository=repository, config=config, model_file=model_file, manifest={}, version=1, overwrite=True)

    assert (repository / "digits" / "1" / "model.onnx").read_bytes() == b"onnx-bytes-v2"
    assert sorted(p.name for p in (repository / "digits").iterdir()) == ["1", "config.pbtxt"]


def test_add_version_leaves_repository_unchanged_when_the_version_rename_fails(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_version(repository=repository, config=config, model_file=model_file, manifest={})
    before = snapshot(repository)
    real_rename = atomic_module._rename_dir

    def crash_on_version_rename(source: Path, target: Path, *, exchange: bool) -> bool:
        if source.name.startswith(".staging-"):
            raise OSError("disk full")
        return real_rename(source, target, exchange=exchange)

    monkeypatch.setattr(atomic_module, "_rename_dir", crash_on_version_rename)
    with pytest.raises(OSError, match="disk full"):
        add_version(repository=repository, config=config, model_file=model_file, manifest={})

    assert snapshot(repository) == before


def test_add_version_leaves_repository_unchanged_when_writing_the_manifest_fails(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    add_version(repository=repository, config=config, model_file=model_file, manifest={})
    before = snapshot(repository)

    with pytest.raises(TypeError):  # a manifest value JSON cannot encode fails mid-staging
        add_version(repository=repository, config=config, model_file=model_file, manifest={"bad": object()})

    assert snapshot(repository) == before


def test_add_version_rolls_back_the_version_when_the_config_write_fails(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_version(repository=repository, config=config, model_file=model_file, manifest={})
    before = snapshot(repository)
    model_file.write_bytes(b"onnx-bytes-v2")
    real_write = repository_module.atomic_write_text

    def crash_on_config(path: Path, text: str) -> None:
        if path.name == "config.pbtxt":
            raise OSError("read-only file system")
        real_write(path, text)

    monkeypatch.setattr(repository_module, "atomic_write_text", crash_on_config)
    with pytest.raises(OSError, match="read-only"):
        add_version(repository=repository, config=config, model_file=model_file, manifest={}, version=1, overwrite=True)
    with pytest.raises(OSError, match="read-only"):
        add_version(repository=repository, config=config, model_file=model_file, manifest={})

    assert snapshot(repository) == before  # version 1 restored, no version 2, no staging or backup folders


def test_add_version_removes_the_new_model_folder_when_a_first_write_fails(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    with pytest.raises(TypeError):
        add_version(repository=repository, config=config, model_file=model_file, manifest={"bad": {1, 2}})
    assert not repository.exists()


def test_add_version_raises_config_error_when_the_model_file_is_missing(
    repository: Path, config: model_config_pb2.ModelConfig, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        add_version(repository=repository, config=config, model_file=tmp_path / "nope.onnx", manifest={})


def test_add_version_raises_config_error_when_the_version_is_zero(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    with pytest.raises(ConfigError, match="must be >= 1"):
        add_version(repository=repository, config=config, model_file=model_file, manifest={}, version=0)


def test_model_filename_follows_platform_or_backend_when_no_default_is_set() -> None:
    assert model_filename(model_config_pb2.ModelConfig(platform="tensorrt_plan")) == "model.plan"
    assert model_filename(model_config_pb2.ModelConfig(backend="python")) == "model.py"
    assert model_filename(model_config_pb2.ModelConfig(platform="x", default_model_filename="m.bin")) == "m.bin"
    assert model_filename(model_config_pb2.ModelConfig(platform="ensemble")) is None


def test_add_version_publishes_files_a_server_running_as_another_user_can_read(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    version_dir = add_version(repository=repository, config=config, model_file=model_file, manifest={})
    assert version_dir.stat().st_mode & 0o777 == 0o755
    for path in (version_dir / "model.onnx", version_dir / "manifest.json", version_dir.parent / "config.pbtxt"):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_read_manifest_returns_what_add_version_wrote_and_names_a_broken_one(
    repository: Path, config: model_config_pb2.ModelConfig, model_file: Path
) -> None:
    version_dir = add_version(repository=repository, config=config, model_file=model_file, manifest={"source": "x"})
    assert repository_module.read_manifest(version_dir)["source"] == "x"
    (version_dir / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a manifest object"):
        repository_module.read_manifest(version_dir)
    (version_dir / "manifest.json").unlink()
    with pytest.raises(ConfigError, match="missing or not JSON"):
        repository_module.read_manifest(version_dir)
