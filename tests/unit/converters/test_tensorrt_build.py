from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from converter_models import snapshot
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from tritonforge.converters import tensorrt_build
from tritonforge.converters.export import ExportedVersion
from tritonforge.converters.repository import MANIFEST_NAME, sha256_file
from tritonforge.converters.tensorrt_build import (
    EngineBuild,
    GpuInfo,
    SequenceRange,
    ShapeProfile,
    build_engine,
    build_engine_to_repository,
    derive_profile,
    engine_filename,
    merge_cc_filenames,
    parse_nvidia_smi,
    parse_trtexec_version,
    physical_gpu_index,
    plan_engine_build,
    resolve_builder,
    tensorrt_plan_config,
    trtexec_command,
)
from tritonforge.converters.triton_config import config_to_text, read_config, write_config
from tritonforge.errors import ConfigError, ConversionError

H100 = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
A100 = GpuInfo(index=0, name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")


def _config(data: dict[str, Any]) -> model_config_pb2.ModelConfig:
    return json_format.ParseDict(data, model_config_pb2.ModelConfig())


@pytest.fixture
def digits_config(golden_digits_config: str) -> model_config_pb2.ModelConfig:
    from google.protobuf import text_format

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


@pytest.mark.parametrize(
    ("banner", "version"),
    [
        ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx", "10.3.0"),
        ("[TensorRT v110001]", "11.0.1"),
        ("&&&& PASSED TensorRT.trtexec [TensorRT v8601]", "8.6.1"),
        ("no banner", None),
    ],
)
def test_trtexec_version_is_read_from_its_banner(banner: str, version: str | None) -> None:
    assert parse_trtexec_version(banner) == version


# --- GPU discovery and builder choice --------------------------------------------------------------------------------


def test_nvidia_smi_lines_become_gpu_infos_with_sm_tags() -> None:
    gpus = parse_nvidia_smi("0, NVIDIA H100 80GB HBM3, 9.0\n1, NVIDIA A100-SXM4-80GB, 8.0\n")
    assert gpus == [H100, GpuInfo(index=1, name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")]
    assert [g.sm for g in gpus] == ["sm90", "sm80"]
    with pytest.raises(ConversionError, match="compute_cap"):
        parse_nvidia_smi("0, Tesla K80, [N/A]")


def test_cuda_visible_devices_maps_the_device_to_nvidia_smi_numbering() -> None:
    assert physical_gpu_index(0, None) == 0
    assert physical_gpu_index(1, "3,5") == 5
    assert physical_gpu_index(0, "GPU-8f6c") == 0


def test_engine_file_is_named_after_the_compute_capability() -> None:
    assert engine_filename("9.0") == "model.sm90.plan"
    assert engine_filename("12.0") == "model.sm120.plan"
    with pytest.raises(ConfigError):
        engine_filename("sm90")


def _no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None if name == "tensorrt" else real_find_spec(name))
    monkeypatch.setattr(tensorrt_build, "find_trtexec", lambda: None)


def test_without_tensorrt_or_trtexec_the_build_fails_with_one_line_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, digits_config: Any, tmp_path: Path
) -> None:
    _no_tensorrt(monkeypatch)
    with pytest.raises(ConversionError) as caught:
        build_engine(
            onnx_path=tmp_path / "m.onnx", engine_path=tmp_path / "m.plan", profile=derive_profile(digits_config),
            gpu=H100,
        )  # fmt: skip
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install tensorrt" in message and "nvcr.io/nvidia/tensorrt" in message
    assert not (tmp_path / "m.plan").exists()
    with pytest.raises(ConversionError, match="TensorRT Python package is not installed"):
        resolve_builder("python")


def test_import_tensorrt_without_the_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorrt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(ConversionError, match="pip install tensorrt"):
        tensorrt_build.import_tensorrt()


def test_query_gpu_without_nvidia_smi_says_to_build_on_the_gpu_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConversionError, match="nvidia-smi not found: TensorRT engines are built on the GPU node"):
        tensorrt_build.query_gpu()


FAKE_TRTEXEC = """#!/bin/sh
# A stand-in for trtexec: prints the banner, writes the engine and the timing cache it was given.
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec $*"
for arg in "$@"; do
  case "$arg" in
    --saveEngine=*) printf 'engine' > "${arg#--saveEngine=}" ;;
    --timingCacheFile=*) printf 'cache' > "${arg#--timingCacheFile=}" ;;
  esac
done
exit ${FAKE_TRTEXEC_EXIT:-0}
"""


@pytest.fixture
def fake_trtexec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "trtexec"
    script.write_text(FAKE_TRTEXEC)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_trtexec_build_reads_the_version_and_reuses_the_timing_cache_on_the_second_build(
    fake_trtexec: Path, digits_config: Any, tmp_path: Path
) -> None:
    profile = derive_profile(digits_config)
    cache = tmp_path / "cache" / "timing-sm90.cache"
    kwargs: dict[str, Any] = {"onnx_path": tmp_path / "m.onnx", "profile": profile, "timing_cache": cache, "gpu": H100}

    first = build_engine(engine_path=tmp_path / "a.plan", builder="trtexec", **kwargs)
    second = build_engine(engine_path=tmp_path / "b.plan", builder="trtexec", **kwargs)

    assert (first.tensorrt_version, first.builder, first.gpu) == ("10.3.0", "trtexec", H100)
    assert (first.timing_cache_reused, second.timing_cache_reused) == (False, True)
    assert (tmp_path / "a.plan").read_bytes() == b"engine" and cache.read_bytes() == b"cache"
    assert first.to_dict()["compute_capability"] == "9.0" and first.to_dict()["strongly_typed"] is True


def test_a_failing_trtexec_raises_with_its_log_and_the_command_to_rerun(
    fake_trtexec: Path, digits_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TRTEXEC_EXIT", "1")
    with pytest.raises(ConversionError, match="trtexec failed") as caught:
        build_engine(
            onnx_path=tmp_path / "m.onnx", engine_path=tmp_path / "m.plan", profile=derive_profile(digits_config),
            timing_cache=tmp_path / "t.cache", gpu=H100, builder="trtexec",
        )  # fmt: skip
    error = caught.value
    assert isinstance(error, ConversionError) and error.log_path is not None and error.repro_cmd is not None
    assert "RUNNING TensorRT.trtexec" in error.log_path.read_text()
    assert "--stronglyTyped" in error.repro_cmd
    error.log_path.unlink()


# --- repository side -------------------------------------------------------------------------------------------------


def test_cc_model_filenames_merge_adds_a_gpu_type_and_keeps_the_others_sorted() -> None:
    merged = merge_cc_filenames({"9.0": "model.sm90.plan"}, "8.0", "model.sm80.plan")
    assert list(merged.items()) == [("8.0", "model.sm80.plan"), ("9.0", "model.sm90.plan")]
    assert merge_cc_filenames(merged, "9.0", "model.sm90.plan") == merged
    assert list(merge_cc_filenames(merged, "12.0", "model.sm120.plan"))[-1] == "12.0"
    with pytest.raises(ConfigError, match="already serves compute capability 9.0"):
        merge_cc_filenames(merged, "8.6", "model.sm90.plan")


def test_plan_config_keeps_io_and_batching_and_puts_instances_on_gpus(digits_config: Any, tmp_path: Path) -> None:
    config = tensorrt_plan_config(
        digits_config, name="digits_trt", cc_model_filenames={"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"},
        default_model_filename="model.sm90.plan", instance_count=2, gpus=[0, 1],
    )  # fmt: skip
    write_config(config, tmp_path / "config.pbtxt")
    parsed = read_config(tmp_path / "config.pbtxt")

    assert parsed == config
    assert (parsed.platform, parsed.max_batch_size, parsed.default_model_filename) == (
        "tensorrt_plan", 64, "model.sm90.plan",
    )  # fmt: skip
    assert parsed.input == digits_config.input and parsed.output == digits_config.output
    assert parsed.dynamic_batching == digits_config.dynamic_batching
    assert dict(parsed.cc_model_filenames) == {"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"}
    (group,) = parsed.instance_group
    assert (group.kind, group.count, list(group.gpus)) == (model_config_pb2.ModelInstanceGroup.KIND_GPU, 2, [0, 1])
    assert "optimization" not in config_to_text(parsed)


class FakeBuilder:
    """Stands in for `build_engine` on a CPU machine: writes engine bytes and reports a TensorRT version."""

    def __init__(self, version: str = "10.3.0", fail: bool = False) -> None:
        self.version, self.fail, self.calls = version, fail, 0

    def __call__(self, *, onnx_path: Path, engine_path: Path, profile: ShapeProfile, gpu: GpuInfo, **kw: Any) -> Any:
        self.calls += 1
        if self.fail:
            raise ConversionError("TensorRT could not build an engine")
        engine_path.write_bytes(f"engine for {gpu.sm} from {onnx_path.name}".encode())
        return EngineBuild(
            engine_path=engine_path, gpu=gpu, tensorrt_version=self.version, builder="python", profile=profile,
            timing_cache=kw["timing_cache"], timing_cache_reused=False, workspace_bytes=kw["workspace_bytes"],
            tf32=kw["tf32"], build_seconds=0.5,
        )  # fmt: skip


def _build(exported: ExportedVersion, out: Path, gpu: GpuInfo, builder: FakeBuilder, **kw: Any) -> Any:
    return build_engine_to_repository(
        repository=exported.model_dir.parent, model="digits", output_repository=out, gpu=gpu, build=builder,
        timing_cache=out.parent / "timing.cache", **kw,
    )  # fmt: skip


def test_first_build_writes_a_plan_version_with_manifest_facts(exported: ExportedVersion, tmp_path: Path) -> None:
    out = tmp_path / "gpu_repository"
    written = _build(exported, out, H100, FakeBuilder())

    assert written.model_dir == out / "digits_trt" and written.version == exported.version
    assert written.engine_path == out / "digits_trt" / "1" / "model.sm90.plan" and written.engine_path.is_file()
    assert not written.added_to_existing and written.engines == {"9.0": "model.sm90.plan"}
    config = read_config(out / "digits_trt" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and dict(config.cc_model_filenames) == {"9.0": "model.sm90.plan"}
    manifest = json.loads((written.engine_path.parent / MANIFEST_NAME).read_text())
    engine = manifest["tensorrt"]["engines"]["9.0"]
    assert (engine["gpu"], engine["compute_capability"], engine["tensorrt_version"]) == (H100.name, "9.0", "10.3.0")
    assert engine["profile"]["inputs"]["image"] == {"min": [1, 1, 8, 8], "opt": [8, 1, 8, 8], "max": [64, 1, 8, 8]}
    assert engine["timing_cache"] == str(tmp_path / "timing.cache") and engine["build_seconds"] == 0.5
    assert engine["sha256"] == sha256_file(written.engine_path)
    assert manifest["source"]["sha256"] == sha256_file(exported.onnx_path)
    assert manifest["tool_versions"]["tensorrt"] == "10.3.0"


def test_a_second_gpu_type_joins_the_same_version_and_the_cc_map(exported: ExportedVersion, tmp_path: Path) -> None:
    out = tmp_path / "gpu_repository"
    _build(exported, out, H100, FakeBuilder())
    h100_engine = (out / "digits_trt" / "1" / "model.sm90.plan").read_bytes()

    written = _build(exported, out, A100, FakeBuilder())

    version_dir = out / "digits_trt" / "1"
    assert written.added_to_existing and written.engines == {"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"}
    assert sorted(p.name for p in version_dir.iterdir()) == [MANIFEST_NAME, "model.sm80.plan", "model.sm90.plan"]
    assert (version_dir / "model.sm90.plan").read_bytes() == h100_engine
    config = read_config(out / "digits_trt" / "config.pbtxt")
    assert dict(config.cc_model_filenames) == {"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"}
    manifest = json.loads((version_dir / MANIFEST_NAME).read_text())
    assert sorted(manifest["tensorrt"]["engines"]) == ["8.0", "9.0"]
    assert manifest["tensorrt"]["engines"]["8.0"]["gpu"] == A100.name
    assert not [p for p in (out / "digits_trt").iterdir() if p.name.startswith(".")]


def test_rebuilding_a_gpu_type_needs_overwrite_and_keeps_the_other_engines(
    exported: ExportedVersion, tmp_path: Path
) -> None:
    out = tmp_path / "gpu_repository"
    _build(exported, out, H100, FakeBuilder())
    _build(exported, out, A100, FakeBuilder())
    builder = FakeBuilder()

    with pytest.raises(ConfigError, match="already has an engine for compute capability 9.0.*--overwrite"):
        _build(exported, out, H100, builder)
    assert builder.calls == 0  # refused before the (long) build

    written = _build(exported, out, H100, builder, overwrite=True)
    assert written.added_to_existing and sorted(written.engines) == ["8.0", "9.0"]
    assert (out / "digits_trt" / "1" / "model.sm80.plan").is_file()


def test_mixed_tensorrt_versions_in_one_version_are_refused_and_nothing_changes(
    exported: ExportedVersion, tmp_path: Path
) -> None:
    out = tmp_path / "gpu_repository"
    _build(exported, out, H100, FakeBuilder(version="10.3.0"))
    before = snapshot(out)
    with pytest.raises(ConfigError, match=r"TensorRT \['10.3.0'\], this one with 10.8.0"):
        _build(exported, out, A100, FakeBuilder(version="10.8.0"))
    assert snapshot(out) == before

    written = _build(exported, out, A100, FakeBuilder(version="10.8.0"), overwrite=True)
    assert not written.added_to_existing and written.engines == {"8.0": "model.sm80.plan"}
    assert sorted(p.name for p in (out / "digits_trt" / "1").iterdir()) == [MANIFEST_NAME, "model.sm80.plan"]


def test_a_wrong_model_name_is_reported_before_asking_for_a_gpu(
    exported: ExportedVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)  # a CPU machine: no nvidia-smi
    with pytest.raises(ConfigError, match="does not exist"):
        build_engine_to_repository(
            repository=exported.model_dir.parent, model="nope", output_repository=tmp_path / "gpu", build=FakeBuilder()
        )
    with pytest.raises(ConversionError, match="nvidia-smi not found"):
        build_engine_to_repository(
            repository=exported.model_dir.parent,
            model="digits",
            output_repository=tmp_path / "gpu",
            build=FakeBuilder(),
        )


def test_a_failed_build_or_config_write_leaves_the_output_repository_unchanged(
    exported: ExportedVersion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "gpu_repository"
    with pytest.raises(ConversionError):
        _build(exported, out, H100, FakeBuilder(fail=True))
    assert not (out / "digits_trt").exists()

    _build(exported, out, H100, FakeBuilder())
    before = snapshot(out)

    def broken_write_config(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(tensorrt_build, "write_config", broken_write_config)
    with pytest.raises(OSError, match="disk full"):
        _build(exported, out, A100, FakeBuilder())
    assert snapshot(out) == before


def test_engines_from_another_onnx_file_need_overwrite_to_be_replaced(
    exported: ExportedVersion, tmp_path: Path
) -> None:
    out = tmp_path / "gpu_repository"
    _build(exported, out, H100, FakeBuilder())
    manifest_path = out / "digits_trt" / "1" / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["source"]["sha256"] = "0" * 64  # as if version 1 of the ONNX model had been re-exported since
    manifest_path.write_text(json.dumps(manifest))

    with pytest.raises(ConfigError, match="built from another ONNX file"):
        _build(exported, out, A100, FakeBuilder())
    written = _build(exported, out, A100, FakeBuilder(), overwrite=True)
    assert not written.added_to_existing
    assert sorted(p.name for p in (out / "digits_trt" / "1").iterdir()) == [MANIFEST_NAME, "model.sm80.plan"]


def test_engines_cannot_go_into_the_canonical_repository(exported: ExportedVersion) -> None:
    repository = exported.model_dir.parent
    with pytest.raises(ConfigError, match="is the source repository; write engines to a GPU repository"):
        build_engine_to_repository(
            repository=repository, model="digits", output_repository=repository, gpu=H100, build=FakeBuilder()
        )


def test_plan_without_a_gpu_keeps_a_cc_placeholder_and_picks_the_latest_version(exported: ExportedVersion) -> None:
    plan = plan_engine_build(
        repository=exported.model_dir.parent, model="digits", output_repository=Path("/gpu_repository")
    )
    assert plan.engine_filename is None and plan.version == 1 and plan.onnx_path == exported.onnx_path
    command = plan.trtexec_command()
    assert "--saveEngine=/gpu_repository/digits_trt/1/model.sm<cc>.plan" in command
    with pytest.raises(ConfigError, match="has no version 7"):
        plan_engine_build(repository=exported.model_dir.parent, model="digits", output_repository=Path("/g"), version=7)
