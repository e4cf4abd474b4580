from __future__ import annotations

import numpy as np
import onnx
import pytest
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.specs import (
    TensorSpec,
    numpy_to_onnx,
    numpy_to_triton,
    onnx_to_numpy,
    parse_tensor_spec,
    sample_inputs,
    triton_to_numpy,
)
from tritonforge.errors import ConfigError

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_maps_agree_with_onnx_and_triton_when_mapping_numpy_names(dtype: str) -> None:
    assert numpy_to_onnx(dtype) == onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    assert numpy_to_triton(dtype) in model_config_pb2.DataType.keys()
    assert onnx_to_numpy(numpy_to_onnx(dtype)) == dtype
    assert triton_to_numpy(numpy_to_triton(dtype)) == dtype


def test_dtype_maps_raise_config_error_when_the_type_is_unknown() -> None:
    with pytest.raises(ConfigError, match="complex64"):
        numpy_to_triton("complex64")
    with pytest.raises(ConfigError, match="16"):
        onnx_to_numpy(onnx.TensorProto.BFLOAT16)
    with pytest.raises(ConfigError, match="TYPE_BF16"):
        triton_to_numpy("TYPE_BF16")


def test_tensor_spec_keeps_a_tuple_when_given_a_list() -> None:
    spec = TensorSpec(name="image", shape=[1, 8, 8], dtype="float32")  # type: ignore[arg-type]
    assert spec.shape == (1, 8, 8)
    assert spec.triton_dtype == "TYPE_FP32"
    assert spec.is_static


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "shape": (1,), "dtype": "float32"}, "non-empty"),
        ({"name": " x", "shape": (1,), "dtype": "float32"}, "spaces"),
        ({"name": "x", "shape": (0, 8), "dtype": "float32"}, "size 0"),
        ({"name": "x", "shape": (-2,), "dtype": "float32"}, "size -2"),
        ({"name": "x", "shape": ("8",), "dtype": "float32"}, "tuple of ints"),
        ({"name": "x", "shape": (8,), "dtype": "float"}, "dtype 'float'"),
    ],
)
def test_tensor_spec_raises_config_error_when_a_field_is_invalid(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TensorSpec(**kwargs)


def test_parse_tensor_spec_reads_name_shape_and_dtype_when_given_cli_text() -> None:
    assert parse_tensor_spec("image:1x8x8:float32") == TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")
    assert parse_tensor_spec("ids:-1:int64") == TensorSpec(name="ids", shape=(-1,), dtype="int64")
    assert parse_tensor_spec("x:4") == TensorSpec(name="x", shape=(4,), dtype="float32")
    assert parse_tensor_spec("s::int64").shape == ()


@pytest.mark.parametrize("text", ["image", "image:1x8x8:float32:extra", "image:1by8:float32", "image:1x8:float"])
def test_parse_tensor_spec_raises_config_error_when_the_text_is_malformed(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_tensor_spec(text)


def test_sample_inputs_are_reproducible_and_batched_when_seeded() -> None:
    specs = [
        TensorSpec(name="image", shape=(1, 8, 8), dtype="float32"),
        TensorSpec(name="ids", shape=(-1,), dtype="int64"),
        TensorSpec(name="mask", shape=(2,), dtype="bool"),
    ]
    first = sample_inputs(specs, batch_size=4, seed=1)
    again = sample_inputs(specs, batch_size=4, seed=1)
    assert first["image"].shape == (4, 1, 8, 8) and first["image"].dtype == np.float32
    assert first["ids"].shape == (4, 3) and first["ids"].dtype == np.int64
    assert first["ids"].min() >= 0 and first["ids"].max() < 10
    assert first["mask"].dtype == np.bool_
    assert all(np.array_equal(first[k], again[k]) for k in first)


def test_sample_inputs_raise_config_error_when_the_dtype_is_a_string() -> None:
    with pytest.raises(ConfigError, match="text"):
        sample_inputs([TensorSpec(name="text", shape=(1,), dtype="object")], batch_size=1)
