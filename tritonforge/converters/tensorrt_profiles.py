"""TensorRT optimization profiles and trtexec command lines: pure functions of a model's config.

    profile = derive_profile(read_config(Path("model_repository/digits/config.pbtxt")))  # batch 1 / 8 / 64
    print(shlex.join(trtexec_command(onnx_path=onnx, engine_path=plan, profile=profile, timing_cache=cache)))

Why its own module: the profile is decided from config.pbtxt alone, without a GPU or TensorRT, and three places need
the same one: the `tensorrt_plan` build (`tensorrt_build`), its --dry-run (`tensorrt_repository.plan_engine_build`)
and ONNX Runtime's TensorRT accelerator (`gpu_target`, as `trt_profile_*_shapes`). Keeping it pure keeps it testable
on a CPU machine.

Profiles: per input, batch min 1, opt the typical batch (largest preferred_batch_size, else min(8, max_batch_size)),
max max_batch_size; dynamic (-1) dims take min/opt/max from a sequence range (for a text encoder e.g. 1:128:256, the
maximum being the tokenizer's truncation length). Static inputs get no shapes (trtexec refuses them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

DEFAULT_WORKSPACE_BYTES = 1 << 30
MIN_WORKSPACE_BYTES = 1 << 20

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


def check_workspace(workspace_bytes: int) -> None:
    """Refuse a builder workspace under 1 MiB (trtexec takes it in whole MiB).

    Raises:
        ConfigError: a workspace under 1 MiB.
    """
    if workspace_bytes < MIN_WORKSPACE_BYTES:
        raise ConfigError(f"workspace {workspace_bytes} bytes is below 1 MiB; give at least 1M")


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
    check_workspace(workspace_bytes)
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
