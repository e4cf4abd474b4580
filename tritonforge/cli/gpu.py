"""`tritonforge gpu ...`: the GPU-node repository and TensorRT engines, built on the node that serves them.

tritonforge gpu repository model_repository --output gpu_model_repository --instances 2
tritonforge gpu build-engine --repository model_repository --model digits --output-repository gpu_model_repository
tritonforge gpu build-engine --model minilm_encoder --seq 1:128:256 --dry-run      (no GPU needed)
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from tritonforge.converters.gpu_target import DEFAULT_ENGINE_CACHE_PATH, PrecisionMode

if TYPE_CHECKING:
    from tritonforge.converters.tensorrt_build import BuilderChoice
    from tritonforge.converters.tensorrt_profiles import SequenceRange, ShapeProfile

_SEQ_HELP = "min:opt:max for dynamic (-1) dims, e.g. 1:128:256 (max: the tokenizer's truncation length)."


def format_profile_table(profile: ShapeProfile) -> str:
    """Return the profile as an aligned table (input, min, opt, max), static inputs marked."""
    rows: list[tuple[str, ...]] = [("input", "min", "opt", "max")]
    for tensor in profile.inputs:
        shapes = ["x".join(str(d) for d in shape) for shape in (tensor.minimum, tensor.optimum, tensor.maximum)]
        rows.append((tensor.name + ("" if tensor.dynamic else " (static)"), *shapes))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _sequence_range(text: str | None) -> SequenceRange | None:
    from tritonforge.converters.tensorrt_profiles import SequenceRange

    return SequenceRange.parse(text) if text else None


def repository(
    source: Annotated[Path, typer.Argument(help="The canonical model repository.")] = Path("model_repository"),
    output: Annotated[Path, typer.Option("--output", "-o", help="The GPU repository to write (replaced).")] = Path(
        "gpu_model_repository"
    ),
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model to include (repeat; default: all).")
    ] = None,
    precision: Annotated[
        PrecisionMode | None, typer.Option(help="TensorRT precision for every model (default: from each graph).")
    ] = None,
    workspace: Annotated[str, typer.Option(help="TensorRT workspace, e.g. 1G or 512M.")] = "1G",
    engine_cache: Annotated[
        str, typer.Option(help="Engine cache folder on the GPU node (mount a volume there).")
    ] = DEFAULT_ENGINE_CACHE_PATH,
    no_engine_cache: Annotated[bool, typer.Option("--no-engine-cache", help="Rebuild engines at each load.")] = False,
    instances: Annotated[int, typer.Option("--instances", help="Instances per GPU for ONNX models.")] = 1,
    gpus: Annotated[list[int] | None, typer.Option("--gpu", help="GPU index for instances (repeat).")] = None,
    typical_batch: Annotated[int | None, typer.Option(help="Profile opt batch (default: from the config).")] = None,
    seq: Annotated[str | None, typer.Option("--seq", help=_SEQ_HELP)] = None,
    no_profile: Annotated[
        bool, typer.Option("--no-profile", help="No explicit TensorRT profile (ONNX Runtime builds per shape).")
    ] = False,
) -> None:
    """Write the GPU-node repository: ONNX models on the TensorRT accelerator with KIND_GPU instances."""
    from tritonforge.converters.gpu_target import TensorRTAccelerator, parse_size, write_gpu_repository

    settings = TensorRTAccelerator(
        precision_mode=precision, max_workspace_size_bytes=parse_size(workspace),
        engine_cache_enable=not no_engine_cache, engine_cache_path=engine_cache, explicit_profile=not no_profile,
        typical_batch=typical_batch, sequence_range=_sequence_range(seq),
    )  # fmt: skip
    written = write_gpu_repository(source, output, settings, models, instance_count=instances, gpus=gpus or ())
    typer.echo(f"wrote {written.output}")
    for name, mode in sorted(written.accelerated.items()):
        typer.echo(f"  {name}: onnxruntime + TensorRT {mode}, KIND_GPU x{instances}")
    for name in written.copied:
        typer.echo(f"  {name}: copied unchanged")
    for name in written.kept:
        typer.echo(f"  {name}: kept (TensorRT engine)")


def build_engine(
    model: Annotated[str, typer.Option("--model", "-m", help="The ONNX model to build.")],
    repository: Annotated[Path, typer.Option("--repository", "-r", help="The canonical model repository.")] = Path(
        "model_repository"
    ),
    version: Annotated[int | None, typer.Option(help="ONNX version to build (default: the latest).")] = None,
    output_repository: Annotated[
        Path, typer.Option("--output-repository", "-o", help="The GPU repository to add the engine to.")
    ] = Path("gpu_model_repository"),
    output_model: Annotated[str | None, typer.Option(help="Engine model name (default: <model>_trt).")] = None,
    typical_batch: Annotated[int | None, typer.Option(help="Profile opt batch (default: from the config).")] = None,
    seq: Annotated[str | None, typer.Option("--seq", help=_SEQ_HELP)] = None,
    timing_cache: Annotated[
        Path | None, typer.Option(help="Timing cache file (default: ~/.cache/tritonforge/tensorrt/timing-smXY.cache).")
    ] = None,
    workspace: Annotated[str, typer.Option(help="Builder workspace, e.g. 1G or 512M.")] = "1G",
    builder: Annotated[str, typer.Option(help="auto, python (TensorRT API) or trtexec.")] = "auto",
    device: Annotated[int, typer.Option(help="CUDA device to build on.")] = 0,
    instances: Annotated[int, typer.Option("--instances", help="Engine instances per GPU.")] = 1,
    gpus: Annotated[list[int] | None, typer.Option("--gpu", help="GPU index for instances (repeat).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rebuild this GPU type's engine.")] = False,
    tf32: Annotated[bool, typer.Option("--tf32", help="Let FP32 layers use TF32 (default: FP32 stays FP32).")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the profile and trtexec command; build nothing (no GPU needed).")
    ] = False,
) -> None:
    """Build a TensorRT engine for this node's GPU and add it as a tensorrt_plan version (cc_model_filenames)."""
    from tritonforge.converters.gpu_info import query_gpu
    from tritonforge.converters.gpu_target import parse_size
    from tritonforge.converters.tensorrt_repository import build_engine_to_repository, plan_engine_build
    from tritonforge.errors import ConfigError, ConversionError

    if builder not in ("auto", "python", "trtexec"):
        raise ConfigError(f"--builder {builder!r} must be auto, python or trtexec")
    workspace_bytes = parse_size(workspace)
    if dry_run:
        try:
            gpu = query_gpu(device)
        except ConversionError:
            gpu = None  # a CPU machine: the engine file name keeps a <cc> placeholder
        plan = plan_engine_build(
            repository=repository, model=model, output_repository=output_repository, version=version,
            output_model=output_model, typical_batch=typical_batch, sequence_range=_sequence_range(seq),
            timing_cache=timing_cache, workspace_bytes=workspace_bytes, device=device, gpu=gpu, tf32=tf32,
        )  # fmt: skip
        target = plan.output_model_dir / str(plan.version)
        typer.echo(f"would build {plan.onnx_path} -> {target / (plan.engine_filename or 'model.sm<cc>.plan')}")
        typer.echo(format_profile_table(plan.profile))
        typer.echo(shlex.join(plan.trtexec_command()))
        return
    built = build_engine_to_repository(
        repository=repository, model=model, output_repository=output_repository, version=version,
        output_model=output_model, typical_batch=typical_batch, sequence_range=_sequence_range(seq),
        timing_cache=timing_cache, workspace_bytes=workspace_bytes, device=device,
        builder=cast("BuilderChoice", builder),  # checked against the three choices above
        instance_count=instances, gpus=gpus or (), overwrite=overwrite, tf32=tf32,
    )  # fmt: skip
    facts = built.build
    how = "added to" if built.added_to_existing else "wrote"
    typer.echo(f"{how} {built.model_dir / str(built.version)}: {built.engine_path.name}")
    typer.echo(
        f"  {facts.gpu.name} (compute capability {facts.gpu.compute_capability}), TensorRT {facts.tensorrt_version}, "
        f"{facts.builder}, {facts.build_seconds:.1f}s, timing cache {facts.timing_cache}"
        + (" (reused)" if facts.timing_cache_reused else "")
    )
    typer.echo(f"  engines in this version: {', '.join(f'{cc}: {f}' for cc, f in sorted(built.engines.items()))}")
    typer.echo(format_profile_table(facts.profile))
