"""config.pbtxt: a validated spec becomes Triton's own ModelConfig proto, written and read with protobuf's text format.

    spec = ModelConfigSpec(name="digits", max_batch_size=64, max_queue_delay_us=100,
                           inputs=[TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")],
                           outputs=[TensorSpec(name="logits", shape=(10,), dtype="float32")])
    write_config(build_model_config(spec), Path("model_repository/digits/config.pbtxt"))
    config = read_config(Path("model_repository/digits/config.pbtxt"))  # a model_config_pb2.ModelConfig

The path is spec -> dict -> `json_format.ParseDict` -> `text_format`, so the proto itself checks every field name and
enum; nothing here formats pbtxt by hand, and the parser is protobuf's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge._atomic import atomic_write_text
from tritonforge.converters.specs import TensorSpec
from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

_LOGGER = logging.getLogger(__name__)

ONNX_PLATFORM = "onnxruntime_onnx"


class InstanceKind(str, Enum):
    """Where Triton places a model's instances (`instance_group.kind`)."""

    AUTO = "KIND_AUTO"
    """GPU instances where the server has GPUs, CPU otherwise: one config for laptops, CI and GPU nodes."""
    CPU = "KIND_CPU"
    """Always on CPU."""
    GPU = "KIND_GPU"
    """Always on GPU; a server without one refuses to load the model."""


class VersionPolicyKind(str, Enum):
    """Which versions of a model Triton serves (`version_policy`)."""

    LATEST = "latest"
    """The `num_versions` highest-numbered versions."""
    ALL = "all"
    """Every version in the model folder."""
    SPECIFIC = "specific"
    """Only the listed versions."""


@dataclass(frozen=True, kw_only=True)
class VersionPolicy:
    """A Triton version policy: `VersionPolicy()` serves the latest version only (Triton's own default).

    Attributes:
        kind: latest N, all, or specific versions.
        num_versions: how many of the latest versions to serve (kind LATEST only).
        versions: the version numbers to serve (kind SPECIFIC only).
    """

    kind: VersionPolicyKind = VersionPolicyKind.LATEST
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind is VersionPolicyKind.LATEST and self.num_versions < 1:
            raise ConfigError(f"version policy latest needs num_versions >= 1, got {self.num_versions}")
        if self.kind is VersionPolicyKind.SPECIFIC and (not self.versions or min(self.versions) < 1):
            raise ConfigError(f"version policy specific needs versions >= 1, got {list(self.versions)}")
        if self.kind is not VersionPolicyKind.SPECIFIC and self.versions:
            raise ConfigError(f"versions {list(self.versions)} need kind=specific, not {self.kind.value}")

    def to_dict(self) -> dict[str, Any]:
        """Return the policy in ModelConfig's JSON form, e.g. {"latest": {"num_versions": 1}}."""
        if self.kind is VersionPolicyKind.LATEST:
            return {"latest": {"num_versions": self.num_versions}}
        if self.kind is VersionPolicyKind.SPECIFIC:
            return {"specific": {"versions": list(self.versions)}}
        return {"all": {}}


@dataclass(frozen=True, kw_only=True)
class ModelConfigSpec:
    """Everything tritonforge puts in a config.pbtxt, validated before the proto is built.

    Attributes:
        name: the model's name; also its folder in the repository.
        platform: Triton platform (default ONNX Runtime); give `backend` instead for backend-named models.
        backend: Triton backend name (e.g. "python"), exclusive with `platform`.
        max_batch_size: largest batch Triton forms; 0 means the model has no batch axis.
        inputs: input tensors, shapes without the batch axis.
        outputs: output tensors, shapes without the batch axis.
        max_queue_delay_us: enables dynamic batching with this queue delay; None disables it.
        preferred_batch_sizes: batch sizes the dynamic batcher aims for (each <= max_batch_size).
        instance_count: model instances per device.
        instance_kind: where the instances run.
        version_policy: which versions Triton serves.
    """

    name: str
    platform: str | None = ONNX_PLATFORM
    backend: str | None = None
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_queue_delay_us: int | None = None
    preferred_batch_sizes: tuple[int, ...] = ()
    instance_count: int = 1
    instance_kind: InstanceKind = InstanceKind.AUTO
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)

    def __post_init__(self) -> None:
        for attr in ("inputs", "outputs", "preferred_batch_sizes"):
            if isinstance(getattr(self, attr), list):  # accept lists; the frozen spec keeps tuples
                object.__setattr__(self, attr, tuple(getattr(self, attr)))
        validate_model_name(self.name)
        if (self.platform is None) == (self.backend is None):
            raise ConfigError(f"model '{self.name}': give exactly one of platform or backend")
        if self.max_batch_size < 0:
            raise ConfigError(
                f"model '{self.name}': max_batch_size {self.max_batch_size} must be >= 0 (0: no batching)"
            )
        self._validate_tensors()
        self._validate_batching()
        if self.instance_count < 1:
            raise ConfigError(f"model '{self.name}': instance_count {self.instance_count} must be >= 1")

    def _validate_tensors(self) -> None:
        for role, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not tensors:
                raise ConfigError(f"model '{self.name}' needs at least one of its {role}")
            names = [t.name for t in tensors]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ConfigError(f"model '{self.name}' {role} repeat the name(s) {duplicates}; names must be unique")

    def _validate_batching(self) -> None:
        if self.max_queue_delay_us is not None:
            if self.max_queue_delay_us < 0:
                raise ConfigError(f"model '{self.name}': max_queue_delay_us {self.max_queue_delay_us} must be >= 0")
            if self.max_batch_size == 0:
                raise ConfigError(
                    f"model '{self.name}': dynamic batching needs max_batch_size >= 1; "
                    "set max_queue_delay_us=None or raise max_batch_size"
                )
        if self.preferred_batch_sizes:
            if self.max_queue_delay_us is None:
                raise ConfigError(
                    f"model '{self.name}': preferred_batch_sizes need dynamic batching (max_queue_delay_us)"
                )
            bad = [s for s in self.preferred_batch_sizes if not 1 <= s <= self.max_batch_size]
            if bad:
                raise ConfigError(
                    f"model '{self.name}': preferred batch size {bad[0]} must be between 1 and "
                    f"max_batch_size {self.max_batch_size}"
                )


def validate_model_name(name: str) -> None:
    """Check that `name` can be a model folder and a Triton model name.

    Raises:
        ConfigError: the name is empty, hidden, has a path separator or whitespace.
    """
    if not name or name in {".", ".."} or name.startswith(".") or any(c in name for c in "/\\ \t\n"):
        raise ConfigError(
            f"model name {name!r} must be a plain folder name: non-empty, no '/', no spaces, not starting with '.'"
        )


def _tensor_dict(tensor: TensorSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": tensor.name, "data_type": tensor.triton_dtype}
    if tensor.shape:
        entry["dims"] = list(tensor.shape)
    else:
        # WAR: Triton rejects an empty `dims`; a per-item scalar is declared as [1] and reshaped to [] for the model.
        entry["dims"] = [1]
        entry["reshape"] = {"shape": []}
    return entry


def build_model_config(spec: ModelConfigSpec) -> model_config_pb2.ModelConfig:
    """Build Triton's ModelConfig proto from a spec.

    Args:
        spec: the validated model configuration.

    Returns:
        The proto, ready for `write_config`.

    Raises:
        ConfigError: the proto rejected a field (a bug here, since the spec is validated first).
    """
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    config: dict[str, Any] = {"name": spec.name}
    if spec.platform is not None:
        config["platform"] = spec.platform
    else:
        config["backend"] = spec.backend
    config["version_policy"] = spec.version_policy.to_dict()
    config["max_batch_size"] = spec.max_batch_size
    config["input"] = [_tensor_dict(t) for t in spec.inputs]
    config["output"] = [_tensor_dict(t) for t in spec.outputs]
    # WAR: KIND_AUTO is the enum's zero value, so proto3 text format leaves `kind` out; Triton reads that as AUTO.
    config["instance_group"] = [{"count": spec.instance_count, "kind": spec.instance_kind.value}]
    if spec.max_queue_delay_us is not None:
        # WAR: a delay of 0 prints as an empty `dynamic_batching {}`; the message's presence is what enables batching.
        batching: dict[str, Any] = {"max_queue_delay_microseconds": spec.max_queue_delay_us}
        if spec.preferred_batch_sizes:
            batching["preferred_batch_size"] = list(spec.preferred_batch_sizes)
        config["dynamic_batching"] = batching
    try:
        return json_format.ParseDict(config, model_config_pb2.ModelConfig())
    except json_format.ParseError as exc:
        raise ConfigError(f"model '{spec.name}': Triton's ModelConfig rejected the config: {exc}") from exc


def config_to_text(config: model_config_pb2.ModelConfig) -> str:
    """Return the config.pbtxt text of a ModelConfig (protobuf's text format, fields in proto order)."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(config))


def write_config(config: model_config_pb2.ModelConfig, path: Path) -> Path:
    """Write a ModelConfig as config.pbtxt, atomically.

    Args:
        config: the proto to write.
        path: the config.pbtxt path; its folder must exist.

    Returns:
        `path`.
    """
    atomic_write_text(path, config_to_text(config))
    _LOGGER.debug("wrote %s", path)
    return path


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt into a ModelConfig.

    Args:
        path: the config.pbtxt file.

    Returns:
        The parsed proto.

    Raises:
        ConfigError: the file is missing, or does not parse (the message names the file, line and column).
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist; generate it with `tritonforge export`") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        line, column = exc.GetLine(), exc.GetColumn()
        # ParseError's text starts with "line:column : "; keep only the reason after it.
        reason = str(exc).split(" : ", 1)[-1] if line is not None else str(exc)
        where = f"{path}:{line}:{column}" if line is not None else str(path)
        raise ConfigError(f"{where}: not a valid Triton config.pbtxt: {reason}") from exc
