"""Engine builds without a GPU: the builder choice, and trtexec builds through a stand-in script."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonforge.converters import tensorrt_build
from tritonforge.converters.gpu_info import GpuInfo
from tritonforge.converters.tensorrt_build import build_engine, resolve_builder
from tritonforge.converters.tensorrt_profiles import derive_profile
from tritonforge.errors import ConversionError

H100 = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0")


@pytest.fixture
def digits_config(golden_digits_config: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(golden_digits_config, model_config_pb2.ModelConfig())


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
