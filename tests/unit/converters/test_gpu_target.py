from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import onnx
import pytest
import typer
from converter_models import snapshot
from google.protobuf import json_format, text_format
from onnx import TensorProto, helper
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from tritonforge import _atomic as atomic_module
from tritonforge.cli.gpu import build_engine, repository
from tritonforge.converters import gpu_target
from tritonforge.converters.gpu_target import (
    PrecisionMode,
    TensorRTAccelerator,
    detect_precision,
    gpu_config,
    parse_size,
    write_gpu_repository,
)
from tritonforge.converters.tensorrt_profiles import SequenceRange
from tritonforge.converters.triton_config import read_config, write_config
from tritonforge.errors import ConfigError

KIND_GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU


@pytest.fixture
def digits_config(golden_digits_config: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(golden_digits_config, model_config_pb2.ModelConfig())


def _params(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    return dict(accelerator.parameters)


def _round_trip(config: model_config_pb2.ModelConfig, tmp_path: Path) -> model_config_pb2.ModelConfig:
    write_config(config, tmp_path / "config.pbtxt")
    return read_config(tmp_path / "config.pbtxt")


# --- gpu_config ------------------------------------------------------------------------------------------------------


def test_gpu_config_parses_back_with_accelerator_parameters_and_gpu_instances(
    digits_config: Any, tmp_path: Path
) -> None:
    settings = TensorRTAccelerator(
        precision_mode=PrecisionMode.FP16, max_workspace_size_bytes=parse_size("2G"), engine_cache_path="/cache/trt",
        min_subgraph_size=3,
    )  # fmt: skip
    parsed = _round_trip(gpu_config(digits_config, settings, instance_count=2, gpus=[0, 1]), tmp_path)

    assert _params(parsed) == {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": str(2 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/cache/trt/digits",
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": "/cache/trt",
        "trt_min_subgraph_size": "3",
        "trt_profile_min_shapes": "image:1x1x8x8",
        "trt_profile_opt_shapes": "image:8x1x8x8",
        "trt_profile_max_shapes": "image:64x1x8x8",
    }
    (group,) = parsed.instance_group
    assert (group.kind, group.count, list(group.gpus)) == (KIND_GPU, 2, [0, 1])
    assert (parsed.platform, parsed.max_batch_size) == ("onnxruntime_onnx", 64)
    assert parsed.input == digits_config.input and parsed.dynamic_batching == digits_config.dynamic_batching
    assert digits_config.instance_group[0].kind != KIND_GPU  # the source config is not modified


def test_gpu_config_without_caches_or_profile_has_only_precision_and_workspace(digits_config: Any) -> None:
    settings = TensorRTAccelerator(engine_cache_enable=False, timing_cache_enable=False, explicit_profile=False)
    assert _params(gpu_config(digits_config, settings)) == {
        "precision_mode": "FP32",
        "max_workspace_size_bytes": str(1 << 30),
    }


def test_gpu_config_replaces_an_earlier_gpu_accelerator_instead_of_adding_a_second(digits_config: Any) -> None:
    once = gpu_config(digits_config, TensorRTAccelerator(precision_mode=PrecisionMode.INT8))
    twice = gpu_config(once, TensorRTAccelerator())
    assert _params(twice)["precision_mode"] == "FP32" and len(twice.instance_group) == 1


def test_text_model_profile_comes_from_the_sequence_range() -> None:
    config = json_format.ParseDict(
        {
            "name": "minilm_encoder",
            "platform": "onnxruntime_onnx",
            "max_batch_size": 32,
            "input": [
                {"name": "input_ids", "data_type": "TYPE_INT64", "dims": [-1]},
                {"name": "attention_mask", "data_type": "TYPE_INT64", "dims": [-1]},
            ],
            "output": [{"name": "embedding", "data_type": "TYPE_FP32", "dims": [384]}],
        },
        model_config_pb2.ModelConfig(),
    )
    with pytest.raises(ConfigError, match="--seq"):
        gpu_config(config)
    params = _params(gpu_config(config, TensorRTAccelerator(sequence_range=SequenceRange.parse("1:128:256"))))
    assert params["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    assert params["trt_profile_max_shapes"] == "input_ids:32x256,attention_mask:32x256"


def test_only_onnx_models_take_the_tensorrt_accelerator() -> None:
    python_model = model_config_pb2.ModelConfig(name="tokenizer", backend="python")
    with pytest.raises(ConfigError, match="only ONNX Runtime models take the TensorRT accelerator"):
        gpu_config(python_model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"instance_count": 0}, "instance count 0"), ({"gpus": [0, 0]}, "distinct"), ({"gpus": [-1]}, "distinct")],
)
def test_gpu_config_rejects_bad_placement(digits_config: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        gpu_config(digits_config, **kwargs)


@pytest.mark.parametrize(
    ("text", "size"), [("1073741824", 1 << 30), ("512M", 512 << 20), ("1G", 1 << 30), ("2GiB", 2 << 30), ("64k", 65536)]
)
def test_parse_size_reads_bytes_and_binary_suffixes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "1.5G", "1T", "-1"])
def test_parse_size_rejects_other_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="positive number of bytes"):
        parse_size(text)


def test_settings_validate_their_values() -> None:
    with pytest.raises(ConfigError, match="max_workspace_size_bytes"):
        TensorRTAccelerator(max_workspace_size_bytes=0)
    with pytest.raises(ConfigError, match="cache path"):
        TensorRTAccelerator(engine_cache_path='/a"b')


# --- precision from the graph ----------------------------------------------------------------------------------------


def _save(tmp_path: Path, nodes: list[Any], initializers: list[Any], name: str) -> Path:
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], initializers,
    )  # fmt: skip
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_precision_is_read_from_the_graph(tmp_path: Path) -> None:
    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [0])
    qdq = _save(
        tmp_path,
        [
            helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"]),
        ],
        [scale, zero],
        "qdq",
    )
    half = helper.make_tensor("w", TensorProto.FLOAT16, [4], [1.0, 2.0, 3.0, 4.0])
    fp16 = _save(
        tmp_path,
        [
            helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16),
            helper.make_node("Mul", ["xh", "w"], ["yh"]),
            helper.make_node("Cast", ["yh"], ["y"], to=TensorProto.FLOAT),
        ],
        [half],
        "fp16",
    )
    fp32 = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [], "fp32")

    assert [detect_precision(p) for p in (qdq, fp16, fp32)] == [
        PrecisionMode.INT8,
        PrecisionMode.FP16,
        PrecisionMode.FP32,
    ]
    with pytest.raises(ConfigError, match="not a readable ONNX model"):
        detect_precision(tmp_path / "missing.onnx")


# --- write_gpu_repository --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_repository(tmp_path_factory: pytest.TempPathFactory, trained_digits: Path) -> Path:
    """The digits example, plus a python-backend model and an ensemble calling both (as the text example does)."""
    root = tmp_path_factory.mktemp("gpu_target")
    repository = root / "model_repository"
    shutil.copytree(trained_digits, repository)
    tokenizer = repository / "tokenizer"
    (tokenizer / "1").mkdir(parents=True)
    (tokenizer / "1" / "model.py").write_text("# python backend model\n")
    write_config(
        json_format.ParseDict(
            {
                "name": "tokenizer",
                "backend": "python",
                "max_batch_size": 8,
                "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}],
                "output": [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 8, 8]}],
                "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
            },
            model_config_pb2.ModelConfig(),
        ),
        tokenizer / "config.pbtxt",
    )
    ensemble = repository / "pipeline"
    (ensemble / "1").mkdir(parents=True)
    write_config(
        json_format.ParseDict(
            {
                "name": "pipeline",
                "platform": "ensemble",
                "max_batch_size": 8,
                "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}],
                "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}],
                "ensemble_scheduling": {
                    "step": [
                        {
                            "model_name": "tokenizer",
                            "model_version": -1,
                            "input_map": {"text": "text"},
                            "output_map": {"image": "pixels"},
                        },
                        {
                            "model_name": "digits",
                            "model_version": -1,
                            "input_map": {"image": "pixels"},
                            "output_map": {"logits": "logits"},
                        },
                    ]
                },
            },  # fmt: skip
            model_config_pb2.ModelConfig(),
        ),
        ensemble / "config.pbtxt",
    )
    return repository


@pytest.fixture
def source(digits_repository: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model_repository"
    shutil.copytree(digits_repository, copy)
    return copy


def test_gpu_repository_rewrites_onnx_configs_copies_the_rest_and_leaves_the_source_alone(
    source: Path, tmp_path: Path
) -> None:
    before = snapshot(source)
    output = tmp_path / "gpu_model_repository"

    written = write_gpu_repository(source, output, TensorRTAccelerator(), instance_count=2)

    assert snapshot(source) == before
    assert written.accelerated == {"digits": "FP32"}
    assert written.copied == ("pipeline", "tokenizer") and written.kept == ()
    assert sorted(p.name for p in output.iterdir()) == ["digits", "pipeline", "tokenizer"]
    config = read_config(output / "digits" / "config.pbtxt")
    assert _params(config)["trt_profile_max_shapes"] == "image:64x1x8x8"
    assert [(g.kind, g.count) for g in config.instance_group] == [(KIND_GPU, 2)]
    for name in ("1/model.onnx", "1/manifest.json"):
        assert (output / "digits" / name).read_bytes() == (source / "digits" / name).read_bytes()
    for model in ("tokenizer", "pipeline"):
        assert (output / model / "config.pbtxt").read_bytes() == (source / model / "config.pbtxt").read_bytes()
    assert (output / "tokenizer" / "1" / "model.py").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_ensemble_brings_the_models_it_calls(source: Path, tmp_path: Path) -> None:
    written = write_gpu_repository(source, tmp_path / "gpu", models=["pipeline"])
    assert sorted(p.name for p in (tmp_path / "gpu").iterdir()) == ["digits", "pipeline", "tokenizer"]
    assert written.accelerated == {"digits": "FP32"}

    only_digits = write_gpu_repository(source, tmp_path / "gpu_digits", models=["digits"])
    assert sorted(p.name for p in (tmp_path / "gpu_digits").iterdir()) == ["digits"]
    assert only_digits.copied == ()


def test_an_ensemble_calling_a_missing_model_or_an_unknown_model_is_refused(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\(s\) \['nope'\] are not in the source repository"):
        write_gpu_repository(source, tmp_path / "gpu", models=["nope"])
    shutil.rmtree(source / "tokenizer")
    with pytest.raises(ConfigError, match="ensemble 'pipeline' calls model 'tokenizer'"):
        write_gpu_repository(source, tmp_path / "gpu")
    assert not (tmp_path / "gpu").exists()


def test_a_failure_leaves_the_previous_gpu_repository_exactly_as_it_was(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "gpu"
    write_gpu_repository(source, output, TensorRTAccelerator(precision_mode=PrecisionMode.FP16))
    before = snapshot(output)

    def broken_gpu_config(*args: Any, **kwargs: Any) -> Any:
        raise ConfigError("model 'digits': rejected")

    monkeypatch.setattr(gpu_target, "gpu_config", broken_gpu_config)
    with pytest.raises(ConfigError, match="rejected"):
        write_gpu_repository(source, output, TensorRTAccelerator())

    assert snapshot(output) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failure_while_swapping_in_puts_the_previous_repository_back(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "gpu"
    write_gpu_repository(source, output, models=["digits"])
    before = snapshot(output)
    real_rename = atomic_module._rename_dir

    def rename_failing_on_staging(source: Path, target: Path, *, exchange: bool) -> bool:
        if ".staging-" in str(source):
            raise OSError("rename failed")
        return real_rename(source, target, exchange=exchange)

    monkeypatch.setattr(atomic_module, "_rename_dir", rename_failing_on_staging)
    with pytest.raises(OSError, match="rename failed"):
        write_gpu_repository(source, output)

    assert snapshot(output) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_rewriting_keeps_built_engines_and_drops_models_the_source_no_longer_has(source: Path, tmp_path: Path) -> None:
    output = tmp_path / "gpu"
    write_gpu_repository(source, output)
    engine_model = output / "digits_trt"
    (engine_model / "1").mkdir(parents=True)
    (engine_model / "1" / "model.sm90.plan").write_bytes(b"engine")
    write_config(
        model_config_pb2.ModelConfig(name="digits_trt", platform="tensorrt_plan", max_batch_size=64),
        engine_model / "config.pbtxt",
    )
    shutil.rmtree(source / "pipeline")

    written = write_gpu_repository(source, output)

    assert written.kept == ("digits_trt",)
    assert (output / "digits_trt" / "1" / "model.sm90.plan").read_bytes() == b"engine"
    assert sorted(p.name for p in output.iterdir()) == ["digits", "digits_trt", "tokenizer"]


def test_the_output_must_be_outside_the_source_and_hold_only_models(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be outside the source repository"):
        write_gpu_repository(source, source / "gpu")
    stray = tmp_path / "home"
    stray.mkdir()
    (stray / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"holds \['notes.txt'\], which are not models"):
        write_gpu_repository(source, stray)
    assert (stray / "notes.txt").read_text() == "keep me"


# --- CLI -------------------------------------------------------------------------------------------------------------


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("repository")(repository)
    app.command("build-engine")(build_engine)
    return app


def test_repository_command_writes_and_lists_the_models(app: typer.Typer, source: Path, tmp_path: Path) -> None:
    output = tmp_path / "gpu"
    args = ["repository", str(source), "-o", str(output), "--precision", "FP16", "--workspace", "512M", "--gpu", "1"]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert "digits: onnxruntime + TensorRT FP16, KIND_GPU x1" in result.output
    assert "tokenizer: copied unchanged" in result.output
    params = _params(read_config(output / "digits" / "config.pbtxt"))
    assert params["max_workspace_size_bytes"] == str(512 << 20) and params["precision_mode"] == "FP16"
    assert list(read_config(output / "digits" / "config.pbtxt").instance_group[0].gpus) == [1]


def test_build_engine_dry_run_prints_profile_and_trtexec_command_without_a_gpu(
    app: typer.Typer, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tritonforge.converters.gpu_info.shutil.which", lambda name: None)  # no nvidia-smi
    args = ["build-engine", "-m", "digits", "-r", str(source), "-o", str(tmp_path / "gpu"), "--dry-run"]
    result = CliRunner().invoke(app, [*args, "--typical-batch", "16"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith("digits_trt/1/model.sm<cc>.plan")
    assert lines[1].split() == ["input", "min", "opt", "max"]
    assert lines[2].split() == ["image", "1x1x8x8", "16x1x8x8", "64x1x8x8"]
    assert "--optShapes=image:16x1x8x8" in lines[3] and "--stronglyTyped" in lines[3]
    assert not (tmp_path / "gpu").exists()


def test_build_engine_rejects_a_bad_sequence_range(app: typer.Typer, source: Path, tmp_path: Path) -> None:
    args = ["build-engine", "-m", "digits", "-r", str(source), "-o", str(tmp_path / "gpu"), "--seq", "1-2-3"]
    result = CliRunner().invoke(app, [*args, "--dry-run"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "min:opt:max" in str(result.exception)
