"""Model files are checked against the sha256 their manifest recorded before a server may load them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.repository import add_version
from tritonforge.errors import ServerError
from tritonforge.serving.integrity import recorded_files, verify_repository
from tritonforge.serving.launcher import EmbeddedTriton

TOKENIZER_MODEL = "class TritonPythonModel:\n    pass\n"


def _python_model(repo: Path, tmp_path: Path, name: str = "tok") -> Path:
    config = model_config_pb2.ModelConfig(name=name, backend="python", max_batch_size=4)
    source = tmp_path / f"{name}.py"
    source.write_text(TOKENIZER_MODEL)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\n")
    return add_version(
        repository=repo, config=config, model_file=source, manifest={}, extra_files={"assets/vocab.txt": vocab}
    )


def test_a_repository_written_by_tritonforge_verifies(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _python_model(repo, tmp_path)
    _python_model(repo, tmp_path)  # version 2
    checked = verify_repository(repo)
    assert checked.versions == ("tok/1", "tok/2") and checked.files == 4 and checked.unverified == ()


def test_a_changed_model_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    version = _python_model(tmp_path / "repo", tmp_path)
    (version / "model.py").write_text(TOKENIZER_MODEL + "# edited by hand\n")
    with pytest.raises(ServerError, match=r"refusing to serve .*tok/1/model\.py: sha256 \w+… differs") as info:
        verify_repository(tmp_path / "repo")
    assert "\n" not in str(info.value)


def test_a_changed_extra_file_and_a_missing_one_are_refused(tmp_path: Path) -> None:
    version = _python_model(tmp_path / "repo", tmp_path)
    (version / "assets" / "vocab.txt").write_text("a\nb\nc\n")
    with pytest.raises(ServerError, match=r"tok/1/assets/vocab\.txt: sha256"):
        verify_repository(tmp_path / "repo")
    (version / "assets" / "vocab.txt").unlink()
    with pytest.raises(ServerError, match=r"tok/1/assets/vocab\.txt: the file its manifest records is missing"):
        verify_repository(tmp_path / "repo")


def test_a_version_without_manifest_is_served_but_named_unverified(tmp_path: Path, caplog) -> None:
    model = tmp_path / "repo" / "hand"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "hand"\nbackend: "python"\n')
    (model / "1" / "model.py").write_text(TOKENIZER_MODEL)
    with caplog.at_level(logging.WARNING, logger="tritonforge.serving.integrity"):
        checked = verify_repository(tmp_path / "repo")
    assert checked.unverified == ("hand/1",) and checked.files == 0
    assert "not verified (no manifest.json): hand/1" in caplog.text


def test_an_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    version = _python_model(tmp_path / "repo", tmp_path)
    (version / "manifest.json").write_text("{not json")
    with pytest.raises(ServerError, match=r"refusing to serve tok/1: .*manifest.json is missing or not JSON"):
        verify_repository(tmp_path / "repo")


def test_a_manifest_cannot_point_outside_its_version_folder(tmp_path: Path) -> None:
    version = _python_model(tmp_path / "repo", tmp_path)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["extra_files"] = {"../../../etc/passwd": "0" * 64}
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ServerError, match="outside the version folder"):
        verify_repository(tmp_path / "repo")


def test_tensorrt_engine_hashes_win_over_the_top_level_hash() -> None:
    # Rebuilding an engine rewrites tensorrt.engines but keeps the top-level sha256 of the first build.
    manifest = {
        "model_file": "model.sm86.plan",
        "sha256": "old",
        "tensorrt": {
            "engines": {
                "8.6": {"file": "model.sm86.plan", "sha256": "new"},
                "8.9": {"file": "model.sm89.plan", "sha256": "b"},
            }
        },
        "source": {"file": "model.onnx", "sha256": "provenance, not a file of this version"},
    }
    assert recorded_files(manifest) == {"model.sm86.plan": "new", "model.sm89.plan": "b"}
    assert recorded_files({"model_file": None, "sha256": None}) == {}  # an ensemble


def test_the_launcher_refuses_to_start_a_changed_repository_before_running_any_server(tmp_path: Path) -> None:
    version = _python_model(tmp_path / "repo", tmp_path)
    (version / "model.py").write_text("tampered")
    never = tmp_path / "bin" / "tritonserver"
    never.parent.mkdir()
    never.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    never.chmod(0o755)
    server = EmbeddedTriton(repository=tmp_path / "repo", server_binary=never)
    with pytest.raises(ServerError, match="model.py: sha256"):
        server.start()
    assert not (tmp_path / "ran").exists() and not server.is_running()
    unchecked = EmbeddedTriton(repository=tmp_path / "repo", server_binary=never, verify_manifests=False)
    with pytest.raises(ServerError, match="exited during start-up"):
        unchecked.start()
    assert (tmp_path / "ran").exists()
