"""TensorRT engines from ONNX: profiles derived from config.pbtxt, a timing cache, and `tensorrt_plan` versions.

    profile = derive_profile(read_config(Path("model_repository/digits/config.pbtxt")))  # batch 1 / 8 / 64
    print(shlex.join(trtexec_command(onnx_path=onnx, engine_path=plan, profile=profile, timing_cache=cache)))
    built = build_engine_to_repository(repository=Path("model_repository"), model="digits",
                                       output_repository=Path("gpu_model_repository"))  # on the GPU node

Why a separate step that runs on the GPU node: an engine runs only on the GPU architecture (compute capability) and
the TensorRT version that built it. So each engine file is named after its compute capability (`model.sm90.plan`),
the config maps it in `cc_model_filenames` ({"9.0": "model.sm90.plan"}), and building on a second GPU type adds
its file to the same version; the manifest records GPU, compute capability, TensorRT version, profile, timing cache
and build time for each engine.

TensorRT 10 and 11: one build path for both. Networks are created STRONGLY_TYPED (the flag exists since TensorRT
9/10; 11 accepts it and is strongly typed regardless) and no precision builder flag is ever set, because TensorRT
11.0 removed BuilderFlag.FP16/INT8/BF16 in favour of typed graphs and explicit Q/DQ quantization (TensorRT "Migrating
from 10.x to 11.x": "Strongly Typed Networks Are Now Required"). Precision therefore comes from the ONNX itself: the
FP16 graph or the Q/DQ INT8 graph that passed tritonforge's accuracy gate is exactly what TensorRT builds, and it
never picks lower-precision kernels on its own. `trtexec` gets `--stronglyTyped` for the same reason (no
`--fp16`/`--int8`). TF32 (which TensorRT enables by default for FP32 layers) is turned off unless asked for, for
the same reason: an FP32 graph runs in FP32. TensorRT older than 10 is refused.

Builders: the TensorRT Python API when `tensorrt` imports, else `trtexec` (on PATH or in /usr/src/tensorrt/bin, as
in NVIDIA's images). Profiles: per input, batch min 1, opt the typical batch (largest preferred_batch_size, else
min(8, max_batch_size)), max max_batch_size; dynamic (-1) dims take min/opt/max from a sequence range (for a text
encoder e.g. 1:128:256, the maximum being the tokenizer's truncation length).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from tritonforge._atomic import atomic_output, atomic_write_text
from tritonforge.converters.repository import (
    CONFIG_NAME,
    MANIFEST_NAME,
    add_version,
    model_filename,
    sha256_file,
    tool_versions,
    version_numbers,
)
from tritonforge.converters.triton_config import read_config, validate_model_name, write_config
from tritonforge.errors import ConfigError, ConversionError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

_LOGGER = logging.getLogger(__name__)

PLAN_PLATFORM = "tensorrt_plan"
DEFAULT_WORKSPACE_BYTES = 1 << 30
TRTEXEC_IMAGE_PATH = Path("/usr/src/tensorrt/bin/trtexec")
MIN_TENSORRT_MAJOR = 10
NO_BUILDER_FIX = (
    "run this on the GPU node in NVIDIA's Triton/TensorRT image (nvcr.io/nvidia/tensorrt), or `pip install tensorrt`"
)
_CC_PATTERN = re.compile(r"^\d+\.\d+$")
_TRT_BANNER = re.compile(r"TensorRT v(\d+)")

BuilderChoice = Literal["auto", "python", "trtexec"]
ShapeKind = Literal["minimum", "optimum", "maximum"]


@dataclass(frozen=True, kw_only=True)
class SequenceRange:
    """Sizes for the dynamic (-1) dimensions of a profile, e.g. token counts 1 / 128 / 256 for a text encoder.

    Attributes:
        minimum: the smallest size the engine accepts.
        optimum: the size TensorRT tunes its kernels for (the typical request).
        maximum: the largest size the engine accepts (for text: the tokenizer's truncation length).
    """

    minimum: int
    optimum: int
    maximum: int

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.optimum <= self.maximum:
            raise ConfigError(
                f"sequence range {self.minimum}:{self.optimum}:{self.maximum} must satisfy 1 <= min <= opt <= max"
            )

    @classmethod
    def parse(cls, text: str) -> SequenceRange:
        """Parse "min:opt:max" (e.g. "1:128:256").

        Raises:
            ConfigError: not three integers joined by ':', or not ordered.
        """
        parts = text.split(":")
        try:
            minimum, optimum, maximum = (int(part) for part in parts)
        except ValueError as exc:
            raise ConfigError(f"sequence range {text!r} must look like min:opt:max, e.g. 1:128:256") from exc
        return cls(minimum=minimum, optimum=optimum, maximum=maximum)

    def __str__(self) -> str:
        return f"{self.minimum}:{self.optimum}:{self.maximum}"


@dataclass(frozen=True, kw_only=True)
class TensorProfile:
    """The min / opt / max shapes of one input, batch axis included (the shapes TensorRT sees).

    Attributes:
        name: the input's name.
        minimum: the smallest shape.
        optimum: the shape kernels are tuned for.
        maximum: the largest shape.
        dynamic: whether the graph declares any dimension of this input dynamic (only those get a profile).
    """

    name: str
    minimum: tuple[int, ...]
    optimum: tuple[int, ...]
    maximum: tuple[int, ...]
    dynamic: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the shapes as lists, for a manifest."""
        return {"min": list(self.minimum), "opt": list(self.optimum), "max": list(self.maximum)}


@dataclass(frozen=True, kw_only=True)
class ShapeProfile:
    """One TensorRT optimization profile covering every input of a model.

    Attributes:
        inputs: one entry per config input, in config order.
        typical_batch: the batch size used as opt (None for a model without a batch axis).
        sequence_range: the range given to dynamic dims, if any.
    """

    inputs: tuple[TensorProfile, ...]
    typical_batch: int | None
    sequence_range: SequenceRange | None = None

    @property
    def dynamic_inputs(self) -> tuple[TensorProfile, ...]:
        """The inputs that need shapes in the profile (static inputs must not get any: trtexec refuses them)."""
        return tuple(t for t in self.inputs if t.dynamic)

    def shapes_arg(self, which: ShapeKind) -> str:
        """Return "name:1x128,name2:1x128": the form of trtexec's --minShapes and ORT's trt_profile_min_shapes."""
        return ",".join(f"{t.name}:{'x'.join(str(d) for d in getattr(t, which))}" for t in self.dynamic_inputs)

    def to_dict(self) -> dict[str, Any]:
        """Return the profile for a manifest."""
        return {
            "typical_batch": self.typical_batch,
            "sequence_range": str(self.sequence_range) if self.sequence_range else None,
            "inputs": {t.name: t.to_dict() for t in self.inputs},
        }


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
        if not _CC_PATTERN.match(self.compute_capability):
            raise ConfigError(f"compute capability {self.compute_capability!r} must look like 9.0")

    @property
    def sm(self) -> str:
        """The architecture tag, e.g. "sm90" for compute capability 9.0."""
        return "sm" + self.compute_capability.replace(".", "")


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


@dataclass(frozen=True, kw_only=True)
class EngineBuildPlan:
    """Everything decided before the (GPU-only) build: what --dry-run prints.

    Attributes:
        onnx_path: the source ONNX file.
        source_version: its version in the source repository.
        profile: the optimization profile.
        output_model_dir: `<output_repository>/<output model>`.
        version: the version to write in the output model.
        engine_filename: e.g. "model.sm90.plan"; None when no GPU could be queried (dry run on a CPU machine).
        timing_cache: the timing cache file.
        workspace_bytes: the builder's workspace limit.
        device: the CUDA device index.
        tf32: whether FP32 layers may use TF32.
    """

    onnx_path: Path
    source_version: int
    profile: ShapeProfile
    output_model_dir: Path
    version: int
    engine_filename: str | None
    timing_cache: Path
    workspace_bytes: int
    device: int
    tf32: bool = False

    def trtexec_command(self, executable: str = "trtexec") -> list[str]:
        """Return the trtexec command line for this plan (the engine path has "<cc>" when no GPU was queried)."""
        engine = self.output_model_dir / str(self.version) / (self.engine_filename or "model.sm<cc>.plan")
        return trtexec_command(
            onnx_path=self.onnx_path, engine_path=engine, profile=self.profile, timing_cache=self.timing_cache,
            workspace_bytes=self.workspace_bytes, device=self.device, tf32=self.tf32, executable=executable,
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class EngineVersion:
    """A `tensorrt_plan` version in the output repository.

    Attributes:
        model_dir: `<output_repository>/<model>`.
        version: the version number.
        engine_path: the engine file inside the version folder.
        build: how the engine was built.
        engines: every compute capability's engine file in this version after the write.
        added_to_existing: whether the engine joined an existing version (a second GPU type).
    """

    model_dir: Path
    version: int
    engine_path: Path
    build: EngineBuild
    engines: dict[str, str] = field(default_factory=dict)
    added_to_existing: bool = False


# --- profiles (pure) ------------------------------------------------------------------------------------------------


def default_typical_batch(config: model_config_pb2.ModelConfig) -> int | None:
    """Return the batch a profile's opt uses: the largest preferred_batch_size, else min(8, max_batch_size).

    None for a model without a batch axis (max_batch_size 0).
    """
    if config.max_batch_size < 1:
        return None
    preferred = list(config.dynamic_batching.preferred_batch_size)
    return max(preferred) if preferred else min(8, int(config.max_batch_size))


def _input_dims(tensor: model_config_pb2.ModelInput) -> tuple[int, ...]:
    # The model sees the reshaped shape when the config declares one (e.g. dims [1] reshaped to a per-item scalar).
    return tuple(int(d) for d in (tensor.reshape.shape if tensor.HasField("reshape") else tensor.dims))


def derive_profile(
    config: model_config_pb2.ModelConfig,
    *,
    typical_batch: int | None = None,
    sequence_range: SequenceRange | None = None,
) -> ShapeProfile:
    """Derive a model's TensorRT optimization profile from its config.

    Per input: batch min 1, opt `typical_batch`, max `max_batch_size`; every -1 dim takes the sequence range.

    Args:
        config: the model's config (the ONNX model's; its inputs are the engine's inputs).
        typical_batch: the batch to tune for; default `default_typical_batch(config)`.
        sequence_range: sizes for dynamic dims; required when any input has one.

    Returns:
        The profile.

    Raises:
        ConfigError: typical_batch outside 1..max_batch_size, a dynamic dim without a sequence range, or a string
            input (TensorRT has no string tensors).
    """
    from tritonclient.grpc import model_config_pb2

    name = config.name
    batched = config.max_batch_size > 0
    if batched:
        typical = default_typical_batch(config) if typical_batch is None else typical_batch
        if typical is None or not 1 <= typical <= config.max_batch_size:
            raise ConfigError(
                f"model '{name}': typical batch {typical} must be between 1 and max_batch_size {config.max_batch_size}"
            )
    elif typical_batch is not None:
        raise ConfigError(f"model '{name}' has no batch axis (max_batch_size 0); drop the typical batch")
    else:
        typical = None
    profiles = []
    for tensor in config.input:
        if tensor.data_type in (model_config_pb2.TYPE_STRING, model_config_pb2.TYPE_INVALID):
            raise ConfigError(
                f"model '{name}' input '{tensor.name}' is a string tensor; TensorRT engines take numeric inputs "
                "only (build the encoder behind the tokenizer, not the ensemble)"
            )
        dims = _input_dims(tensor)
        if -1 in dims and sequence_range is None:
            raise ConfigError(
                f"model '{name}' input '{tensor.name}' has dynamic dims {list(dims)}; give a sequence range "
                "(--seq min:opt:max, e.g. 1:128:256 with max the tokenizer's truncation length)"
            )

        def sized(size: int, dims: tuple[int, ...] = dims) -> tuple[int, ...]:
            return tuple(size if d == -1 else d for d in dims)

        if sequence_range is not None:
            shapes = [sized(s) for s in (sequence_range.minimum, sequence_range.optimum, sequence_range.maximum)]
        else:
            shapes = [dims, dims, dims]
        if batched and typical is not None:
            batches = (1, typical, int(config.max_batch_size))
            shapes = [(batch, *shape) for batch, shape in zip(batches, shapes, strict=True)]
        profiles.append(
            TensorProfile(
                name=tensor.name, minimum=shapes[0], optimum=shapes[1], maximum=shapes[2], dynamic=batched or -1 in dims
            )
        )
    return ShapeProfile(inputs=tuple(profiles), typical_batch=typical, sequence_range=sequence_range)


def trtexec_command(
    *,
    onnx_path: Path,
    engine_path: Path,
    profile: ShapeProfile,
    timing_cache: Path,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    device: int = 0,
    tf32: bool = False,
    executable: str = "trtexec",
) -> list[str]:
    """Return the trtexec command that builds the same engine as the Python-API path.

    Strongly typed (no --fp16/--int8: precision comes from the ONNX), shapes only for dynamic inputs (trtexec
    rejects shapes for static ones), the workspace in whole MiB (trtexec's default unit in TensorRT 8.6 to 11),
    --noTF32 unless `tf32`, and --skipInference (build only).

    Raises:
        ConfigError: a workspace under 1 MiB.
    """
    if workspace_bytes < 1 << 20:
        raise ConfigError(f"workspace {workspace_bytes} bytes is below 1 MiB; give at least 1M")
    command = [executable, f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if profile.dynamic_inputs:
        command += [
            f"--minShapes={profile.shapes_arg('minimum')}",
            f"--optShapes={profile.shapes_arg('optimum')}",
            f"--maxShapes={profile.shapes_arg('maximum')}",
        ]
    command += ["--stronglyTyped"] + ([] if tf32 else ["--noTF32"])
    command += [
        f"--memPoolSize=workspace:{workspace_bytes >> 20}",
        f"--timingCacheFile={timing_cache}",
        f"--device={device}",
        "--skipInference",
    ]
    return command


# --- GPU and TensorRT discovery -------------------------------------------------------------------------------------


def engine_filename(compute_capability: str) -> str:
    """Return the engine file name for a compute capability: "9.0" -> "model.sm90.plan"."""
    if not _CC_PATTERN.match(compute_capability):
        raise ConfigError(f"compute capability {compute_capability!r} must look like 9.0")
    return f"model.sm{compute_capability.replace('.', '')}.plan"


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


def default_timing_cache(gpu: GpuInfo) -> Path:
    """Return the default timing cache file for a GPU architecture (under $XDG_CACHE_HOME or ~/.cache)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tritonforge" / "tensorrt" / f"timing-{gpu.sm}.cache"


# --- building -------------------------------------------------------------------------------------------------------


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
    _set_cuda_device(device)
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


# --- the repository side --------------------------------------------------------------------------------------------


def merge_cc_filenames(existing: Mapping[str, str], compute_capability: str, filename: str) -> dict[str, str]:
    """Return `existing` with `compute_capability` mapped to `filename` (keys sorted, for a stable config).

    Raises:
        ConfigError: a malformed compute capability, or `filename` already serves another compute capability.
    """
    if not _CC_PATTERN.match(compute_capability):
        raise ConfigError(f"compute capability {compute_capability!r} must look like 9.0")
    clash = [cc for cc, name in existing.items() if name == filename and cc != compute_capability]
    if clash:
        raise ConfigError(f"engine file {filename} already serves compute capability {clash[0]}; names must differ")
    merged = {**existing, compute_capability: filename}
    return dict(sorted(merged.items(), key=lambda item: tuple(int(p) for p in item[0].split("."))))


def tensorrt_plan_config(
    source: model_config_pb2.ModelConfig,
    *,
    name: str,
    cc_model_filenames: Mapping[str, str],
    default_model_filename: str,
    instance_count: int = 1,
    gpus: Sequence[int] = (),
) -> model_config_pb2.ModelConfig:
    """Return a `tensorrt_plan` config with the source ONNX model's inputs, outputs, batching and version policy.

    Args:
        source: the ONNX model's config.
        name: the engine model's name.
        cc_model_filenames: compute capability -> engine file, one per GPU type served.
        default_model_filename: the file for a GPU whose compute capability is not listed (TensorRT then refuses
            to load it, naming the mismatch in the server log).
        instance_count: instances per GPU.
        gpus: GPU indices to place instances on (empty: all).

    Raises:
        ConfigError: bad name or instance settings.
    """
    from tritonclient.grpc import model_config_pb2

    validate_model_name(name)
    _check_placement(instance_count, gpus)
    config = model_config_pb2.ModelConfig(
        name=name, platform=PLAN_PLATFORM, max_batch_size=source.max_batch_size,
        default_model_filename=default_model_filename,
    )  # fmt: skip
    config.input.extend(source.input)
    config.output.extend(source.output)
    if source.HasField("version_policy"):
        config.version_policy.CopyFrom(source.version_policy)
    if source.HasField("dynamic_batching"):
        config.dynamic_batching.CopyFrom(source.dynamic_batching)
    config.instance_group.add(count=instance_count, kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, gpus=gpus)
    for cc, filename in cc_model_filenames.items():
        config.cc_model_filenames[cc] = filename
    return config


def _check_placement(instance_count: int, gpus: Sequence[int]) -> None:
    if instance_count < 1:
        raise ConfigError(f"instance count {instance_count} must be >= 1")
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise ConfigError(f"GPU indices {list(gpus)} must be distinct and >= 0")


def _read_manifest(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MANIFEST_NAME
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is missing or not JSON; rebuild this version with --overwrite") from exc
    return manifest


def _source_onnx(repository: Path, model: str, version: int | None) -> tuple[model_config_pb2.ModelConfig, int, Path]:
    from tritonforge.serving.derived_repository import required_backend

    validate_model_name(model)
    config = read_config(repository / model / CONFIG_NAME)
    if required_backend(config) != "onnxruntime":
        raise ConfigError(
            f"model '{model}' is {config.platform or config.backend!r}, not an ONNX model; "
            "TensorRT engines are built from ONNX models"
        )
    versions = version_numbers(repository / model)
    if not versions:
        raise ConfigError(f"model '{model}' has no version folders in {repository}; export one first")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise ConfigError(f"model '{model}' has no version {chosen}; it has {versions}")
    onnx_path = repository / model / str(chosen) / (model_filename(config) or "model.onnx")
    if not onnx_path.is_file():
        raise ConfigError(f"{onnx_path} does not exist; re-export version {chosen} of '{model}'")
    return config, chosen, onnx_path


def plan_engine_build(
    *,
    repository: Path,
    model: str,
    output_repository: Path,
    version: int | None = None,
    output_model: str | None = None,
    typical_batch: int | None = None,
    sequence_range: SequenceRange | None = None,
    timing_cache: Path | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    device: int = 0,
    gpu: GpuInfo | None = None,
    tf32: bool = False,
) -> EngineBuildPlan:
    """Decide everything about a build without a GPU: source file, profile, target version, command.

    Args:
        repository: the canonical repository holding the ONNX model.
        model: the ONNX model's name.
        output_repository: the GPU repository that receives the engine (not the canonical one: the embedded CPU
            server cannot load `tensorrt_plan` models).
        version: the ONNX version to build (default: the latest); the engine gets the same version number.
        output_model: the engine model's name (default `<model>_trt`).
        typical_batch: the profile's opt batch.
        sequence_range: sizes for dynamic dims.
        timing_cache: the timing cache file (default: per GPU architecture under ~/.cache/tritonforge).
        workspace_bytes: the builder's workspace limit.
        device: the CUDA device index.
        gpu: the GPU, when known (the engine file name depends on its compute capability).
        tf32: let FP32 layers use TF32.

    Raises:
        ConfigError: bad names or versions, the output repository is the source one, or a bad profile.
    """
    if repository.resolve() == output_repository.resolve():
        raise ConfigError(
            f"output repository {output_repository} is the source repository; write engines to a GPU repository "
            "(e.g. the one `tritonforge gpu repository` writes): the embedded CPU server cannot load them"
        )
    config, source_version, onnx_path = _source_onnx(repository, model, version)
    profile = derive_profile(config, typical_batch=typical_batch, sequence_range=sequence_range)
    out_name = output_model or f"{model}_trt"
    validate_model_name(out_name)
    if workspace_bytes < 1 << 20:
        raise ConfigError(f"workspace {workspace_bytes} bytes is below 1 MiB; give at least 1M")
    if timing_cache is not None:
        cache = timing_cache
    else:
        cache = default_timing_cache(gpu or GpuInfo(index=device, name="unknown", compute_capability="0.0"))
        cache = cache if gpu else cache.with_name("timing-sm<cc>.cache")
    return EngineBuildPlan(
        onnx_path=onnx_path, source_version=source_version, profile=profile,
        output_model_dir=output_repository / out_name, version=source_version,
        engine_filename=engine_filename(gpu.compute_capability) if gpu else None, timing_cache=cache,
        workspace_bytes=workspace_bytes, device=device, tf32=tf32,
    )  # fmt: skip


def _check_existing(
    target: Path, cc: str, source_sha: str, *, overwrite: bool
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Return (manifest of the existing version to add to, or None to write a new version; its engines)."""
    if not target.exists():
        return None, {}
    if overwrite and not (target / MANIFEST_NAME).is_file():
        return None, {}  # nothing to keep: replace the whole version
    manifest = _read_manifest(target)
    engines: dict[str, Any] = dict(manifest.get("tensorrt", {}).get("engines", {}))
    same_source = manifest.get("source", {}).get("sha256") == source_sha
    if not same_source:
        if not overwrite:
            raise ConfigError(
                f"{target} holds engines built from another ONNX file; pass --overwrite to replace the version, "
                "or build a new version of the ONNX model first"
            )
        return None, {}
    if cc in engines and not overwrite:
        raise ConfigError(
            f"{target} already has an engine for compute capability {cc} ({engines[cc].get('file')}); "
            "pass --overwrite to rebuild it"
        )
    return manifest, engines


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target)  # files are only ever replaced by rename, so sharing the inode is safe
    except OSError:
        shutil.copy2(source, target)


def _add_engine_to_version(
    *,
    model_dir: Path,
    version: int,
    engine_file: Path,
    manifest: dict[str, Any],
    config: model_config_pb2.ModelConfig,
) -> None:
    """Put one more engine into an existing version: stage a full copy, swap it in, then rewrite config.pbtxt.

    The same staging/swap scheme as `repository.add_version`, for a version that holds several files; on any
    failure the old version folder and config.pbtxt are back in place.
    """
    target = model_dir / str(version)
    stage = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    backup: Path | None = None
    try:
        for item in target.iterdir():
            if item.name in {engine_file.name, MANIFEST_NAME} or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, stage / item.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(item, stage / item.name)
        with atomic_output(stage / engine_file.name) as tmp:
            shutil.copyfile(engine_file, tmp)
        atomic_write_text(stage / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        backup = Path(tempfile.mkdtemp(prefix=f".replaced-{version}-", dir=model_dir))
        backup.rmdir()
        os.replace(target, backup)
        try:
            os.replace(stage, target)
            try:
                write_config(config, model_dir / CONFIG_NAME)
            except BaseException:
                os.replace(target, stage)
                raise
        except BaseException:
            os.replace(backup, target)
            backup = None
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)


EngineBuilder = Callable[..., EngineBuild]


def build_engine_to_repository(
    *,
    repository: Path,
    model: str,
    output_repository: Path,
    version: int | None = None,
    output_model: str | None = None,
    typical_batch: int | None = None,
    sequence_range: SequenceRange | None = None,
    timing_cache: Path | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    device: int = 0,
    builder: BuilderChoice = "auto",
    instance_count: int = 1,
    gpus: Sequence[int] = (),
    overwrite: bool = False,
    gpu: GpuInfo | None = None,
    tf32: bool = False,
    build: EngineBuilder = build_engine,
) -> EngineVersion:
    """Build an ONNX model's engine on this GPU and write it as a `tensorrt_plan` version of `<model>_trt`.

    The engine version takes the ONNX version's number. When that version exists with engines for other GPU types
    built from the same ONNX file, this GPU's engine joins it and `cc_model_filenames` gains an entry; otherwise a
    new version is written through `add_version`. Either way the write is atomic.

    Args:
        repository: the canonical repository with the ONNX model.
        model: the ONNX model's name.
        output_repository: the GPU repository to write into.
        version: the ONNX version to build (default: the latest).
        output_model: the engine model's name (default `<model>_trt`).
        typical_batch: the profile's opt batch (default: largest preferred batch, else min(8, max_batch_size)).
        sequence_range: sizes for dynamic dims (required when the model has any).
        timing_cache: the timing cache file (default: per GPU architecture).
        workspace_bytes: the builder's workspace limit.
        device: the CUDA device to build on.
        builder: "python", "trtexec" or "auto".
        instance_count: engine instances per GPU.
        gpus: GPU indices for the instances (empty: all).
        overwrite: replace this GPU type's engine in the version (or the whole version if its ONNX differs).
        gpu: the GPU's identity (default: from nvidia-smi).
        tf32: let FP32 layers use TF32 (off by default: the engine keeps the graph's precision).
        build: the function that builds the engine (`build_engine`; tests pass a stand-in).

    Returns:
        What was written.

    Raises:
        ConfigError: bad arguments, a version conflict without overwrite, or mixed TensorRT versions in a version.
        ConversionError: no GPU or TensorRT here, or the build failed; nothing is written.
    """
    _check_placement(instance_count, gpus)
    arguments: dict[str, Any] = {
        "repository": repository, "model": model, "output_repository": output_repository, "version": version,
        "output_model": output_model, "typical_batch": typical_batch, "sequence_range": sequence_range,
        "timing_cache": timing_cache, "workspace_bytes": workspace_bytes, "device": device, "tf32": tf32,
    }  # fmt: skip
    plan_engine_build(**arguments)  # a user's mistake shows before the GPU question
    gpu = gpu or query_gpu(device)
    plan = plan_engine_build(**arguments, gpu=gpu)
    filename = engine_filename(gpu.compute_capability)
    model_dir, cc = plan.output_model_dir, gpu.compute_capability
    source_config = read_config(repository / model / CONFIG_NAME)
    source_sha = sha256_file(plan.onnx_path)
    existing_manifest, engines = _check_existing(model_dir / str(plan.version), cc, source_sha, overwrite=overwrite)
    with tempfile.TemporaryDirectory(prefix="tritonforge-trt-") as tmp:
        built = build(
            onnx_path=plan.onnx_path, engine_path=Path(tmp) / filename, profile=plan.profile,
            timing_cache=plan.timing_cache, workspace_bytes=workspace_bytes, device=device, builder=builder, gpu=gpu,
            tf32=tf32,
        )  # fmt: skip
        entry = {**built.to_dict(), "sha256": sha256_file(built.engine_path)}
        entry["built_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        others = {str(v.get("tensorrt_version")) for k, v in engines.items() if k != cc}
        if others - {built.tensorrt_version}:
            if not overwrite:
                raise ConfigError(
                    f"version {plan.version} of '{model_dir.name}' holds engines built with TensorRT {sorted(others)}, "
                    f"this one with {built.tensorrt_version}; one Triton server runs one TensorRT: rebuild them with "
                    "the same version, or pass --overwrite to replace the version with this engine alone"
                )
            _LOGGER.warning("replacing version %d: its engines were built with TensorRT %s", plan.version, others)
            existing_manifest, engines = None, {}
        previous = read_config(model_dir / CONFIG_NAME) if (model_dir / CONFIG_NAME).is_file() else None
        cc_files = merge_cc_filenames(dict(previous.cc_model_filenames) if previous else {}, cc, filename)
        config = tensorrt_plan_config(
            source_config, name=model_dir.name, cc_model_filenames=cc_files, default_model_filename=filename,
            instance_count=instance_count, gpus=gpus,
        )  # fmt: skip
        engines = {**engines, cc: entry}
        if existing_manifest is None:
            manifest = {
                "source": {"repository": str(repository), "model": model, "version": plan.source_version,
                           "file": plan.onnx_path.name, "sha256": source_sha},
                "tensorrt": {"engines": engines},
                "tool_versions": {**tool_versions(), "tensorrt": built.tensorrt_version},
            }  # fmt: skip
            add_version(
                repository=output_repository, config=config, model_file=built.engine_path, manifest=manifest,
                version=plan.version, overwrite=overwrite,
            )  # fmt: skip
        else:
            manifest = {**existing_manifest, "tensorrt": {**existing_manifest.get("tensorrt", {}), "engines": engines}}
            _add_engine_to_version(
                model_dir=model_dir, version=plan.version, engine_file=built.engine_path, manifest=manifest,
                config=config,
            )  # fmt: skip
    _warn_incomplete_versions(model_dir, cc_files)
    return EngineVersion(
        model_dir=model_dir, version=plan.version, engine_path=model_dir / str(plan.version) / filename,
        build=built, engines={k: v["file"] for k, v in engines.items()},
        added_to_existing=existing_manifest is not None,
    )  # fmt: skip


def _warn_incomplete_versions(model_dir: Path, cc_files: Mapping[str, str]) -> None:
    """Log versions that lack an engine the (model-wide) cc_model_filenames lists: those GPUs cannot load them."""
    for number in version_numbers(model_dir):
        missing = sorted(cc for cc, name in cc_files.items() if not (model_dir / str(number) / name).is_file())
        if missing:
            _LOGGER.warning(
                "version %d of '%s' has no engine for compute capability %s; build it on such a GPU",
                number, model_dir.name, ", ".join(missing),
            )  # fmt: skip


# --- running an engine (GPU only) -----------------------------------------------------------------------------------


def _import_cudart() -> Any:
    """Return cuda-python's runtime module, or None when it is not installed."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    return cudart


def _import_torch_cuda() -> Any:
    """Return torch when it has a usable CUDA device (the fallback when cuda-python is missing)."""
    try:
        import torch
    except ImportError as exc:
        raise ConversionError("reaching the GPU needs cuda-python or a CUDA torch; `pip install cuda-python`") from exc
    if not torch.cuda.is_available():
        raise ConversionError("torch here has no CUDA device and cuda-python is missing; `pip install cuda-python`")
    return torch


def _set_cuda_device(device: int) -> None:
    """Make `device` current for the TensorRT builder (device 0 is already current by default)."""
    cudart = _import_cudart()
    if cudart is not None:
        _check_cuda(cudart, cudart.cudaSetDevice(device))
    elif device != 0:
        _import_torch_cuda().cuda.set_device(device)


def _check_cuda(cudart: Any, result: Any) -> Any:
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        raise ConversionError(f"CUDA call failed: {error}")
    return values[0] if values else None


class _DeviceMemory:
    """Device buffers and one stream, through cuda-python when installed, else through a CUDA build of torch."""

    def __init__(self, device: int) -> None:
        self._cudart = _import_cudart()
        self._buffers: list[Any] = []
        if self._cudart is not None:
            _check_cuda(self._cudart, self._cudart.cudaSetDevice(device))
            self._stream = _check_cuda(self._cudart, self._cudart.cudaStreamCreate())
            self.stream_handle = int(self._stream)
        else:
            torch = _import_torch_cuda()
            self._torch = torch
            self._device = torch.device("cuda", device)
            self._stream = torch.cuda.Stream(device=self._device)
            self.stream_handle = int(self._stream.cuda_stream)

    def upload(self, array: NDArray[Any]) -> int:
        """Copy a host array to a new device buffer; return its address."""
        if self._cudart is None:
            tensor = self._torch.from_numpy(np.ascontiguousarray(array)).to(self._device)
            self._buffers.append(tensor)
            return int(tensor.data_ptr())
        cudart = self._cudart
        pointer = _check_cuda(cudart, cudart.cudaMalloc(max(array.nbytes, 1)))
        self._buffers.append(pointer)
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check_cuda(cudart, cudart.cudaMemcpy(pointer, array.ctypes.data, array.nbytes, kind))
        return int(pointer)

    def download(self, address: int, array: NDArray[Any]) -> None:
        """Copy a device buffer into a host array, after the stream finished."""
        self.synchronize()
        if self._cudart is None:
            for tensor in self._buffers:
                if int(tensor.data_ptr()) == address:
                    array[...] = tensor.cpu().numpy().reshape(array.shape)
                    return
            raise ConversionError(f"no device buffer at {address:#x}")
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check_cuda(self._cudart, self._cudart.cudaMemcpy(array.ctypes.data, address, array.nbytes, kind))

    def ready(self) -> None:
        """Make the uploads visible to work on the stream (torch copies run on its own current stream)."""
        if self._cudart is None:
            self._torch.cuda.synchronize(self._device)

    def synchronize(self) -> None:
        """Wait for the stream."""
        if self._cudart is None:
            self._stream.synchronize()
        else:
            _check_cuda(self._cudart, self._cudart.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        """Free every buffer and the stream."""
        if self._cudart is not None:
            for pointer in self._buffers:
                self._cudart.cudaFree(pointer)
            self._cudart.cudaStreamDestroy(self._stream)
        self._buffers.clear()


def run_engine(engine_path: Path, inputs: Mapping[str, NDArray[Any]], *, device: int = 0) -> dict[str, NDArray[Any]]:
    """Run a serialized engine once on host arrays and return its outputs (needs the GPU type that built it).

    Args:
        engine_path: the .plan file.
        inputs: one array per engine input, batch axis included (cast to the engine's dtypes).
        device: the CUDA device.

    Returns:
        One array per engine output.

    Raises:
        ConversionError: no TensorRT or CUDA, an engine for another GPU or TensorRT version, or missing inputs.
    """
    trt = import_tensorrt()
    memory = _DeviceMemory(device)
    try:
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise ConversionError(
                f"TensorRT {trt.__version__} cannot load {engine_path}: it was built for another GPU type or "
                "TensorRT version; rebuild it on this node"
            )
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        missing = sorted(set(input_names) - set(inputs))
        if missing:
            raise ConversionError(f"engine {engine_path.name} needs inputs {missing}; got {sorted(inputs)}")
        for name in input_names:
            array = np.ascontiguousarray(inputs[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
            context.set_input_shape(name, array.shape)
            context.set_tensor_address(name, memory.upload(array))
        outputs: dict[str, tuple[int, NDArray[Any]]] = {}
        for name in names:
            if name in input_names:
                continue
            host = np.empty(tuple(context.get_tensor_shape(name)), dtype=trt.nptype(engine.get_tensor_dtype(name)))
            address = memory.upload(host)  # allocates the output buffer (contents overwritten by the engine)
            context.set_tensor_address(name, address)
            outputs[name] = (address, host)
        memory.ready()
        if not context.execute_async_v3(memory.stream_handle):
            raise ConversionError(f"TensorRT failed to run {engine_path.name}")
        for address, host in outputs.values():
            memory.download(address, host)
        return {name: host for name, (_, host) in outputs.items()}
    finally:
        memory.close()
