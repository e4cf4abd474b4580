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
    parse_axis_sizes,
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


def test_parse_tensor_spec_reads_named_axes_and_value_ranges_when_given() -> None:
    ids = parse_tensor_spec("input_ids:seq:int64:0..30521")
    assert ids.shape == (-1,) and ids.axis_names == ("seq",) and ids.value_range == (0, 30521)
    assert ids.dim_axes() == ("seq",) and ids.shape_text() == "seq"
    grid = parse_tensor_spec("x:3xhxw")
    assert grid.shape == (3, -1, -1) and grid.dim_axes() == (None, "h", "w")
    assert parse_tensor_spec("ids:-1:int64:0..9").dim_axes() == ("ids_dim1",)


def test_tensor_spec_treats_the_default_axis_name_as_no_name() -> None:
    named = TensorSpec(name="ids", shape=(-1,), dtype="int64", axis_names=("ids_dim1",))
    assert named == TensorSpec(name="ids", shape=(-1,), dtype="int64")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ids:batchx4:int64", "leading batch axis"),
        ("ids:-1:int64:0-9", "must look like LO..HI"),
        ("ids:-1:int64:9..0", "LO <= HI"),
        ("ids:-1:int8:0..300", "within int8"),
        ("x:4:float32:0..1", "for integer inputs only"),
        ("x:2seq", "must be a size, -1 or an axis name"),
    ],
)
def test_parse_tensor_spec_names_the_problem_when_axes_or_ranges_are_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tensor_spec(text)


def test_tensor_spec_refuses_a_name_on_a_static_dim() -> None:
    with pytest.raises(ConfigError, match="only a dynamic"):
        TensorSpec(name="x", shape=(4,), dtype="float32", axis_names=("seq",))


def test_parse_axis_sizes_reads_name_and_sizes_when_given_cli_text() -> None:
    assert parse_axis_sizes("seq=1,16,64") == ("seq", (1, 16, 64))
    for bad in ("seq", "seq=", "seq=0,4", "=1,2", "seq=a"):
        with pytest.raises(ConfigError, match="NAME=S1,S2,S3"):
            parse_axis_sizes(bad)


def test_sample_inputs_use_axis_sizes_and_inclusive_value_ranges() -> None:
    specs = [parse_tensor_spec("ids:seq:int64:5..6"), parse_tensor_spec("mask:seq:int64")]
    arrays = sample_inputs(specs, batch_size=3, axis_sizes={"seq": 11}, value_ranges={"mask": (0, 1)})
    assert arrays["ids"].shape == arrays["mask"].shape == (3, 11)
    assert set(np.unique(arrays["ids"])) == {5, 6} and set(np.unique(arrays["mask"])) <= {0, 1}
