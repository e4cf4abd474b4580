"""config.pbtxt: a validated spec becomes Triton's own ModelConfig proto, written and read with protobuf's text format.

    spec = ModelConfigSpec(name="digits", max_batch_size=64, max_queue_delay_us=100,
                           inputs=[TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")],
                           outputs=[TensorSpec(name="logits", shape=(10,), dtype="float32")])
    write_config(build_model_config(spec), Path("model_repository/digits/config.pbtxt"))
    config = read_config(Path("model_repository/digits/config.pbtxt"))  # a model_config_pb2.ModelConfig

    ensemble = ModelConfigSpec(name="minilm", platform=ENSEMBLE_PLATFORM, max_batch_size=64, inputs=..., outputs=...,
                               ensemble_steps=[EnsembleStep(model_name="minilm_tokenizer", input_map={"TEXT": "TEXT"},
                                                            output_map={"input_ids": "ids", ...}), ...])

Dynamic batching always comes with a bounded queue policy: requests wait at most `queue_timeout_us` (1 s unless the
spec says otherwise, or less when the client sends its own deadline as the request's timeout) and at most
`max_queue_size` requests wait (4 full batches unless the spec says otherwise); past either the server rejects them
at once. Without it Triton queues without bound and runs requests whose callers gave up long ago.

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
ENSEMBLE_PLATFORM = "ensemble"
LATEST_VERSION = -1
"""An ensemble step's `model_version` that means "whatever version the server serves as latest"."""
DEFAULT_QUEUE_TIMEOUT_US = 1_000_000
"""How long a request may wait in the dynamic batcher's queue when its client sends no deadline (1 s)."""
DEFAULT_QUEUE_BATCHES = 4
"""The default max_queue_size in full batches: max_queue_size = 4 * max_batch_size requests."""


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
class EnsembleStep:
    """One step of an ensemble: which model runs, and how its tensors connect to the ensemble's.

    Attributes:
        model_name: the model this step runs.
        model_version: its version; -1 (LATEST_VERSION) follows the version the server serves.
        input_map: the step model's input name -> the ensemble tensor that feeds it.
        output_map: the step model's output name -> the ensemble tensor it produces.
    """

    model_name: str
    model_version: int = LATEST_VERSION
    input_map: dict[str, str]
    output_map: dict[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_map", dict(self.input_map))  # a private copy: the spec stays as validated
        object.__setattr__(self, "output_map", dict(self.output_map))
        validate_model_name(self.model_name)
        if self.model_version < 1 and self.model_version != LATEST_VERSION:
            raise ConfigError(
                f"ensemble step '{self.model_name}': model_version {self.model_version} must be >= 1, or -1 for latest"
            )
        for role in ("input_map", "output_map"):
            mapping = getattr(self, role)
            if not mapping:
                raise ConfigError(f"ensemble step '{self.model_name}' needs a non-empty {role}")
            bad = [f"{k!r}: {v!r}" for k, v in mapping.items() if not _plain_name(k) or not _plain_name(v)]
            if bad:
                raise ConfigError(f"ensemble step '{self.model_name}' {role} has empty or padded names: {bad}")
        produced = list(self.output_map.values())
        if len(set(produced)) != len(produced):
            raise ConfigError(f"ensemble step '{self.model_name}' maps two outputs to one ensemble tensor: {produced}")

    def to_dict(self) -> dict[str, Any]:
        """Return the step in ModelConfig's JSON form (`ensemble_scheduling.step`)."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "input_map": dict(self.input_map),
            "output_map": dict(self.output_map),
        }


def _plain_name(name: object) -> bool:
    return isinstance(name, str) and bool(name) and name == name.strip()


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
        queue_timeout_us: how long a request may wait in the queue before Triton rejects it, when its client sends
            no timeout of its own (clients may send a shorter or longer one: allow_timeout_override is on); None
            means DEFAULT_QUEUE_TIMEOUT_US. Dynamic batching only.
        max_queue_size: how many requests may wait; more are rejected at once ("Exceeds maximum queue size"), so
            overload is refused instead of queued without bound; None means DEFAULT_QUEUE_BATCHES * max_batch_size.
            Dynamic batching only.
        instance_count: model instances per device.
        instance_kind: where the instances run.
        version_policy: which versions Triton serves.
        parameters: free-form string parameters the backend reads (config.pbtxt `parameters`).
        ensemble_steps: the steps of an ensemble (platform "ensemble" only, which requires them); an ensemble has no
            instances and no dynamic batching of its own, so those fields must keep their defaults.
    """

    name: str
    platform: str | None = ONNX_PLATFORM
    backend: str | None = None
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_queue_delay_us: int | None = None
    preferred_batch_sizes: tuple[int, ...] = ()
    queue_timeout_us: int | None = None
    max_queue_size: int | None = None
    instance_count: int = 1
    instance_kind: InstanceKind = InstanceKind.AUTO
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    parameters: dict[str, str] = field(default_factory=dict)
    ensemble_steps: tuple[EnsembleStep, ...] = ()

    def __post_init__(self) -> None:
        for attr in ("inputs", "outputs", "preferred_batch_sizes", "ensemble_steps"):
            if isinstance(getattr(self, attr), list):  # accept lists; the frozen spec keeps tuples
                object.__setattr__(self, attr, tuple(getattr(self, attr)))
        object.__setattr__(self, "parameters", dict(self.parameters))
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
        bad = [f"{k!r}: {v!r}" for k, v in self.parameters.items() if not _plain_name(k) or not isinstance(v, str)]
        if bad:
            raise ConfigError(f"model '{self.name}': parameters must map non-empty names to strings, got {bad}")
        self._validate_ensemble()

    @property
    def is_ensemble(self) -> bool:
        """Whether this is an ensemble (platform "ensemble")."""
        return self.platform == ENSEMBLE_PLATFORM

    def _validate_ensemble(self) -> None:
        if not self.is_ensemble:
            if self.ensemble_steps:
                raise ConfigError(f"model '{self.name}': ensemble_steps need platform='{ENSEMBLE_PLATFORM}'")
            return
        if not self.ensemble_steps:
            raise ConfigError(f"ensemble '{self.name}' needs at least one step (ensemble_steps)")
        own_instances = self.instance_count != 1 or self.instance_kind is not InstanceKind.AUTO
        if self.max_queue_delay_us is not None or own_instances:
            raise ConfigError(
                f"ensemble '{self.name}' cannot set dynamic batching or instances (Triton rejects them); "
                "set them on the models its steps run"
            )
        available = {t.name for t in self.inputs}
        produced: set[str] = set()
        for step in self.ensemble_steps:
            twice = sorted((produced | available) & set(step.output_map.values()))
            if twice:
                raise ConfigError(
                    f"ensemble '{self.name}': step '{step.model_name}' writes tensor(s) {twice}, which already have a "
                    "producer; give each intermediate tensor its own name"
                )
            produced |= set(step.output_map.values())
        every = available | produced
        for step in self.ensemble_steps:
            unfed = sorted(set(step.input_map.values()) - every)
            if unfed:
                raise ConfigError(
                    f"ensemble '{self.name}': step '{step.model_name}' reads tensor(s) {unfed} that no ensemble input "
                    f"or step output provides; known tensors: {sorted(every)}"
                )
        missing = sorted({t.name for t in self.outputs} - produced)
        if missing:
            raise ConfigError(f"ensemble '{self.name}': output(s) {missing} are produced by no step; map them in one")
        consumed = {name for step in self.ensemble_steps for name in step.input_map.values()}
        unused = sorted(available - consumed)
        if unused:
            raise ConfigError(f"ensemble '{self.name}': input(s) {unused} feed no step; map them in a step's input_map")

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
        self._validate_queue_policy()
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

    def _validate_queue_policy(self) -> None:
        given = {
            name: value
            for name, value in (("queue_timeout_us", self.queue_timeout_us), ("max_queue_size", self.max_queue_size))
            if value is not None
        }
        if given and self.max_queue_delay_us is None:
            raise ConfigError(
                f"model '{self.name}': {', '.join(given)} need dynamic batching (max_queue_delay_us); the queue policy "
                "belongs to the dynamic batcher"
            )
        for name, value in given.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"model '{self.name}': {name} {value!r} must be an int >= 1 (Triton reads 0 as unbounded, which "
                    "is what the queue policy is there to prevent)"
                )

    @property
    def queue_policy(self) -> tuple[int, int] | None:
        """(timeout in microseconds, max queue size) with defaults filled in; None without dynamic batching."""
        if self.max_queue_delay_us is None:
            return None
        timeout_us = self.queue_timeout_us if self.queue_timeout_us is not None else DEFAULT_QUEUE_TIMEOUT_US
        size = self.max_queue_size if self.max_queue_size is not None else DEFAULT_QUEUE_BATCHES * self.max_batch_size
        return timeout_us, size


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


def _queue_policy_dict(spec: ModelConfigSpec) -> dict[str, Any]:
    policy = spec.queue_policy
    assert policy is not None  # called with dynamic batching only
    timeout_us, size = policy
    return {
        # WAR: REJECT is the enum's zero value, so proto3 text format leaves `timeout_action` out; Triton reads the
        # missing field as REJECT (a request past its timeout is answered "Request timeout expired", not run late).
        "timeout_action": "REJECT",
        "default_timeout_microseconds": timeout_us,
        "allow_timeout_override": True,  # clients send their own remaining deadline (tritonforge.client does)
        "max_queue_size": size,
    }


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
    if spec.is_ensemble:
        # An ensemble runs no instances of its own; Triton rejects an instance_group on it.
        config["ensemble_scheduling"] = {"step": [step.to_dict() for step in spec.ensemble_steps]}
    else:
        # WAR: KIND_AUTO is the enum's zero value, so proto3 text format leaves `kind` out; Triton reads it as AUTO.
        config["instance_group"] = [{"count": spec.instance_count, "kind": spec.instance_kind.value}]
    if spec.parameters:
        config["parameters"] = {key: {"string_value": value} for key, value in sorted(spec.parameters.items())}
    if spec.max_queue_delay_us is not None:
        # WAR: a delay of 0 prints as an empty `dynamic_batching {}`; the message's presence is what enables batching.
        batching: dict[str, Any] = {"max_queue_delay_microseconds": spec.max_queue_delay_us}
        if spec.preferred_batch_sizes:
            batching["preferred_batch_size"] = list(spec.preferred_batch_sizes)
        batching["default_queue_policy"] = _queue_policy_dict(spec)
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
