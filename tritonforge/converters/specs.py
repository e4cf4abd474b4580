"""Tensor specs and the dtype names of numpy, ONNX and Triton.

    spec = TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")  # shape without the batch axis
    numpy_to_triton("float32")   # "TYPE_FP32"
    onnx_to_numpy(1)             # "float32" (onnx.TensorProto.FLOAT)

Every converter speaks numpy dtype names; ONNX element types and Triton data types are derived from them here, so
the three vocabularies can never drift apart in different modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge.errors import ConfigError

# numpy name -> (onnx.TensorProto element type, Triton DataType). The ONNX numbers are TensorProto's enum values,
# spelled out so that importing this module does not import onnx; a unit test checks them against onnx itself.
_DTYPES: dict[str, tuple[int, str]] = {
    "bool": (9, "TYPE_BOOL"),
    "uint8": (2, "TYPE_UINT8"),
    "uint16": (4, "TYPE_UINT16"),
    "uint32": (12, "TYPE_UINT32"),
    "uint64": (13, "TYPE_UINT64"),
    "int8": (3, "TYPE_INT8"),
    "int16": (5, "TYPE_INT16"),
    "int32": (6, "TYPE_INT32"),
    "int64": (7, "TYPE_INT64"),
    "float16": (10, "TYPE_FP16"),
    "float32": (1, "TYPE_FP32"),
    "float64": (11, "TYPE_FP64"),
    "object": (8, "TYPE_STRING"),  # numpy has no fixed-width string dtype that matches; tritonclient uses object
}
_ONNX_TO_NUMPY = {onnx_type: name for name, (onnx_type, _) in _DTYPES.items()}
_TRITON_TO_NUMPY = {triton_type: name for name, (_, triton_type) in _DTYPES.items()}
_KNOWN = ", ".join(sorted(_DTYPES))

DYNAMIC_DIM = -1
"""A dimension whose size is only known at run time (Triton's and our spelling of a symbolic ONNX dim)."""


def numpy_to_onnx(dtype: str) -> int:
    """Return the ONNX TensorProto element type of a numpy dtype name ("float32" -> 1).

    Raises:
        ConfigError: the dtype has no ONNX equivalent here.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not supported; use one of {_KNOWN}")
    return _DTYPES[dtype][0]


def numpy_to_triton(dtype: str) -> str:
    """Return the Triton data type of a numpy dtype name ("float32" -> "TYPE_FP32").

    Raises:
        ConfigError: the dtype has no Triton equivalent here.
    """
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not supported; use one of {_KNOWN}")
    return _DTYPES[dtype][1]


def onnx_to_numpy(elem_type: int) -> str:
    """Return the numpy dtype name of an ONNX TensorProto element type (1 -> "float32").

    Raises:
        ConfigError: the element type (bfloat16, float8, complex...) has no mapping here.
    """
    if elem_type not in _ONNX_TO_NUMPY:
        raise ConfigError(f"ONNX element type {elem_type} has no numpy/Triton mapping in tritonforge")
    return _ONNX_TO_NUMPY[elem_type]


def triton_to_numpy(data_type: str) -> str:
    """Return the numpy dtype name of a Triton data type ("TYPE_FP32" -> "float32").

    Raises:
        ConfigError: the Triton type (TYPE_BF16, TYPE_INVALID...) has no numpy mapping here.
    """
    if data_type not in _TRITON_TO_NUMPY:
        raise ConfigError(f"Triton data type '{data_type}' has no numpy mapping; use one of {sorted(_TRITON_TO_NUMPY)}")
    return _TRITON_TO_NUMPY[data_type]


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """One model input or output as Triton sees it: the shape has NO batch axis.

    Attributes:
        name: the tensor's name in the graph and in config.pbtxt.
        shape: sizes after the batch axis; -1 marks a dimension that varies at run time (e.g. sequence length).
        dtype: a numpy dtype name ("float32", "int64", ...).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        if isinstance(self.shape, list):  # a list from YAML/JSON/CLI parsing; the frozen spec stores a tuple
            object.__setattr__(self, "shape", tuple(self.shape))
        if not isinstance(self.name, str) or not self.name or not self.name.strip() or self.name != self.name.strip():
            raise ConfigError(f"tensor name {self.name!r} must be non-empty, without surrounding spaces")
        if not isinstance(self.shape, tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in self.shape
        ):
            raise ConfigError(f"tensor '{self.name}' shape {self.shape!r} must be a tuple of ints, e.g. (1, 8, 8)")
        bad = [d for d in self.shape if d < 1 and d != DYNAMIC_DIM]
        if bad:
            raise ConfigError(
                f"tensor '{self.name}' shape {self.shape} has size {bad[0]}; sizes are >= 1, or -1 for a dynamic dim"
            )
        numpy_to_triton(self.dtype)  # raises ConfigError naming the allowed dtypes

    @property
    def is_static(self) -> bool:
        """Whether every dimension (after the batch axis) has a fixed size."""
        return DYNAMIC_DIM not in self.shape

    @property
    def triton_dtype(self) -> str:
        """The Triton data type, e.g. "TYPE_FP32"."""
        return numpy_to_triton(self.dtype)

    @property
    def onnx_dtype(self) -> int:
        """The ONNX TensorProto element type, e.g. 1 for float32."""
        return numpy_to_onnx(self.dtype)


DYNAMIC_SAMPLE_SIZE = 3
"""The size given to a dynamic (-1) dimension in sample inputs: not 1, so it cannot be confused with broadcasting."""


def sample_inputs(specs: Sequence[TensorSpec], *, batch_size: int, seed: int = 0) -> dict[str, npt.NDArray[Any]]:
    """Make reproducible random inputs for a model, one array per spec with a leading batch axis.

    Floats are standard normal; integers are drawn from [0, 10) so they stay valid as indices into any embedding
    table; booleans are fair coin flips.

    Args:
        specs: the model's inputs (shapes without the batch axis).
        batch_size: the leading axis of every array.
        seed: seeds numpy's generator, so a failure reproduces.

    Returns:
        Arrays keyed by input name, in spec order.

    Raises:
        ConfigError: a spec's dtype cannot be sampled (strings).
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, npt.NDArray[Any]] = {}
    for spec in specs:
        shape = (batch_size, *(DYNAMIC_SAMPLE_SIZE if d == DYNAMIC_DIM else d for d in spec.shape))
        kind = np.dtype(spec.dtype).kind
        if kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif kind in "iu":
            arrays[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
        elif kind == "b":
            arrays[spec.name] = rng.random(shape) < 0.5
        else:
            raise ConfigError(f"input '{spec.name}' has dtype {spec.dtype}, which cannot be sampled for a torch model")
    return arrays


def parse_tensor_spec(text: str) -> TensorSpec:
    """Parse the CLI form "name:1x8x8:float32" ("name:1x8x8" means float32, "name::int64" a per-item scalar).

    Args:
        text: name, shape without the batch axis as sizes joined by "x" (-1 for a dynamic size), and a dtype.

    Returns:
        The spec.

    Raises:
        ConfigError: the text does not have that form, or the spec is invalid.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(f"input {text!r} must look like name:1x8x8:float32 (shape without the batch axis)")
    name, shape_text, dtype = parts[0], parts[1], parts[2] if len(parts) == 3 else "float32"
    try:
        shape = tuple(int(size) for size in shape_text.split("x")) if shape_text else ()
    except ValueError as exc:
        raise ConfigError(f"input {text!r}: shape {shape_text!r} must be sizes joined by 'x', e.g. 1x8x8") from exc
    return TensorSpec(name=name, shape=shape, dtype=dtype)
