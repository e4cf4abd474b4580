from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonforge.client import TensorInfo
from tritonforge.errors import ConfigError
from tritonforge.loadtests.inputs import build_inputs, random_inputs, sample_inputs, save_inputs

IMAGE = TensorInfo("image", "FP32", (-1, 1, 8, 8))


def test_random_inputs_match_dtype_and_shape_when_model_batches() -> None:
    inputs = random_inputs([IMAGE], max_batch_size=64, batch_size=8, seed=0)

    assert list(inputs) == ["image"]
    assert inputs["image"].dtype == np.float32
    assert inputs["image"].shape == (8, 1, 8, 8)


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [("INT64", np.int64), ("INT32", np.int32), ("UINT8", np.uint8), ("FP16", np.float16), ("BOOL", np.bool_)],
)
def test_random_inputs_use_the_tensor_dtype_when_it_is_not_fp32(datatype: str, dtype: type) -> None:
    tensor = TensorInfo("x", datatype, (-1, 16))

    (array,) = random_inputs([tensor], max_batch_size=4, batch_size=2).values()

    assert array.dtype == dtype
    assert array.shape == (2, 16)


def test_random_inputs_fill_bytes_inputs_with_strings_when_datatype_is_bytes() -> None:
    (array,) = random_inputs([TensorInfo("text", "BYTES", (-1, 1))], max_batch_size=8).values()

    assert array.dtype == np.object_
    assert array.shape == (1, 1)
    assert isinstance(array[0, 0], bytes)


def test_random_inputs_keep_the_shape_when_model_does_not_batch() -> None:
    (array,) = random_inputs([TensorInfo("x", "FP32", (3, 4))], max_batch_size=0).values()

    assert array.shape == (3, 4)


def test_random_inputs_repeat_when_seed_is_the_same() -> None:
    first = random_inputs([IMAGE], max_batch_size=64, seed=7)["image"]
    again = random_inputs([IMAGE], max_batch_size=64, seed=7)["image"]
    other = random_inputs([IMAGE], max_batch_size=64, seed=8)["image"]

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_random_inputs_skip_an_input_when_it_is_optional() -> None:
    mask = TensorInfo("mask", "BOOL", (-1, 4), optional=True)

    inputs = random_inputs([IMAGE, mask], max_batch_size=64)

    assert list(inputs) == ["image"]


@pytest.mark.parametrize(("batch_size", "max_batch_size"), [(65, 64), (0, 64), (2, 0)])
def test_random_inputs_reject_batch_size_when_model_cannot_take_it(batch_size: int, max_batch_size: int) -> None:
    with pytest.raises(ConfigError, match="batch size must be"):
        random_inputs([IMAGE], max_batch_size=max_batch_size, batch_size=batch_size)


def test_random_inputs_ask_for_a_sample_when_a_non_batch_dimension_is_dynamic() -> None:
    tokens = TensorInfo("input_ids", "INT64", (-1, -1))

    with pytest.raises(ConfigError, match="input 'input_ids' has a dynamic dimension.*--sample"):
        random_inputs([tokens], max_batch_size=8)


def test_sample_inputs_read_a_npy_file_when_model_has_one_input(tmp_path: Path) -> None:
    path = tmp_path / "request.npy"
    np.save(path, np.ones((4, 1, 8, 8), dtype=np.float32))

    inputs = sample_inputs(path, [IMAGE], max_batch_size=64)

    assert inputs["image"].shape == (4, 1, 8, 8)


def test_sample_inputs_add_the_batch_axis_when_sample_is_one_item(tmp_path: Path) -> None:
    path = tmp_path / "request.npy"
    np.save(path, np.ones((1, 8, 8), dtype=np.float32))

    inputs = sample_inputs(path, [IMAGE], max_batch_size=64)

    assert inputs["image"].shape == (1, 1, 8, 8)


def test_sample_inputs_read_each_input_by_name_when_file_is_npz(tmp_path: Path) -> None:
    ids = TensorInfo("input_ids", "INT64", (-1, -1))
    mask = TensorInfo("attention_mask", "INT64", (-1, -1))
    path = tmp_path / "request.npz"
    np.savez(path, input_ids=np.arange(12, dtype=np.int64).reshape(2, 6), attention_mask=np.ones((2, 6), np.int64))

    inputs = sample_inputs(path, [ids, mask], max_batch_size=8)

    assert sorted(inputs) == ["attention_mask", "input_ids"]
    assert inputs["input_ids"].shape == (2, 6)


def test_sample_inputs_name_the_input_when_dtype_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "request.npy"
    np.save(path, np.ones((1, 1, 8, 8), dtype=np.float64))

    with pytest.raises(ConfigError, match=r"input 'image' must be FP32 with shape \[-1, 1, 8, 8\], got float64"):
        sample_inputs(path, [IMAGE], max_batch_size=64)


def test_sample_inputs_list_missing_inputs_when_npz_lacks_one(tmp_path: Path) -> None:
    path = tmp_path / "request.npz"
    np.savez(path, input_ids=np.ones((1, 4), np.int64))
    tensors = [TensorInfo("input_ids", "INT64", (-1, -1)), TensorInfo("attention_mask", "INT64", (-1, -1))]

    with pytest.raises(ConfigError, match=r"lacks input\(s\) \['attention_mask'\]"):
        sample_inputs(path, tensors, max_batch_size=8)


def test_sample_inputs_reject_unknown_names_when_npz_has_extra_arrays(tmp_path: Path) -> None:
    path = tmp_path / "request.npz"
    np.savez(path, image=np.ones((1, 1, 8, 8), np.float32), labels=np.zeros(1))

    with pytest.raises(ConfigError, match=r"holds \['labels'\], which are not inputs"):
        sample_inputs(path, [IMAGE], max_batch_size=64)


def test_sample_inputs_say_so_when_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        sample_inputs(tmp_path / "nope.npy", [IMAGE], max_batch_size=64)


def test_build_inputs_round_trip_through_save_inputs_when_saved_and_read_back(tmp_path: Path) -> None:
    text = TensorInfo("text", "BYTES", (-1, 1))
    built = build_inputs([IMAGE, text], max_batch_size=8, batch_size=3, seed=1)

    path = save_inputs(tmp_path / "request.npz", built)
    again = build_inputs([IMAGE, text], max_batch_size=8, sample_path=path)

    np.testing.assert_array_equal(again["image"], built["image"])
    assert again["text"].dtype == np.object_
    assert again["text"].tolist() == built["text"].tolist()
