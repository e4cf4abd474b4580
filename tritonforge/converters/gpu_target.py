"""GPU-node configs: ONNX models on ONNX Runtime's TensorRT accelerator and KIND_GPU instances, in their own repository.

    settings = TensorRTAccelerator(max_workspace_size_bytes=parse_size("2G"))
    gpu = gpu_config(read_config(Path("model_repository/digits/config.pbtxt")), settings, instance_count=2)
    write_gpu_repository(Path("model_repository"), Path("gpu_model_repository"), settings)

Why a separate repository: the canonical repository stays what the embedded CPU server (and CI) serves; the GPU
repository is what the GPU nodes mount. It is derived, never hand-edited: re-running this replaces it atomically,
keeping only models it did not generate (the `tensorrt_plan` engines `tritonforge gpu build-engine` added).

The accelerator's parameters are the keys Triton's onnxruntime backend accepts for
`optimization.execution_accelerators.gpu_execution_accelerator [{name: "tensorrt"}]` (onnxruntime_backend README,
"ONNX Runtime with TensorRT optimization", and its parameter-mapping table; the backend rejects unknown keys):
`precision_mode` ("FP32" | "FP16" | "INT8"), `max_workspace_size_bytes`, `trt_engine_cache_enable`,
`trt_engine_cache_path`, `trt_timing_cache_enable`, `trt_timing_cache_path`, `trt_min_subgraph_size`, and
`trt_profile_min_shapes` / `trt_profile_opt_shapes` / `trt_profile_max_shapes` ("input:1x128,input2:1x128").
The explicit profile comes from the same `derive_profile` as the `tensorrt_plan` build, so ONNX Runtime builds one
engine for every batch up to max_batch_size instead of rebuilding when a larger batch first arrives.

Precision: by default each model's own graph decides: INT8 for a Q/DQ graph (explicit quantization; no calibration
table), FP16 for a graph with FP16 weights (tritonforge's FP16 variant), else FP32, so what runs is the variant that
passed the accuracy gate. Forcing FP16 on an FP32 graph lets TensorRT lower precision without a gate.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from tritonforge._atomic import published_dir, staging_dir
from tritonforge.converters.repository import CONFIG_NAME, model_filename, version_numbers
from tritonforge.converters.tensorrt_profiles import SequenceRange, derive_profile
from tritonforge.converters.tensorrt_repository import PLAN_PLATFORM, check_placement, link_or_copy
from tritonforge.converters.triton_config import read_config, write_config
from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

_LOGGER = logging.getLogger(__name__)

TENSORRT_ACCELERATOR = "tensorrt"
DEFAULT_ENGINE_CACHE_PATH = "/tmp/tritonforge/trt_cache"
"""Where ONNX Runtime keeps built engines on the GPU node; mount a persistent volume there to skip rebuilds."""
_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)(?:i?B)?\s*$", re.IGNORECASE)
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_ONNX_FLOAT16 = 10


class PrecisionMode(str, Enum):
    """The accelerator's `precision_mode` values Triton documents."""

    FP32 = "FP32"
    FP16 = "FP16"
    INT8 = "INT8"


@dataclass(frozen=True, kw_only=True)
class TensorRTAccelerator:
    """Settings of ONNX Runtime's TensorRT execution accelerator in a GPU config.

    Attributes:
        precision_mode: FP32, FP16 or INT8 for every model; None: per model, from its graph (see the module doc).
        max_workspace_size_bytes: GPU memory TensorRT may use as scratch while building and running.
        engine_cache_enable: keep built engines on disk so a restart does not rebuild them.
        engine_cache_path: the engine cache folder on the GPU node (each model gets its own subfolder).
        timing_cache_enable: keep TensorRT's kernel timing cache (shared by all models) to speed up builds.
        timing_cache_path: the timing cache folder; default `engine_cache_path`.
        min_subgraph_size: smallest node count TensorRT takes over (None: ONNX Runtime's default).
        explicit_profile: give TensorRT one profile from batch 1 to max_batch_size (`trt_profile_*_shapes`).
        typical_batch: the profile's opt batch (default: largest preferred batch, else min(8, max_batch_size)).
        sequence_range: min/opt/max for dynamic (-1) dims; needed by models that have them when explicit_profile.
    """

    precision_mode: PrecisionMode | None = None
    max_workspace_size_bytes: int = 1 << 30
    engine_cache_enable: bool = True
    engine_cache_path: str = DEFAULT_ENGINE_CACHE_PATH
    timing_cache_enable: bool = True
    timing_cache_path: str | None = None
    min_subgraph_size: int | None = None
    explicit_profile: bool = True
    typical_batch: int | None = None
    sequence_range: SequenceRange | None = None

    def __post_init__(self) -> None:
        if self.max_workspace_size_bytes < 1:
            raise ConfigError(f"max_workspace_size_bytes {self.max_workspace_size_bytes} must be >= 1")
        if self.min_subgraph_size is not None and self.min_subgraph_size < 1:
            raise ConfigError(f"min_subgraph_size {self.min_subgraph_size} must be >= 1")
        for path in (self.engine_cache_path, self.timing_cache_path):
            if path is not None and (not path or '"' in path or "\n" in path):
                raise ConfigError(f"cache path {path!r} must be a non-empty path without quotes or newlines")


@dataclass(frozen=True, kw_only=True)
class GpuRepository:
    """What `write_gpu_repository` wrote.

    Attributes:
        output: the GPU repository.
        accelerated: ONNX models now on the TensorRT accelerator, with their precision mode.
        copied: models copied unchanged (python backend, ensembles, ...).
        kept: `tensorrt_plan` models already in `output` and not in the source (built engines), kept.
    """

    output: Path
    accelerated: dict[str, str]
    copied: tuple[str, ...]
    kept: tuple[str, ...]


def parse_size(text: str) -> int:
    """Parse a byte size: "1073741824", "512M", "1G", "2GiB" (K/M/G are powers of 1024).

    Raises:
        ConfigError: anything else, or zero.
    """
    match = _SIZE.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(f"size {text!r} must be a positive number of bytes, optionally with K, M or G (e.g. 1G)")
    return int(match.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2).upper()]


def detect_precision(onnx_path: Path) -> PrecisionMode:
    """Return the precision mode a graph needs: INT8 for Q/DQ nodes, FP16 for FP16 weights, else FP32.

    Raises:
        ConfigError: the file is missing or not an ONNX model.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as exc:
        raise ConfigError(f"{onnx_path} is not a readable ONNX model: {exc}") from exc
    if any(node.op_type in _QDQ_OPS for node in model.graph.node):
        return PrecisionMode.INT8
    if any(init.data_type == _ONNX_FLOAT16 for init in model.graph.initializer):
        return PrecisionMode.FP16
    return PrecisionMode.FP32


def accelerator_parameters(
    config: model_config_pb2.ModelConfig, settings: TensorRTAccelerator, precision: PrecisionMode
) -> dict[str, str]:
    """Return the tensorrt accelerator's parameters for one model (string values, as the config stores them).

    Raises:
        ConfigError: the explicit profile cannot be derived (e.g. dynamic dims without a sequence range).
    """
    params = {"precision_mode": precision.value, "max_workspace_size_bytes": str(settings.max_workspace_size_bytes)}
    if settings.engine_cache_enable:
        params["trt_engine_cache_enable"] = "1"
        params["trt_engine_cache_path"] = f"{settings.engine_cache_path.rstrip('/')}/{config.name}"
    if settings.timing_cache_enable:
        params["trt_timing_cache_enable"] = "1"
        params["trt_timing_cache_path"] = settings.timing_cache_path or settings.engine_cache_path
    if settings.min_subgraph_size is not None:
        params["trt_min_subgraph_size"] = str(settings.min_subgraph_size)
    if settings.explicit_profile:
        profile = derive_profile(config, typical_batch=settings.typical_batch, sequence_range=settings.sequence_range)
        if profile.dynamic_inputs:
            params["trt_profile_min_shapes"] = profile.shapes_arg("minimum")
            params["trt_profile_opt_shapes"] = profile.shapes_arg("optimum")
            params["trt_profile_max_shapes"] = profile.shapes_arg("maximum")
    return params


def gpu_config(
    config: model_config_pb2.ModelConfig,
    settings: TensorRTAccelerator | None = None,
    *,
    instance_count: int = 1,
    gpus: Sequence[int] = (),
    precision_mode: PrecisionMode | None = None,
) -> model_config_pb2.ModelConfig:
    """Return a copy of an ONNX model's config for GPU nodes: TensorRT accelerator and KIND_GPU instances.

    Inputs, outputs, batching and version policy are kept; instance groups become one KIND_GPU group and any
    earlier GPU accelerators are replaced.

    Args:
        config: the ONNX model's config (from `read_config` or `build_model_config`); not modified.
        settings: the accelerator settings (default `TensorRTAccelerator()`).
        instance_count: instances per GPU.
        gpus: GPU indices to place instances on (empty: every GPU).
        precision_mode: overrides `settings.precision_mode` (`write_gpu_repository` passes the graph's);
            FP32 when both are None.

    Returns:
        The GPU config.

    Raises:
        ConfigError: not an ONNX model, bad instance settings, or no profile for dynamic dims.
    """
    from tritonclient.grpc import model_config_pb2

    from tritonforge.serving.derived_repository import required_backend

    settings = settings or TensorRTAccelerator()
    if required_backend(config) != "onnxruntime":
        raise ConfigError(
            f"model '{config.name}' runs on {config.platform or config.backend!r}; only ONNX Runtime models take "
            "the TensorRT accelerator"
        )
    check_placement(instance_count, gpus, model=config.name)
    precision = precision_mode or settings.precision_mode or PrecisionMode.FP32
    result = model_config_pb2.ModelConfig()
    result.CopyFrom(config)
    del result.instance_group[:]
    result.instance_group.add(count=instance_count, kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, gpus=gpus)
    accelerators = result.optimization.execution_accelerators
    del accelerators.gpu_execution_accelerator[:]
    accelerator = accelerators.gpu_execution_accelerator.add(name=TENSORRT_ACCELERATOR)
    accelerator.parameters.update(accelerator_parameters(config, settings, precision))
    return result


def ensemble_steps(config: model_config_pb2.ModelConfig) -> list[str]:
    """Return the model names an ensemble's steps call (empty for any other model)."""
    if config.platform != "ensemble":
        return []
    return [str(step.model_name) for step in config.ensemble_scheduling.step]


def _select(configs: dict[str, model_config_pb2.ModelConfig], models: Sequence[str] | None) -> list[str]:
    """Return the models to write: the asked ones plus, transitively, every model their ensembles call."""
    wanted = list(configs) if models is None else list(models)
    unknown = sorted(set(wanted) - set(configs))
    if unknown:
        raise ConfigError(f"model(s) {unknown} are not in the source repository; it has {sorted(configs)}")
    selected: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in selected:
            continue
        selected.add(name)
        for step in ensemble_steps(configs[name]):
            if step not in configs:
                raise ConfigError(f"ensemble '{name}' calls model '{step}', which the source repository lacks")
            if models is not None and step not in models and step not in selected:
                _LOGGER.info("including '%s': ensemble '%s' calls it", step, name)
            wanted.append(step)
    return sorted(selected)


def _check_output(source: Path, output: Path) -> None:
    source_abs, output_abs = source.resolve(), output.resolve()
    if output_abs == source_abs or source_abs in output_abs.parents or output_abs in source_abs.parents:
        raise ConfigError(f"output {output} must be outside the source repository {source} (and not contain it)")
    if output.exists():
        if not output.is_dir():
            raise ConfigError(f"output {output} is a file; give a folder for the GPU repository")
        strays = sorted(
            p.name for p in output.iterdir() if not p.name.startswith(".") and not (p / CONFIG_NAME).is_file()
        )
        if strays:
            raise ConfigError(
                f"output {output} holds {strays[:3]}, which are not models; it is replaced as a whole, so give an "
                "empty folder or an earlier GPU repository"
            )


def _ignore_hidden(_folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name.startswith(".")]  # staging or replaced folders of interrupted writes


def _write_model(
    model_dir: Path,
    config: model_config_pb2.ModelConfig,
    target: Path,
    settings: TensorRTAccelerator,
    *,
    instance_count: int,
    gpus: Sequence[int],
) -> PrecisionMode | None:
    """Copy one model folder; for an ONNX model, rewrite its config for the GPU. Return its precision, if any."""
    from tritonforge.serving.derived_repository import required_backend

    shutil.copytree(model_dir, target, ignore=_ignore_hidden)
    if required_backend(config) != "onnxruntime":
        return None
    precision = settings.precision_mode
    versions = version_numbers(model_dir)
    if precision is None and versions:
        precision = detect_precision(model_dir / str(versions[-1]) / (model_filename(config) or "model.onnx"))
    write_config(
        gpu_config(config, settings, instance_count=instance_count, gpus=gpus, precision_mode=precision),
        target / CONFIG_NAME,
    )
    return precision or PrecisionMode.FP32


def _carry_engines(output: Path, stage: Path, source_models: set[str]) -> list[str]:
    """Copy the `tensorrt_plan` models of an earlier `output` that the source lacks into the staging folder."""
    kept: list[str] = []
    if not output.is_dir():
        return kept
    for model_dir in sorted(p for p in output.iterdir() if (p / CONFIG_NAME).is_file()):
        if model_dir.name in source_models:
            continue
        if read_config(model_dir / CONFIG_NAME).platform != PLAN_PLATFORM:
            _LOGGER.info("dropping '%s' from %s: the source repository no longer has it", model_dir.name, output)
            continue
        shutil.copytree(model_dir, stage / model_dir.name, ignore=_ignore_hidden, copy_function=link_or_copy)
        kept.append(model_dir.name)
    return kept


def write_gpu_repository(
    source: Path,
    output: Path,
    settings: TensorRTAccelerator | None = None,
    models: Sequence[str] | None = None,
    *,
    instance_count: int = 1,
    gpus: Sequence[int] = (),
) -> GpuRepository:
    """Write the GPU-node repository for a canonical one: ONNX models on the TensorRT accelerator, the rest as is.

    Every selected model folder is copied (configs, version folders with model files and manifests); ONNX models
    get `gpu_config`; python-backend models and ensembles are copied unchanged, and an ensemble brings every model
    it calls. `tensorrt_plan` models already in `output` that the source lacks (built engines) are kept. The new
    repository is built in a staging folder beside `output` and renamed into place: a failure leaves `output` as it
    was, and the source is only read.

    Args:
        source: the canonical model repository.
        output: the GPU repository to create or replace.
        settings: the accelerator settings (default `TensorRTAccelerator()`).
        models: the models to write (default: all).
        instance_count: instances per GPU for ONNX models.
        gpus: GPU indices for ONNX models' instances (empty: every GPU).

    Returns:
        What was written.

    Raises:
        ConfigError: a missing source, unknown models, an ensemble calling a missing model, an output that overlaps
            the source or holds non-model files, or a model the GPU config rejects.
    """
    from tritonforge.serving.derived_repository import model_dirs

    settings = settings or TensorRTAccelerator()
    if not source.is_dir():
        raise ConfigError(f"source repository {source} does not exist; build one with `tritonforge export`")
    _check_output(source, output)
    configs = {d.name: read_config(d / CONFIG_NAME) for d in model_dirs(source)}
    selected = _select(configs, models)
    output.parent.mkdir(parents=True, exist_ok=True)
    stage = staging_dir(output.parent, f".{output.name}.staging-")
    try:
        accelerated: dict[str, str] = {}
        for name in selected:
            precision = _write_model(
                source / name, configs[name], stage / name, settings, instance_count=instance_count, gpus=gpus
            )
            if precision is not None:
                accelerated[name] = precision.value
        kept = _carry_engines(output, stage, set(configs))
        with published_dir(stage, output):  # an earlier GPU repository is at `stage` afterwards, removed below
            pass
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    copied = tuple(name for name in selected if name not in accelerated)
    _LOGGER.info(
        "wrote GPU repository %s: %d on TensorRT, %d copied, %d kept", output, len(accelerated), len(copied), len(kept)
    )
    return GpuRepository(output=output, accelerated=accelerated, copied=copied, kept=tuple(kept))
