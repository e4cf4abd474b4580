"""Weights files that do not fit: each refused in one line naming what the file is and how to fix it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from converter_models import tiny_cnn

from tritonforge.converters.weights import load_weights
from tritonforge.errors import ConfigError


def _fails(path: Path, model: torch.nn.Module | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_weights(model if model is not None else tiny_cnn(), path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_load_weights_loads_state_dict_when_it_fits(tmp_path: Path) -> None:
    source = tiny_cnn()
    torch.save(source.state_dict(), tmp_path / "w.pt")
    model = tiny_cnn()

    load_weights(model, tmp_path / "w.pt")

    assert torch.equal(model.head.weight, source.head.weight)


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model"])
def test_load_weights_unwraps_training_checkpoint_when_state_dict_is_under_a_known_key(
    tmp_path: Path, key: str
) -> None:
    source = tiny_cnn()
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}, key: source.state_dict()}, tmp_path / "ckpt.pt")
    model = tiny_cnn()

    load_weights(model, tmp_path / "ckpt.pt")

    assert torch.equal(model.conv.bias, source.conv.bias)


def test_load_weights_refuses_missing_file(tmp_path: Path) -> None:
    assert "does not exist" in _fails(tmp_path / "nope.pt")


def test_load_weights_refuses_text_file_when_given_as_weights(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("epoch 3: loss 0.12\nepoch 4: loss 0.10\n", encoding="utf-8")

    message = _fails(path)

    assert "is a text file" in message
    assert "epoch 3: loss 0.12" in message
    assert "torch.save(model.state_dict(), path)" in message


def test_load_weights_refuses_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "is empty" in _fails(tmp_path / "empty.pt")


def test_load_weights_calls_truncated_checkpoint_truncated_and_says_copy_again(tmp_path: Path) -> None:
    torch.save(tiny_cnn().state_dict(), tmp_path / "w.pt")
    data = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])

    message = _fails(tmp_path / "cut.pt")

    assert "truncated or corrupt" in message
    assert "copy it again" in message
    assert "weights-only" not in message


def test_load_weights_calls_truncated_legacy_checkpoint_truncated(tmp_path: Path) -> None:
    torch.save(tiny_cnn().state_dict(), tmp_path / "w.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "w.pt").read_bytes()[:200])

    assert "truncated" in _fails(tmp_path / "cut.pt")


def test_load_weights_refuses_pickled_module_and_names_its_class(tmp_path: Path) -> None:
    torch.save(tiny_cnn(), tmp_path / "model.pt")

    message = _fails(tmp_path / "model.pt")

    assert "converter_models.TinyCNN" in message
    assert "not a weights-only state dict" in message


def test_load_weights_refuses_non_dict_and_numpy_and_foreign_zip(tmp_path: Path) -> None:
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")

    assert "holds a list, not a state dict" in _fails(tmp_path / "list.pt")
    assert "numpy array file" in _fails(tmp_path / "array.npy")
    assert "zip archive (readme.txt...) but not a torch checkpoint" in _fails(tmp_path / "other.zip")


def test_load_weights_refuses_checkpoint_without_state_dict_and_lists_its_keys(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pt")

    message = _fails(tmp_path / "ckpt.pt")

    assert "keys 'epoch', 'optimizer'" in message
    assert "model_state_dict" in message


def test_load_weights_names_dataparallel_prefix_and_the_fix_when_every_key_has_it(tmp_path: Path) -> None:
    wrapped = torch.nn.DataParallel(tiny_cnn())
    torch.save(wrapped.state_dict(), tmp_path / "dp.pt")

    message = _fails(tmp_path / "dp.pt")

    assert "every key in the file starts with 'module.'" in message
    assert "DataParallel" in message
    assert "k.removeprefix('module.')" in message


def test_load_weights_names_prefix_model_has_and_file_lacks(tmp_path: Path) -> None:
    torch.save(tiny_cnn().state_dict(), tmp_path / "bare.pt")
    model = torch.nn.Sequential()
    model.add_module("backbone", tiny_cnn())

    message = _fails(tmp_path / "bare.pt", model)

    assert "every key of the model starts with 'backbone.'" in message


def test_load_weights_names_some_missing_and_unexpected_keys_when_keys_differ(tmp_path: Path) -> None:
    state = tiny_cnn().state_dict()
    state["extra.weight"] = state.pop("head.weight")
    torch.save(state, tmp_path / "w.pt")

    message = _fails(tmp_path / "w.pt")

    assert "1 missing key(s) (head.weight)" in message
    assert "1 unexpected key(s) (extra.weight)" in message


def test_load_weights_names_parameter_and_both_shapes_when_shapes_differ(tmp_path: Path) -> None:
    state = tiny_cnn().state_dict()
    state["head.weight"] = torch.zeros(5, 256)
    state["head.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "w.pt")

    message = _fails(tmp_path / "w.pt")

    assert "head.weight is [5, 256] in the file but [10, 256] in the model" in message
    assert "head.bias is [5] in the file but [10] in the model" in message


@pytest.mark.parametrize("cut", [60, 200, 300, 500])
def test_load_weights_calls_legacy_checkpoint_truncated_wherever_it_is_cut(tmp_path: Path, cut: int) -> None:
    torch.save(tiny_cnn().state_dict(), tmp_path / "w.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "w.pt").read_bytes()[:cut])

    assert "truncated" in _fails(tmp_path / "cut.pt")


def test_load_weights_refuses_binary_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)) * 4)

    assert "is not a torch checkpoint" in _fails(tmp_path / "blob.bin")


def test_load_weights_reads_safetensors_and_calls_cut_one_damaged(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")  # an optional format: loaded when installed
    source = tiny_cnn()
    safetensors_torch.save_file(source.state_dict(), str(tmp_path / "model.safetensors"))
    model = tiny_cnn()

    load_weights(model, tmp_path / "model.safetensors")

    assert torch.equal(model.head.bias, source.head.bias)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    assert "damaged safetensors file" in _fails(tmp_path / "cut.safetensors")


def test_load_weights_names_stray_entry_when_a_flat_checkpoint_mixes_weights_and_counters(tmp_path: Path) -> None:
    torch.save({**tiny_cnn().state_dict(), "epoch": 3}, tmp_path / "flat.pt")

    message = _fails(tmp_path / "flat.pt")

    assert "1 unexpected key(s) (epoch)" in message
