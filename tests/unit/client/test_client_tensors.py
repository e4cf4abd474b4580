from __future__ import annotations

import numpy as np
import pytest
from client_fakes import digits_config, digits_metadata, images

from tritonforge.client import ModelSignature, TensorInfo, validate_inputs
from tritonforge.errors import ConfigError, InvalidInputError

DIGITS = ModelSignature.from_protos(digits_metadata(), digits_config())

PAIR = ModelSignature(
    inputs=(
        TensorInfo("ids", "INT64", (-1, -1)),
        TensorInfo("mask", "INT64", (-1, -1)),
        TensorInfo("extra", "BYTES", (-1, 1), optional=True),
    ),
    outputs=(TensorInfo("score", "FP32", (-1, 1)),),
    max_batch_size=8,
)


def test_signature_from_protos_reads_shapes_and_batch_when_given_triton_messages() -> None:
    assert DIGITS.inputs == (TensorInfo("image", "FP32", (-1, 1, 8, 8)),)
    assert DIGITS.outputs == (TensorInfo("logits", "FP32", (-1, 10)),)
    assert DIGITS.max_batch_size == 4


def test_tensor_info_np_dtype_maps_triton_names_when_known() -> None:
    assert TensorInfo("x", "FP32", (1,)).np_dtype == np.float32
    assert TensorInfo("x", "INT64", (1,)).np_dtype == np.int64
    assert TensorInfo("x", "BYTES", (1,)).np_dtype == np.object_
    assert TensorInfo("x", "BOOL", (1,)).np_dtype == np.bool_


def test_tensor_info_rejects_datatype_when_unknown() -> None:
    with pytest.raises(ConfigError, match="unknown datatype 'FLOAT'"):
        TensorInfo("x", "FLOAT", (1,))


def test_tensor_info_stores_tuple_when_given_list() -> None:
    info = TensorInfo("x", "FP32", [2, 3])  # type: ignore[arg-type]
    assert info.shape == (2, 3)
    assert hash(info) == hash(TensorInfo("x", "FP32", (2, 3)))


def test_validate_inputs_passes_when_request_matches() -> None:
    validate_inputs("digits", DIGITS, {"image": images(3)})


def test_validate_inputs_names_expected_dtype_and_shape_when_dtype_wrong() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_inputs("digits", DIGITS, {"image": images(2, np.float64)})
    assert str(info.value) == (
        "input 'image' of model 'digits' expects FP32 with shape [-1, 1, 8, 8], got float64 [2, 1, 8, 8]"
    )


def test_validate_inputs_names_expected_shape_when_rank_wrong() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_inputs("digits", DIGITS, {"image": np.zeros((2, 8, 8))})
    assert str(info.value) == (
        "input 'image' of model 'digits' expects FP32 with shape [-1, 1, 8, 8], got float64 [2, 8, 8]"
    )


def test_validate_inputs_rejects_when_fixed_dim_differs() -> None:
    with pytest.raises(InvalidInputError, match=r"expects FP32 with shape \[-1, 1, 8, 8\], got float32 \[2, 1, 8, 7\]"):
        validate_inputs("digits", DIGITS, {"image": np.zeros((2, 1, 8, 7), np.float32)})


def test_validate_inputs_accepts_any_size_when_dim_is_dynamic() -> None:
    ids = np.zeros((2, 17), np.int64)
    validate_inputs("pair", PAIR, {"ids": ids, "mask": ids})


def test_validate_inputs_lists_model_inputs_when_name_unknown() -> None:
    with pytest.raises(InvalidInputError, match=r"model 'digits' has no input 'img'; its inputs are: 'image' FP32"):
        validate_inputs("digits", DIGITS, {"img": images()})


def test_validate_inputs_names_missing_input_when_required_input_absent() -> None:
    with pytest.raises(InvalidInputError, match=r"needs input\(s\) \['mask'\]"):
        validate_inputs("pair", PAIR, {"ids": np.zeros((1, 3), np.int64)})


def test_validate_inputs_passes_when_only_optional_input_absent() -> None:
    ids = np.zeros((1, 3), np.int64)
    validate_inputs("pair", PAIR, {"ids": ids, "mask": ids})


def test_validate_inputs_accepts_object_and_str_arrays_when_datatype_bytes() -> None:
    ids = np.zeros((2, 3), np.int64)
    validate_inputs("pair", PAIR, {"ids": ids, "mask": ids, "extra": np.array([[b"a"], [b"b"]], dtype=object)})
    validate_inputs("pair", PAIR, {"ids": ids, "mask": ids, "extra": np.array([["a"], ["b"]])})


def test_validate_inputs_says_how_to_split_when_batch_over_max_batch_size() -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_inputs("digits", DIGITS, {"image": images(5)})
    assert "batch size 5, over the model's max_batch_size 4" in str(info.value)
    assert "batches of at most 4" in str(info.value)


def test_validate_inputs_rejects_when_batch_sizes_differ() -> None:
    with pytest.raises(InvalidInputError, match="must share one batch size"):
        validate_inputs("pair", PAIR, {"ids": np.zeros((2, 3), np.int64), "mask": np.zeros((3, 3), np.int64)})


def test_validate_inputs_rejects_when_batch_empty() -> None:
    with pytest.raises(InvalidInputError, match="empty batch"):
        validate_inputs("digits", DIGITS, {"image": images(0)})


def test_validate_inputs_rejects_when_value_not_an_array() -> None:
    with pytest.raises(InvalidInputError, match="must be a numpy array of FP32 with shape .* got list"):
        validate_inputs("digits", DIGITS, {"image": [[0.0] * 64]})


def test_validate_inputs_lists_outputs_when_requested_output_unknown() -> None:
    with pytest.raises(InvalidInputError, match=r"no output 'probs'; its outputs are \['logits'\]"):
        validate_inputs("digits", DIGITS, {"image": images()}, outputs=("probs",))


def test_validate_inputs_skips_batch_checks_when_model_does_not_batch() -> None:
    fixed = ModelSignature(inputs=(TensorInfo("x", "FP32", (3,)),), outputs=(), max_batch_size=0)
    validate_inputs("fixed", fixed, {"x": np.zeros(3, np.float32)})
    with pytest.raises(InvalidInputError, match=r"expects FP32 with shape \[3\]"):
        validate_inputs("fixed", fixed, {"x": np.zeros((1, 3), np.float32)})
