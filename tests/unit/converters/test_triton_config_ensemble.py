from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import (
    ENSEMBLE_PLATFORM,
    EnsembleStep,
    InstanceKind,
    ModelConfigSpec,
    build_model_config,
    config_to_text,
    read_config,
    write_config,
)
from tritonforge.errors import ConfigError

TEXT = TensorSpec(name="TEXT", shape=(1,), dtype="object")
EMBEDDING = TensorSpec(name="EMBEDDING", shape=(384,), dtype="float32")


def _steps() -> tuple[EnsembleStep, ...]:
    return (
        EnsembleStep(
            model_name="tok",
            input_map={"TEXT": "TEXT"},
            output_map={"input_ids": "ids", "attention_mask": "mask"},
        ),
        EnsembleStep(
            model_name="enc",
            model_version=3,
            input_map={"input_ids": "ids", "attention_mask": "mask"},
            output_map={"embedding": "EMBEDDING"},
        ),
    )


@pytest.fixture
def ensemble_spec() -> ModelConfigSpec:
    return ModelConfigSpec(
        name="text",
        platform=ENSEMBLE_PLATFORM,
        max_batch_size=16,
        inputs=[TEXT],
        outputs=[EMBEDDING],
        ensemble_steps=list(_steps()),
    )


def test_build_model_config_writes_ensemble_scheduling_without_instances_when_platform_is_ensemble(
    ensemble_spec: ModelConfigSpec,
) -> None:
    config = build_model_config(ensemble_spec)

    assert config.platform == "ensemble" and not config.backend
    assert not config.instance_group and not config.HasField("dynamic_batching")
    assert config.input[0].data_type == model_config_pb2.TYPE_STRING and list(config.input[0].dims) == [1]
    steps = config.ensemble_scheduling.step
    assert [(s.model_name, s.model_version) for s in steps] == [("tok", -1), ("enc", 3)]
    assert dict(steps[0].output_map) == {"input_ids": "ids", "attention_mask": "mask"}
    assert dict(steps[1].input_map) == {"input_ids": "ids", "attention_mask": "mask"}
    assert dict(steps[1].output_map) == {"embedding": "EMBEDDING"}


def test_ensemble_config_round_trips_through_config_pbtxt(ensemble_spec: ModelConfigSpec, tmp_path: Path) -> None:
    config = build_model_config(ensemble_spec)
    path = write_config(config, tmp_path / "config.pbtxt")

    assert read_config(path) == config
    assert "ensemble_scheduling {" in path.read_text() and "instance_group" not in path.read_text()


def test_build_model_config_writes_parameters_as_string_values_when_given() -> None:
    spec = ModelConfigSpec(
        name="tok",
        platform=None,
        backend="python",
        max_batch_size=8,
        inputs=[TEXT],
        outputs=[TensorSpec(name="input_ids", shape=(-1,), dtype="int64")],
        parameters={"max_length": "256", "padding": "request"},
    )
    config = build_model_config(spec)

    assert {k: v.string_value for k, v in config.parameters.items()} == {"max_length": "256", "padding": "request"}
    assert config.instance_group[0].count == 1  # a non-ensemble keeps its instances


def test_model_config_spec_keeps_its_own_copy_of_parameters_and_maps(ensemble_spec: ModelConfigSpec) -> None:
    params = {"a": "1"}
    spec = dataclasses.replace(ensemble_spec, parameters=params)
    params["a"] = "changed"
    step_map = {"TEXT": "TEXT"}
    step = EnsembleStep(model_name="tok", input_map=step_map, output_map={"x": "y"})
    step_map["TEXT"] = "other"

    assert spec.parameters == {"a": "1"} and step.input_map == {"TEXT": "TEXT"}


def _replace_step(index: int, **changes: object) -> list[EnsembleStep]:
    steps = list(_steps())
    steps[index] = dataclasses.replace(steps[index], **changes)
    return steps


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ensemble_steps": ()}, "needs at least one step"),
        ({"max_queue_delay_us": 100}, "cannot set dynamic batching or instances"),
        ({"instance_count": 2}, "cannot set dynamic batching or instances"),
        ({"instance_kind": InstanceKind.GPU}, "cannot set dynamic batching or instances"),
        ({"ensemble_steps": _replace_step(1, input_map={"input_ids": "idz", "attention_mask": "mask"})}, r"\['idz'\]"),
        ({"ensemble_steps": _replace_step(1, output_map={"embedding": "OTHER"})}, r"output\(s\) \['EMBEDDING'\]"),
        ({"ensemble_steps": _replace_step(1, output_map={"embedding": "ids"})}, "already have a producer"),
        ({"ensemble_steps": _replace_step(0, output_map={"input_ids": "TEXT", "m": "mask"})}, "have a producer"),
        (
            {"inputs": [TEXT, TensorSpec(name="LANG", shape=(1,), dtype="object")]},
            r"input\(s\) \['LANG'\] feed no step",
        ),
        ({"parameters": {"k": 1}}, "parameters must map non-empty names to strings"),
        ({"parameters": {"": "v"}}, "parameters must map non-empty names to strings"),
    ],
)
def test_ensemble_spec_raises_config_error_when_inconsistent(
    ensemble_spec: ModelConfigSpec, changes: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(ensemble_spec, **changes)


def test_model_config_spec_refuses_steps_without_the_ensemble_platform(ensemble_spec: ModelConfigSpec) -> None:
    with pytest.raises(ConfigError, match="ensemble_steps need platform='ensemble'"):
        dataclasses.replace(ensemble_spec, platform="onnxruntime_onnx")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_version": 0}, "must be >= 1, or -1 for latest"),
        ({"input_map": {}}, "needs a non-empty input_map"),
        ({"output_map": {"a": " b"}}, "empty or padded names"),
        ({"output_map": {"a": "x", "b": "x"}}, "maps two outputs to one ensemble tensor"),
        ({"model_name": "a/b"}, "plain folder name"),
    ],
)
def test_ensemble_step_raises_config_error_when_invalid(kwargs: dict, message: str) -> None:
    base = {"model_name": "tok", "input_map": {"TEXT": "TEXT"}, "output_map": {"ids": "ids"}}
    with pytest.raises(ConfigError, match=message):
        EnsembleStep(**{**base, **kwargs})


def test_ensemble_text_lists_steps_in_the_order_given(ensemble_spec: ModelConfigSpec) -> None:
    text = config_to_text(build_model_config(ensemble_spec))
    assert text.index('model_name: "tok"') < text.index('model_name: "enc"')
