"""Profiles and trtexec command lines: pure functions of a config, tested without GPU or TensorRT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.tensorrt_profiles import SequenceRange, derive_profile, trtexec_command
from tritonforge.errors import ConfigError


def _config(data: dict[str, Any]) -> model_config_pb2.ModelConfig:
    return json_format.ParseDict(data, model_config_pb2.ModelConfig())


@pytest.fixture
def digits_config(golden_digits_config: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(golden_digits_config, model_config_pb2.ModelConfig())


def text_config(preferred: list[int] | None = None) -> model_config_pb2.ModelConfig:
    data: dict[str, Any] = {
        "name": "minilm_encoder",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 64,
        "input": [
            {"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]},
            {"name": "attention_mask", "data_type": "TYPE_INT64", "dims": [-1]},
        ],
        "output": [{"name": "embedding", "data_type": "TYPE_FP32", "dims": [384]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 100},
    }
    if preferred:
        data["dynamic_batching"]["preferred_batch_size"] = preferred
    return _config(data)


# --- profiles --------------------------------------------------------------------------------------------------------


def test_digits_profile_spans_batch_one_to_max_batch_with_opt_eight(digits_config: Any) -> None:
    profile = derive_profile(digits_config)

    (image,) = profile.inputs
    assert (image.name, image.dynamic) == ("image", True)
    assert (image.minimum, image.optimum, image.maximum) == ((1, 1, 8, 8), (8, 1, 8, 8), (64, 1, 8, 8))
    assert profile.typical_batch == 8
    assert profile.shapes_arg("maximum") == "image:64x1x8x8"


def test_text_profile_takes_sequence_sizes_for_dynamic_dims_and_largest_preferred_batch() -> None:
    profile = derive_profile(text_config([4, 16]), sequence_range=SequenceRange.parse("1:128:256"))

    ids, mask = profile.inputs
    for tensor in (ids, mask):
        assert (tensor.minimum, tensor.optimum, tensor.maximum) == ((1, 1), (16, 128), (64, 256))
    assert profile.shapes_arg("optimum") == "input_ids:16x128,attention_mask:16x128"
    assert profile.to_dict()["sequence_range"] == "1:128:256"


def test_typical_batch_override_and_its_bounds(digits_config: Any) -> None:
    assert derive_profile(digits_config, typical_batch=32).inputs[0].optimum == (32, 1, 8, 8)
    with pytest.raises(ConfigError, match="typical batch 65 must be between 1 and max_batch_size 64"):
        derive_profile(digits_config, typical_batch=65)


def test_dynamic_dims_without_a_sequence_range_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"input 'input_ids' has dynamic dims \[-1\].*--seq min:opt:max"):
        derive_profile(text_config())


def test_model_without_batch_axis_has_a_static_profile_that_trtexec_gets_no_shapes_for() -> None:
    config = _config(
        {
            "name": "fixed",
            "platform": "onnxruntime_onnx",
            "max_batch_size": 0,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3, 4]}],
            "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [3]}],
        }
    )
    profile = derive_profile(config)
    assert profile.inputs[0].dynamic is False and profile.inputs[0].maximum == (3, 4)
    assert profile.dynamic_inputs == ()
    command = trtexec_command(
        onnx_path=Path("m.onnx"), engine_path=Path("m.plan"), profile=profile, timing_cache=Path("t")
    )
    assert not any(arg.startswith(("--minShapes", "--optShapes", "--maxShapes")) for arg in command)
    with pytest.raises(ConfigError, match="no batch axis"):
        derive_profile(config, typical_batch=4)


def test_reshaped_input_profiles_the_shape_the_model_sees() -> None:
    config = _config(
        {
            "name": "scalar_in",
            "platform": "onnxruntime_onnx",
            "max_batch_size": 16,
            "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1], "reshape": {"shape": []}}],
            "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}],
        }
    )
    assert derive_profile(config).inputs[0].maximum == (16,)


def test_string_inputs_cannot_become_an_engine() -> None:
    config = _config(
        {
            "name": "tokenizer",
            "backend": "python",
            "max_batch_size": 8,
            "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}],
            "output": [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]}],
        }
    )
    with pytest.raises(ConfigError, match="string tensor"):
        derive_profile(config)


@pytest.mark.parametrize("text", ["1:128", "a:b:c", "0:1:2", "1:300:256"])
def test_sequence_range_rejects_malformed_or_unordered_text(text: str) -> None:
    with pytest.raises(ConfigError, match="min:opt:max|1 <= min <= opt <= max"):
        SequenceRange.parse(text)


# --- trtexec ---------------------------------------------------------------------------------------------------------


def test_trtexec_command_is_strongly_typed_with_the_profile_and_timing_cache(digits_config: Any) -> None:
    profile = derive_profile(digits_config)
    command = trtexec_command(
        onnx_path=Path("/r/digits/1/model.onnx"), engine_path=Path("/o/model.sm90.plan"), profile=profile,
        timing_cache=Path("/c/timing-sm90.cache"), workspace_bytes=2 << 30, device=1,
    )  # fmt: skip
    assert command == [
        "trtexec",
        "--onnx=/r/digits/1/model.onnx",
        "--saveEngine=/o/model.sm90.plan",
        "--minShapes=image:1x1x8x8",
        "--optShapes=image:8x1x8x8",
        "--maxShapes=image:64x1x8x8",
        "--stronglyTyped",
        "--noTF32",
        "--memPoolSize=workspace:2048",
        "--timingCacheFile=/c/timing-sm90.cache",
        "--device=1",
        "--skipInference",
    ]
    assert not {"--fp16", "--int8", "--best"} & set(command)
    assert "--noTF32" not in trtexec_command(
        onnx_path=Path("m"), engine_path=Path("e"), profile=profile, timing_cache=Path("t"), tf32=True
    )


def test_trtexec_command_lists_every_dynamic_input_of_the_text_model() -> None:
    profile = derive_profile(text_config(), sequence_range=SequenceRange(minimum=1, optimum=128, maximum=256))
    command = trtexec_command(
        onnx_path=Path("m.onnx"), engine_path=Path("m.plan"), profile=profile, timing_cache=Path("t")
    )
    assert "--minShapes=input_ids:1x1,attention_mask:1x1" in command
    assert "--optShapes=input_ids:8x128,attention_mask:8x128" in command
    assert "--maxShapes=input_ids:64x256,attention_mask:64x256" in command


def test_trtexec_command_refuses_a_workspace_under_one_mib(digits_config: Any) -> None:
    with pytest.raises(ConfigError, match="below 1 MiB"):
        trtexec_command(
            onnx_path=Path("m"), engine_path=Path("e"), profile=derive_profile(digits_config), timing_cache=Path("t"),
            workspace_bytes=1000,
        )  # fmt: skip
