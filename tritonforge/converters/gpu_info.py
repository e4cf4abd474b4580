"""What GPU and which TensorRT are here: nvidia-smi's answer, trtexec's banner, the `tensorrt` package's version.

    gpu = query_gpu(0)                     # GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    gpu.sm                                 # "sm90": engine files and timing caches are named after it
    trt = import_tensorrt()                # the TensorRT Python package, refused when older than 10

Why: a TensorRT engine runs only on the compute capability and the TensorRT version that built it, so every engine
is filed under both. nvidia-smi answers the GPU question without CUDA or TensorRT installed (the --dry-run on a CPU
machine simply gets no GPU), and CUDA_VISIBLE_DEVICES is honoured so device N means the same GPU as for CUDA.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonforge.errors import ConfigError, ConversionError

TRTEXEC_IMAGE_PATH = Path("/usr/src/tensorrt/bin/trtexec")
MIN_TENSORRT_MAJOR = 10
NO_BUILDER_FIX = (
    "run this on the GPU node in NVIDIA's Triton/TensorRT image (nvcr.io/nvidia/tensorrt), or `pip install tensorrt`"
)
_CC_PATTERN = re.compile(r"^\d+\.\d+$")
_TRT_BANNER = re.compile(r"TensorRT v(\d+)")


def check_compute_capability(compute_capability: str) -> str:
    """Return `compute_capability` when it looks like "9.0" (the key of `cc_model_filenames`).

    Raises:
        ConfigError: anything else, e.g. "sm90".
    """
    if not _CC_PATTERN.match(compute_capability):
        raise ConfigError(f"compute capability {compute_capability!r} must look like 9.0")
    return compute_capability


@dataclass(frozen=True, kw_only=True)
class GpuInfo:
    """The GPU an engine is built for.

    Attributes:
        index: the device index (as nvidia-smi numbers it).
        name: e.g. "NVIDIA H100 80GB HBM3".
        compute_capability: "major.minor", e.g. "9.0": the key of `cc_model_filenames`.
    """

    index: int
    name: str
    compute_capability: str

    def __post_init__(self) -> None:
        check_compute_capability(self.compute_capability)

    @property
    def sm(self) -> str:
        """The architecture tag, e.g. "sm90" for compute capability 9.0."""
        return "sm" + self.compute_capability.replace(".", "")


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Parse `nvidia-smi --query-gpu=index,name,compute_cap --format=csv,noheader` output.

    Raises:
        ConversionError: a line that does not have the three fields (e.g. a driver without compute_cap).
    """
    gpus = []
    for line in text.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < 3 or not parts[0].isdigit() or not _CC_PATTERN.match(parts[-1]):
            raise ConversionError(
                f"unexpected nvidia-smi line {line.strip()!r}; a driver that supports --query-gpu=compute_cap "
                "(R510 or newer) is needed"
            )
        gpus.append(GpuInfo(index=int(parts[0]), name=", ".join(parts[1:-1]), compute_capability=parts[-1]))
    return gpus


def physical_gpu_index(device: int, visible_devices: str | None) -> int:
    """Map a CUDA device index to nvidia-smi's index through CUDA_VISIBLE_DEVICES (when it lists plain indices)."""
    if not visible_devices:
        return device
    entries = [entry.strip() for entry in visible_devices.split(",") if entry.strip()]
    if all(entry.isdigit() for entry in entries) and device < len(entries):
        return int(entries[device])
    return device  # UUIDs or MIG names: nvidia-smi's numbering is the best guess left


def query_gpu(device: int = 0) -> GpuInfo:
    """Return the name and compute capability of CUDA device `device`, from nvidia-smi.

    Raises:
        ConversionError: no nvidia-smi (not a GPU node), it failed, or it has no such device.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise ConversionError(
            "nvidia-smi not found: TensorRT engines are built on the GPU node that serves them; " + NO_BUILDER_FIX
        )
    result = subprocess.run(
        [smi, "--query-gpu=index,name,compute_cap", "--format=csv,noheader"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if result.returncode != 0:
        raise ConversionError(f"nvidia-smi failed ({result.returncode}): {' '.join(result.stderr.split())[:300]}")
    index = physical_gpu_index(device, os.environ.get("CUDA_VISIBLE_DEVICES"))
    for gpu in parse_nvidia_smi(result.stdout):
        if gpu.index == index:
            return gpu
    raise ConversionError(f"no GPU with index {index} (device {device}); nvidia-smi lists: {result.stdout.strip()}")


def parse_trtexec_version(output: str) -> str | None:
    """Return the TensorRT version from trtexec's banner ("[TensorRT v100300]" -> "10.3.0", "v8601" -> "8.6.1")."""
    match = _TRT_BANNER.search(output)
    if match is None:
        return None
    number = int(match.group(1))
    if number >= 10000:  # TensorRT 10 on: major * 10000 + minor * 100 + patch
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"  # TensorRT 8: major * 1000 + minor * 100 + patch


def find_trtexec() -> str | None:
    """Return the trtexec executable: on PATH, or where NVIDIA's images install it."""
    found = shutil.which("trtexec")
    if found is not None:
        return found
    return str(TRTEXEC_IMAGE_PATH) if TRTEXEC_IMAGE_PATH.is_file() else None


def import_tensorrt() -> Any:
    """Import the TensorRT Python package, checking that it is version 10 or newer.

    Raises:
        ConversionError: not installed, or older than TensorRT 10.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ConversionError("the TensorRT Python package is not installed; " + NO_BUILDER_FIX) from exc
    version = str(trt.__version__)
    if int(version.split(".")[0]) < MIN_TENSORRT_MAJOR:
        raise ConversionError(
            f"TensorRT {version} is too old: tritonforge builds strongly typed networks with TensorRT "
            f"{MIN_TENSORRT_MAJOR} or newer; use a current Triton/TensorRT image"
        )
    return trt
