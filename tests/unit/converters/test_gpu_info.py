"""GPU and TensorRT discovery: nvidia-smi and trtexec output parsing, and the one-line errors on a CPU machine."""

from __future__ import annotations

from typing import Any

import pytest

from tritonforge.converters import gpu_info
from tritonforge.converters.gpu_info import GpuInfo, parse_nvidia_smi, parse_trtexec_version, physical_gpu_index
from tritonforge.errors import ConversionError

H100 = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0")


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


def test_import_tensorrt_without_the_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_tensorrt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(ConversionError, match="pip install tensorrt"):
        gpu_info.import_tensorrt()


def test_query_gpu_without_nvidia_smi_says_to_build_on_the_gpu_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConversionError, match="nvidia-smi not found: TensorRT engines are built on the GPU node"):
        gpu_info.query_gpu()
