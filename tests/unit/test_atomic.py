"""Atomic folder publication: one rename, never a moment with the old version only under a hidden name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tritonforge import _atomic
from tritonforge._atomic import published_dir


def _folder(path: Path, content: str) -> Path:
    path.mkdir()
    (path / "model.onnx").write_text(content)
    return path


def test_published_dir_exchanges_with_the_old_version_in_one_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = _folder(tmp_path / "1", "old")
    stage = _folder(tmp_path / ".staging-1", "new")
    renames: list[tuple[str, str]] = []
    monkeypatch.setattr(os, "rename", lambda a, b: renames.append((str(a), str(b))))  # the two-rename fallback

    with published_dir(stage, target):
        # inside the block the new version is published and the old one is whole, under the stage's name
        assert (target / "model.onnx").read_text() == "new"
        assert (stage / "model.onnx").read_text() == "old"
        assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-1", "1"]

    assert renames == []
    assert (target / "model.onnx").read_text() == "new"


def test_published_dir_puts_the_old_version_back_when_the_block_fails(tmp_path: Path) -> None:
    target = _folder(tmp_path / "1", "old")
    stage = _folder(tmp_path / ".staging-1", "new")

    with pytest.raises(RuntimeError, match="config write failed"), published_dir(stage, target):
        raise RuntimeError("config write failed")

    assert (target / "model.onnx").read_text() == "old"
    assert (stage / "model.onnx").read_text() == "new"


def test_published_dir_creates_a_new_folder_and_undoes_it_on_failure(tmp_path: Path) -> None:
    stage = _folder(tmp_path / ".staging-2", "new")
    target = tmp_path / "2"

    with pytest.raises(RuntimeError), published_dir(stage, target, replace=False):
        assert (target / "model.onnx").read_text() == "new"
        raise RuntimeError("boom")

    assert not target.exists()
    assert (stage / "model.onnx").read_text() == "new"


def test_published_dir_without_replace_refuses_a_folder_that_appeared(tmp_path: Path) -> None:
    target = _folder(tmp_path / "2", "someone else's")
    stage = _folder(tmp_path / ".staging-2", "mine")

    with pytest.raises(FileExistsError), published_dir(stage, target, replace=False):
        pass

    assert (target / "model.onnx").read_text() == "someone else's"
    assert (stage / "model.onnx").read_text() == "mine"


def test_published_dir_falls_back_to_renames_without_renameat2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_atomic.sys, "platform", "darwin")
    target = _folder(tmp_path / "1", "old")
    stage = _folder(tmp_path / ".staging-1", "new")

    with published_dir(stage, target):
        pass

    assert (target / "model.onnx").read_text() == "new"
    assert (stage / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".staging-1", "1"]
