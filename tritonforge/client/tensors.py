"""A model's tensor signature as Triton reports it, and the checks a request must pass before it is sent.

    signature = ModelSignature.from_protos(metadata_response, config_response)
    validate_inputs("digits", signature, {"image": batch})   # raises InvalidInputError naming what was expected
    signature.inputs[0]   # TensorInfo(name='image', datatype='FP32', shape=(-1, 1, 8, 8))

Checking here, against cached metadata, turns a server round trip that would fail into an immediate error that
says what the model expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tritonclient.utils import triton_to_np_dtype

from tritonforge.errors import ConfigError, InvalidInputError

__all__ = ["ModelSignature", "TensorInfo", "validate_inputs"]


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a served model.

    Attributes:
        name: the tensor's name in the model config.
        datatype: Triton's datatype name, e.g. "FP32".
        shape: the full shape, batch dimension included as -1 when the model batches; -1 marks any size.
        optional: whether an input may be left out of a request (model config `optional: true`).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if triton_to_np_dtype(self.datatype) is None:
            raise ConfigError(
                f"tensor '{self.name}' has unknown datatype '{self.datatype}'; "
                "expected a Triton datatype such as FP32, INT64, BOOL or BYTES"
            )
        # Accept any sequence of ints (protobuf repeated fields, lists) but store an immutable tuple.
        object.__setattr__(self, "shape", tuple(int(dim) for dim in self.shape))

    @property
    def np_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of this tensor's arrays (object for BYTES)."""
        return np.dtype(triton_to_np_dtype(self.datatype))

    def describe(self) -> str:
        """Render as `FP32 with shape [-1, 1, 8, 8]` for messages and tables."""
        return f"{self.datatype} with shape {list(self.shape)}"

    def accepts_dtype(self, dtype: np.dtype[Any]) -> bool:
        """Whether an array of `dtype` can be sent as this tensor without conversion."""
        if self.datatype == "BYTES":
            return dtype.kind in "OSU"
        return dtype == self.np_dtype

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether an array of `shape` matches this tensor's rank and fixed dimensions (-1 matches any size)."""
        if len(shape) != len(self.shape):
            return False
        return all(want in (-1, got) for want, got in zip(self.shape, shape, strict=True))


@dataclass(frozen=True, kw_only=True)
class ModelSignature:
    """What a served model version takes and returns, from its metadata and config.

    Attributes:
        inputs: the model's inputs, in config order.
        outputs: the model's outputs, in config order.
        max_batch_size: the largest batch one request may carry; 0 when the model does not batch.
    """

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch_size: int

    @classmethod
    def from_protos(cls, metadata: Any, config: Any) -> ModelSignature:
        """Build from Triton's `ModelMetadataResponse` and `ModelConfigResponse` messages.

        Shapes come from the metadata, which already prepends -1 for batching models; the config adds
        max_batch_size and which inputs are optional.

        Args:
            metadata: a `service_pb2.ModelMetadataResponse`.
            config: a `service_pb2.ModelConfigResponse`.

        Returns:
            The signature.
        """
        optional = {tensor.name for tensor in config.config.input if tensor.optional}
        return cls(
            inputs=tuple(
                TensorInfo(t.name, t.datatype, tuple(t.shape), optional=t.name in optional) for t in metadata.inputs
            ),
            outputs=tuple(TensorInfo(t.name, t.datatype, tuple(t.shape)) for t in metadata.outputs),
            max_batch_size=int(config.config.max_batch_size),
        )

    def input(self, name: str) -> TensorInfo | None:
        """The input called `name`, or None."""
        return next((tensor for tensor in self.inputs if tensor.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        """The output called `name`, or None."""
        return next((tensor for tensor in self.outputs if tensor.name == name), None)


def _shape_of(array: NDArray[Any]) -> str:
    return f"{array.dtype} {list(array.shape)}"


def validate_inputs(
    model: str,
    signature: ModelSignature,
    inputs: Mapping[str, Any],
    *,
    outputs: tuple[str, ...] | None = None,
) -> None:
    """Check a request against the model's signature before it is sent.

    Args:
        model: the model's name, for messages.
        signature: what the model takes and returns.
        inputs: the arrays to send, by input name.
        outputs: the output names requested, if a subset was asked for.

    Raises:
        InvalidInputError: an input is unknown, missing, not a numpy array, of the wrong dtype or shape, the batch
            sizes differ between inputs or exceed max_batch_size, or a requested output is unknown. The message
            says what the model expects.
    """
    expected = ", ".join(f"'{t.name}' {t.describe()}" for t in signature.inputs)
    for name, array in inputs.items():
        tensor = signature.input(name)
        if tensor is None:
            raise InvalidInputError(f"model '{model}' has no input '{name}'; its inputs are: {expected}")
        if not isinstance(array, np.ndarray):
            raise InvalidInputError(
                f"input '{name}' of model '{model}' must be a numpy array of {tensor.describe()}, "
                f"got {type(array).__name__}"
            )
        if not (tensor.accepts_dtype(array.dtype) and tensor.accepts_shape(array.shape)):
            raise InvalidInputError(
                f"input '{name}' of model '{model}' expects {tensor.describe()}, got {_shape_of(array)}"
            )
    missing = [t.name for t in signature.inputs if t.name not in inputs and not t.optional]
    if missing:
        raise InvalidInputError(
            f"model '{model}' needs input(s) {missing}, which the request lacks; expected: {expected}"
        )
    if signature.max_batch_size > 0:
        _check_batch(model, signature.max_batch_size, inputs)
    known_outputs = [t.name for t in signature.outputs]
    for name in outputs or ():
        if name not in known_outputs:
            raise InvalidInputError(f"model '{model}' has no output '{name}'; its outputs are {known_outputs}")


def _check_batch(model: str, max_batch_size: int, inputs: Mapping[str, NDArray[Any]]) -> None:
    batch_sizes = {name: int(array.shape[0]) for name, array in inputs.items()}
    if len(set(batch_sizes.values())) > 1:
        raise InvalidInputError(
            f"inputs of model '{model}' must share one batch size (first dimension), got {batch_sizes}"
        )
    for name, batch in batch_sizes.items():
        if batch > max_batch_size:
            raise InvalidInputError(
                f"input '{name}' of model '{model}' has batch size {batch}, over the model's max_batch_size "
                f"{max_batch_size}; split the request into batches of at most {max_batch_size}"
            )
        if batch == 0:
            raise InvalidInputError(f"input '{name}' of model '{model}' has an empty batch; send at least one item")
