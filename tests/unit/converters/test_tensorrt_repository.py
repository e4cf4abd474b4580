"""`tensorrt_plan` versions in a GPU repository, with a stand-in builder: cc_model_filenames, manifests, atomicity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from converter_models import snapshot
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonforge.converters import tensorrt_repository
from tritonforge.converters.export import ExportedVersion
from tritonforge.converters.gpu_info import GpuInfo
from tritonforge.converters.repository import MANIFEST_NAME, sha256_file
from tritonforge.converters.tensorrt_build import EngineBuild
from tritonforge.converters.tensorrt_profiles import ShapeProfile
from tritonforge.converters.tensorrt_repository import (
    build_engine_to_repository,
    engine_filename,
    merge_cc_filenames,
    plan_engine_build,
    tensorrt_plan_config,
)
from tritonforge.converters.triton_config import config_to_text, read_config, write_config
from tritonforge.errors import ConfigError, ConversionError

H100 = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
A100 = GpuInfo(index=0, name="NVIDIA A100-SXM4-80GB", compute_capability="8.0")


@pytest.fixture
def digits_config(golden_digits_config: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(golden_digits_config, model_config_pb2.ModelConfig())


def test_engine_file_is_named_after_the_compute_capability() -> None:
    assert engine_filename("9.0") == "model.sm90.plan"
    assert engine_filename("12.0") == "model.sm120.plan"
    with pytest.raises(ConfigError):
        engine_filename("sm90")


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

    monkeypatch.setattr(tensorrt_repository, "write_config", broken_write_config)
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
