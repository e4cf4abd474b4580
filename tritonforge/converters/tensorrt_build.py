"""Build a strongly typed TensorRT engine from an ONNX file, with the Python API or trtexec (on the GPU node).

    profile = derive_profile(read_config(Path("model_repository/digits/config.pbtxt")))
    built = build_engine(onnx_path=onnx, engine_path=Path("model.sm90.plan"), profile=profile)
    built.tensorrt_version, built.timing_cache_reused      # ("10.3.0", True): facts the manifest records

Why one build path for TensorRT 10 and 11: networks are created STRONGLY_TYPED (the flag exists since TensorRT 9/10;
11 accepts it and is strongly typed regardless) and no precision builder flag is ever set, because TensorRT 11.0
removed BuilderFlag.FP16/INT8/BF16 in favour of typed graphs and explicit Q/DQ quantization (TensorRT "Migrating
from 10.x to 11.x": "Strongly Typed Networks Are Now Required"). Precision therefore comes from the ONNX itself: the
FP16 graph or the Q/DQ INT8 graph that passed tritonforge's accuracy gate is exactly what TensorRT builds, and it
never picks lower-precision kernels on its own. `trtexec` gets `--stronglyTyped` for the same reason (no
`--fp16`/`--int8`). TF32 (which TensorRT enables by default for FP32 layers) is turned off unless asked for, for
the same reason: an FP32 graph runs in FP32. TensorRT older than 10 is refused.

Builders: the TensorRT Python API when `tensorrt` imports, else `trtexec` (on PATH or in /usr/src/tensorrt/bin, as
in NVIDIA's images). A timing cache per GPU architecture (~/.cache/tritonforge/tensorrt/timing-sm90.cache) makes a
rebuild fast. Writing the engine into a model repository is `tensorrt_repository`'s job.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tritonforge._atomic import atomic_output
from tritonforge.converters.gpu_info import (
    NO_BUILDER_FIX,
    GpuInfo,
    find_trtexec,
    import_tensorrt,
    parse_trtexec_version,
    query_gpu,
)
from tritonforge.converters.tensorrt_profiles import DEFAULT_WORKSPACE_BYTES, ShapeProfile, trtexec_command
from tritonforge.converters.tensorrt_runtime import set_cuda_device
from tritonforge.errors import ConfigError, ConversionError

_LOGGER = logging.getLogger(__name__)

BuilderChoice = Literal["auto", "python", "trtexec"]


@dataclass(frozen=True, kw_only=True)
class EngineBuild:
    """A serialized engine and how it was built.

    Attributes:
        engine_path: the .plan file written.
        gpu: the GPU it was built on (it runs only on this compute capability).
        tensorrt_version: e.g. "10.3.0" (it runs only with this TensorRT version).
        builder: "python" (TensorRT Python API) or "trtexec".
        profile: the optimization profile.
        timing_cache: the timing cache file read (when present) and written.
        timing_cache_reused: whether an existing timing cache was loaded.
        workspace_bytes: the builder's workspace limit.
        build_seconds: wall time of the build.
    """

    engine_path: Path
    gpu: GpuInfo
    tensorrt_version: str
    builder: str
    profile: ShapeProfile
    timing_cache: Path
    timing_cache_reused: bool
    workspace_bytes: int
    tf32: bool
    build_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return what the manifest records about this engine."""
        return {
            "file": self.engine_path.name,
            "gpu": self.gpu.name,
            "compute_capability": self.gpu.compute_capability,
            "tensorrt_version": self.tensorrt_version,
            "builder": self.builder,
            "strongly_typed": True,
            "tf32": self.tf32,
            "profile": self.profile.to_dict(),
            "timing_cache": str(self.timing_cache),
            "timing_cache_reused": self.timing_cache_reused,
            "workspace_bytes": self.workspace_bytes,
            "build_seconds": round(self.build_seconds, 3),
        }


def resolve_builder(choice: BuilderChoice = "auto") -> Literal["python", "trtexec"]:
    """Pick the builder: the TensorRT Python API when `tensorrt` is installed, else trtexec.

    Raises:
        ConversionError: the chosen (or any) builder is missing; the message names the fix.
    """
    has_python = importlib.util.find_spec("tensorrt") is not None
    has_trtexec = find_trtexec() is not None
    if choice == "python" and not has_python:
        raise ConversionError("the TensorRT Python package is not installed; " + NO_BUILDER_FIX)
    if choice == "trtexec" and not has_trtexec:
        raise ConversionError("trtexec is not on PATH or in /usr/src/tensorrt/bin; " + NO_BUILDER_FIX)
    if choice != "auto":
        return choice
    if has_python:
        return "python"
    if has_trtexec:
        return "trtexec"
    raise ConversionError("no TensorRT builder here (neither the tensorrt package nor trtexec); " + NO_BUILDER_FIX)


def default_timing_cache(gpu: GpuInfo) -> Path:
    """Return the default timing cache file for a GPU architecture (under $XDG_CACHE_HOME or ~/.cache)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tritonforge" / "tensorrt" / f"timing-{gpu.sm}.cache"


def _set_profile(builder: Any, network: Any, profile: ShapeProfile) -> Any:
    """Create TensorRT's optimization profile, checking it against the parsed network's inputs."""
    by_name = {t.name: t for t in profile.inputs}
    opt_profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        dims = tuple(int(d) for d in tensor.shape)
        if -1 not in dims:
            continue  # static input: TensorRT takes no profile for it
        spec = by_name.get(tensor.name)
        if spec is None:
            raise ConfigError(
                f"ONNX input '{tensor.name}' is not in config.pbtxt; fix the config (`tritonforge repo check`)"
            )
        if len(spec.maximum) != len(dims):
            raise ConfigError(
                f"input '{tensor.name}': config gives rank {len(spec.maximum)} (with batch axis), the ONNX graph "
                f"{len(dims)} {list(dims)}; fix the config (`tritonforge repo check`)"
            )
        opt_profile.set_shape(tensor.name, spec.minimum, spec.optimum, spec.maximum)
    return opt_profile


def _load_timing_cache(config: Any, timing_cache: Path) -> bool:
    """Give the builder config a timing cache, from `timing_cache` when it exists and fits; return whether reused."""
    data = timing_cache.read_bytes() if timing_cache.is_file() else b""
    try:
        cache = config.create_timing_cache(data)
        loaded = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except (RuntimeError, TypeError, ValueError):  # a truncated or foreign file
        loaded = False
    if loaded:
        return bool(data)
    _LOGGER.warning("timing cache %s is unreadable or from another GPU/TensorRT; starting a new one", timing_cache)
    fresh = config.create_timing_cache(b"")
    config.set_timing_cache(fresh, ignore_mismatch=False)
    return False


def _build_python(
    *,
    onnx_path: Path,
    engine_path: Path,
    profile: ShapeProfile,
    timing_cache: Path,
    workspace_bytes: int,
    device: int,
    tf32: bool,
) -> tuple[str, bool]:
    """Build with the TensorRT Python API; return (TensorRT version, whether the timing cache was reused)."""
    trt = import_tensorrt()
    set_cuda_device(device)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConversionError(f"TensorRT's ONNX parser rejected {onnx_path}: {' '.join(errors.split())[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    config.add_optimization_profile(_set_profile(builder, network, profile))
    reused = _load_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConversionError(f"TensorRT could not build an engine from {onnx_path}; rerun with -vv for its log")
    with atomic_output(engine_path) as tmp:
        tmp.write_bytes(memoryview(serialized).tobytes())
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(timing_cache) as tmp:
        tmp.write_bytes(memoryview(config.get_timing_cache().serialize()).tobytes())
    return str(trt.__version__), reused


def _build_trtexec(
    *,
    onnx_path: Path,
    engine_path: Path,
    profile: ShapeProfile,
    timing_cache: Path,
    workspace_bytes: int,
    device: int,
    tf32: bool,
) -> tuple[str, bool]:
    """Build with trtexec; return (TensorRT version from its banner, whether the timing cache existed)."""
    executable = find_trtexec()
    if executable is None:
        raise ConversionError("trtexec is not on PATH or in /usr/src/tensorrt/bin; " + NO_BUILDER_FIX)
    reused = timing_cache.is_file()
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    command = trtexec_command(
        onnx_path=onnx_path, engine_path=engine_path, profile=profile, timing_cache=timing_cache,
        workspace_bytes=workspace_bytes, device=device, tf32=tf32, executable=executable,
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0 or not engine_path.is_file():
        fd, log_name = tempfile.mkstemp(prefix="tritonforge-trtexec-", suffix=".log")
        os.close(fd)
        Path(log_name).write_text(output, encoding="utf-8")
        raise ConversionError(
            f"trtexec failed to build {onnx_path} (exit {result.returncode})",
            log_path=Path(log_name),
            repro_cmd=shlex.join(command),
        )
    version = parse_trtexec_version(output)
    if version is None:
        raise ConversionError("trtexec did not print its TensorRT version; check the trtexec install")
    return version, reused


def build_engine(
    *,
    onnx_path: Path,
    engine_path: Path,
    profile: ShapeProfile,
    timing_cache: Path | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    device: int = 0,
    builder: BuilderChoice = "auto",
    gpu: GpuInfo | None = None,
    tf32: bool = False,
) -> EngineBuild:
    """Build a strongly typed TensorRT engine from an ONNX file (needs a GPU and TensorRT 10+).

    Args:
        onnx_path: the ONNX model (FP32, FP16 or Q/DQ INT8: its types decide the engine's precision).
        engine_path: where to write the serialized engine (replaced atomically).
        profile: the optimization profile (`derive_profile`).
        timing_cache: the timing cache to read (if present) and write back; default per GPU architecture.
        workspace_bytes: the builder's workspace memory limit.
        device: the CUDA device to build on.
        builder: "python", "trtexec" or "auto" (Python API when installed).
        gpu: the GPU's identity; default: asked from nvidia-smi.
        tf32: let FP32 layers use TF32 (off: an FP32 graph runs in FP32, as its accuracy gate measured).

    Returns:
        The engine and its build facts.

    Raises:
        ConversionError: no GPU, no TensorRT, or TensorRT failed to parse or build the model.
    """
    chosen = resolve_builder(builder)
    gpu = gpu or query_gpu(device)
    cache = timing_cache or default_timing_cache(gpu)
    build = _build_python if chosen == "python" else _build_trtexec
    started = time.perf_counter()
    version, reused = build(
        onnx_path=onnx_path, engine_path=engine_path, profile=profile, timing_cache=cache,
        workspace_bytes=workspace_bytes, device=device, tf32=tf32,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    _LOGGER.info("built %s with TensorRT %s (%s) in %.1fs on %s", engine_path.name, version, chosen, seconds, gpu.name)
    return EngineBuild(
        engine_path=engine_path, gpu=gpu, tensorrt_version=version, builder=chosen, profile=profile,
        timing_cache=cache, timing_cache_reused=reused, workspace_bytes=workspace_bytes, tf32=tf32,
        build_seconds=seconds,
    )  # fmt: skip
