from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from converter_models import snapshot
from tritonclient.grpc import model_config_pb2

from tritonforge.converters import repository as repository_module
from tritonforge.converters.repo_check import check_repository
from tritonforge.converters.repository import add_version
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import (
    ENSEMBLE_PLATFORM,
    EnsembleStep,
    ModelConfigSpec,
    build_model_config,
    read_config,
)
from tritonforge.errors import ConfigError

TEXT = TensorSpec(name="TEXT", shape=(1,), dtype="object")
IDS = TensorSpec(name="ids", shape=(-1,), dtype="int64")


@pytest.fixture
def python_config() -> model_config_pb2.ModelConfig:
    spec = ModelConfigSpec(name="tok", platform=None, backend="python", max_batch_size=8, inputs=[TEXT], outputs=[IDS])
    return build_model_config(spec)


@pytest.fixture
def ensemble_config() -> model_config_pb2.ModelConfig:
    spec = ModelConfigSpec(
        name="text",
        platform=ENSEMBLE_PLATFORM,
        max_batch_size=8,
        inputs=[TEXT],
        outputs=[IDS],
        ensemble_steps=[EnsembleStep(model_name="tok", input_map={"TEXT": "TEXT"}, output_map={"ids": "ids"})],
    )
    return build_model_config(spec)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    build = tmp_path / "build"
    build.mkdir()
    files = {"model.py": b"class TritonPythonModel: ...\n", "tokenizer.json": b'{"v": 1}', "vocab.txt": b"[PAD]\n"}
    for name, content in files.items():
        (build / name).write_bytes(content)
    return {name: build / name for name in files}


def test_add_version_copies_extra_files_and_records_their_sha256(
    repository: Path, python_config: model_config_pb2.ModelConfig, sources: dict[str, Path]
) -> None:
    version_dir = add_version(
        repository=repository,
        config=python_config,
        model_file=sources["model.py"],
        manifest={"source": "test"},
        extra_files={"tokenizer.json": sources["tokenizer.json"], "assets/vocab.txt": sources["vocab.txt"]},
    )

    assert (version_dir / "tokenizer.json").read_bytes() == b'{"v": 1}'
    assert (version_dir / "assets" / "vocab.txt").read_bytes() == b"[PAD]\n"
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["extra_files"] == {
        "assets/vocab.txt": hashlib.sha256(b"[PAD]\n").hexdigest(),
        "tokenizer.json": hashlib.sha256(b'{"v": 1}').hexdigest(),
    }
    assert manifest["model_file"] == "model.py"
    assert not list(version_dir.parent.glob(".staging-*"))


def test_add_version_writes_an_ensemble_as_a_version_folder_with_only_the_manifest(
    repository: Path,
    ensemble_config: model_config_pb2.ModelConfig,
    python_config: model_config_pb2.ModelConfig,
    sources: dict[str, Path],
) -> None:
    add_version(repository=repository, config=python_config, model_file=sources["model.py"], manifest={})  # its step
    version_dir = add_version(repository=repository, config=ensemble_config, model_file=None, manifest={"k": "v"})

    assert [p.name for p in version_dir.iterdir()] == ["manifest.json"]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["model_file"] is None and manifest["sha256"] is None and manifest["k"] == "v"
    assert read_config(repository / "text" / "config.pbtxt") == ensemble_config
    assert not check_repository(repository)  # repo check accepts an ensemble's empty version folder


def test_add_version_refuses_a_missing_model_file_for_a_platform_that_needs_one(
    repository: Path, python_config: model_config_pb2.ModelConfig
) -> None:
    with pytest.raises(ConfigError, match=r"model 'tok' \(python\) needs a model file; only ensembles have none"):
        add_version(repository=repository, config=python_config, model_file=None, manifest={})
    assert not repository.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../escape.json", "relative path inside the version folder"),
        ("/etc/passwd", "relative path inside the version folder"),
        ("a//b", "relative path inside the version folder"),
        ("", "relative path inside the version folder"),
        ("manifest.json", "would replace the manifest.json tritonforge writes"),
        ("model.py", "would replace the model.py tritonforge writes"),
    ],
)
def test_add_version_refuses_bad_extra_file_names_and_leaves_the_repository_unchanged(
    repository: Path, python_config: model_config_pb2.ModelConfig, sources: dict[str, Path], name: str, message: str
) -> None:
    add_version(repository=repository, config=python_config, model_file=sources["model.py"], manifest={})
    before = snapshot(repository)

    with pytest.raises(ConfigError, match=message):
        add_version(
            repository=repository,
            config=python_config,
            model_file=sources["model.py"],
            manifest={},
            extra_files={name: sources["tokenizer.json"]},
        )
    assert snapshot(repository) == before


def test_add_version_refuses_an_extra_file_that_does_not_exist(
    repository: Path, python_config: model_config_pb2.ModelConfig, sources: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"extra file 'tokenizer.json' comes from .*missing.json, which is not"):
        add_version(
            repository=repository,
            config=python_config,
            model_file=sources["model.py"],
            manifest={},
            extra_files={"tokenizer.json": tmp_path / "missing.json"},
        )
    assert not repository.exists()


def test_add_version_restores_the_old_version_when_copying_an_extra_file_fails(
    repository: Path,
    python_config: model_config_pb2.ModelConfig,
    sources: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    add_version(
        repository=repository,
        config=python_config,
        model_file=sources["model.py"],
        manifest={},
        extra_files={"tokenizer.json": sources["tokenizer.json"]},
    )
    before = snapshot(repository)
    real_copy = repository_module.shutil.copyfile

    def crash_on_extra(src: Path, dst: Path) -> object:
        if Path(src).name == "vocab.txt":
            raise OSError("disk full")
        return real_copy(src, dst)

    monkeypatch.setattr(repository_module.shutil, "copyfile", crash_on_extra)
    with pytest.raises(OSError, match="disk full"):
        add_version(
            repository=repository,
            config=python_config,
            model_file=sources["model.py"],
            manifest={},
            version=1,
            overwrite=True,
            extra_files={"tokenizer.json": sources["tokenizer.json"], "vocab.txt": sources["vocab.txt"]},
        )
    assert snapshot(repository) == before
