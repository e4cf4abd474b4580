"""TensorRT engines in a model repository: `tensorrt_plan` versions with one engine file per GPU type.

    plan = plan_engine_build(repository=Path("model_repository"), model="digits",
                             output_repository=Path("gpu_model_repository"))        # no GPU needed: --dry-run
    written = build_engine_to_repository(repository=Path("model_repository"), model="digits",
                                         output_repository=Path("gpu_model_repository"))  # on the GPU node
    written.engines                                   # {"8.0": "model.sm80.plan", "9.0": "model.sm90.plan"}

Why one file per compute capability: an engine runs only on the GPU architecture and the TensorRT version that built
it. So each engine file is named after its compute capability (`model.sm90.plan`), the config maps it in
`cc_model_filenames` ({"9.0": "model.sm90.plan"}), and building on a second GPU type adds its file to the same
version; the manifest records GPU, compute capability, TensorRT version, profile, timing cache and build time for
each engine. Engines go to the GPU repository, never the canonical one (the embedded CPU server cannot load them),
and every write is atomic: a failed build or write leaves the repository as it was.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge._atomic import atomic_output, atomic_write_text, published_dir, staging_dir
from tritonforge.converters.gpu_info import GpuInfo, check_compute_capability, query_gpu
from tritonforge.converters.repository import (
    CONFIG_NAME,
    MANIFEST_NAME,
    add_version,
    model_filename,
    read_manifest,
    sha256_file,
    tool_versions,
    version_numbers,
)
from tritonforge.converters.tensorrt_build import BuilderChoice, EngineBuild, build_engine, default_timing_cache
from tritonforge.converters.tensorrt_profiles import (
    DEFAULT_WORKSPACE_BYTES,
    SequenceRange,
    ShapeProfile,
    check_workspace,
    derive_profile,
    trtexec_command,
)
from tritonforge.converters.triton_config import read_config, validate_model_name, write_config
from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

_LOGGER = logging.getLogger(__name__)

PLAN_PLATFORM = "tensorrt_plan"

EngineBuilder = Callable[..., EngineBuild]


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


def engine_filename(compute_capability: str) -> str:
    """Return the engine file name for a compute capability: "9.0" -> "model.sm90.plan"."""
    check_compute_capability(compute_capability)
    return f"model.sm{compute_capability.replace('.', '')}.plan"


def merge_cc_filenames(existing: Mapping[str, str], compute_capability: str, filename: str) -> dict[str, str]:
    """Return `existing` with `compute_capability` mapped to `filename` (keys sorted, for a stable config).

    Raises:
        ConfigError: a malformed compute capability, or `filename` already serves another compute capability.
    """
    check_compute_capability(compute_capability)
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
    check_placement(instance_count, gpus)
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


def check_placement(instance_count: int, gpus: Sequence[int], *, model: str | None = None) -> None:
    """Refuse KIND_GPU instance settings Triton would reject: no instances, or repeated or negative GPU indices.

    Raises:
        ConfigError: the bad setting, prefixed with the model's name when given.
    """
    prefix = f"model '{model}': " if model else ""
    if instance_count < 1:
        raise ConfigError(f"{prefix}instance count {instance_count} must be >= 1")
    if any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise ConfigError(f"{prefix}GPU indices {list(gpus)} must be distinct and >= 0")


def _read_manifest(version_dir: Path) -> dict[str, Any]:
    try:
        return read_manifest(version_dir)
    except ConfigError as exc:
        path = version_dir / MANIFEST_NAME
        raise ConfigError(f"{path} is missing or not JSON; rebuild this version with --overwrite") from exc


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
    check_workspace(workspace_bytes)
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


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """Hard-link `source` to `target`, or copy it where a link is impossible (another file system).

    Sharing the inode is safe because files in a model repository are only ever replaced by rename, never rewritten
    in place. The signature fits `shutil.copytree(copy_function=...)`.
    """
    try:
        os.link(source, target)
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
    stage = staging_dir(model_dir, f".staging-{version}-")
    try:
        for item in target.iterdir():
            if item.name in {engine_file.name, MANIFEST_NAME} or item.name.startswith("."):
                continue
            if item.is_dir():
                shutil.copytree(item, stage / item.name, copy_function=link_or_copy)
            else:
                link_or_copy(item, stage / item.name)
        with atomic_output(stage / engine_file.name) as tmp:
            shutil.copyfile(engine_file, tmp)
        atomic_write_text(stage / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        with published_dir(stage, target):  # the old version is at `stage` afterwards, removed below
            write_config(config, model_dir / CONFIG_NAME)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


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
    check_placement(instance_count, gpus)
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
