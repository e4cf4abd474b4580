"""Tensor specs and the dtype names of numpy, ONNX and Triton.

    spec = TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")  # shape without the batch axis
    parse_tensor_spec("input_ids:seq:int64:0..30521")  # a named dynamic axis, shared by inputs that name it
    numpy_to_triton("float32")   # "TYPE_FP32"
    onnx_to_numpy(1)             # "float32" (onnx.TensorProto.FLOAT)

Every converter speaks numpy dtype names; ONNX element types and Triton data types are derived from them here, so
the three vocabularies can never drift apart in different modules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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


BATCH_AXIS = "batch"
"""The name of the leading batch axis of every tensor in an exported graph."""

_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def default_axis_name(input_name: str, dim: int) -> str:
    """The name of a dynamic axis given as -1: `<input>_dim<i>`, i counting the batch axis as 0 (one per tensor)."""
    return f"{input_name}_dim{dim}"


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """One model input or output as Triton sees it: the shape has NO batch axis.

    Attributes:
        name: the tensor's name in the graph and in config.pbtxt; for an input, the name of forward()'s parameter.
        shape: sizes after the batch axis; -1 marks a dimension that varies at run time (e.g. sequence length).
        dtype: a numpy dtype name ("float32", "int64", ...).
        axis_names: one entry per dim of `shape`: a name for a dynamic dim (inputs that use the same name share that
            axis: one symbolic dim in the graph), None for a static dim or for a -1 of its own. None: no names given.
        value_range: (lo, hi), inclusive, for the generated values of an integer input (token ids 0..30521); None:
            small non-negative values, which stay valid indices of any embedding table.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    axis_names: tuple[str | None, ...] | None = None
    value_range: tuple[int, int] | None = None

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
        self._check_axis_names()
        self._check_value_range()

    def _check_axis_names(self) -> None:
        if self.axis_names is None:
            return
        names = tuple(self.axis_names)
        if len(names) != len(self.shape):
            raise ConfigError(f"tensor '{self.name}' axis_names {names} must have one entry per dim of {self.shape}")
        for i, (size, axis) in enumerate(zip(self.shape, names, strict=True)):
            if axis is None:
                continue
            if size != DYNAMIC_DIM:
                raise ConfigError(
                    f"tensor '{self.name}' dim {i + 1} has size {size}; only a dynamic (-1) dim has a name"
                )
            if not isinstance(axis, str) or not _AXIS_NAME.match(axis) or axis == BATCH_AXIS:
                raise ConfigError(
                    f"tensor '{self.name}' axis name {axis!r} must be an identifier other than '{BATCH_AXIS}', e.g. seq"
                )
        # Canonical form: a name equal to the default is the same as no name, so equal specs compare equal.
        canonical = tuple(None if a == default_axis_name(self.name, i + 1) else a for i, a in enumerate(names))
        object.__setattr__(self, "axis_names", canonical if any(a is not None for a in canonical) else None)

    def _check_value_range(self) -> None:
        if self.value_range is None:
            return
        lo, hi = (int(v) for v in self.value_range)
        if np.dtype(self.dtype).kind not in "iu":
            raise ConfigError(f"input '{self.name}' is {self.dtype}; a value range LO..HI is for integer inputs only")
        info = np.iinfo(np.dtype(self.dtype))
        if not info.min <= lo <= hi <= info.max:
            raise ConfigError(
                f"input '{self.name}' value range {lo}..{hi} must have LO <= HI within {self.dtype} "
                f"({info.min}..{info.max})"
            )
        object.__setattr__(self, "value_range", (lo, hi))

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

    def dim_axes(self) -> tuple[str | None, ...]:
        """The axis name of each dim after the batch axis: its given name, `<input>_dim<i>` for a -1, None if static."""
        given = self.axis_names or (None,) * len(self.shape)
        return tuple(
            None if size != DYNAMIC_DIM else (axis or default_axis_name(self.name, i + 1))
            for i, (size, axis) in enumerate(zip(self.shape, given, strict=True))
        )

    def shape_text(self) -> str:
        """The CLI spelling of the shape: "1x8x8", "seq", "-1x4"."""
        given = self.axis_names or (None,) * len(self.shape)
        return "x".join(axis or str(size) for size, axis in zip(self.shape, given, strict=True))


def dynamic_axes(specs: Sequence[TensorSpec]) -> list[str]:
    """Every dynamic axis of the inputs, each once, in the order they first appear (a shared axis counts once)."""
    axes: list[str] = []
    for spec in specs:
        axes += [a for a in spec.dim_axes() if a is not None and a not in axes]
    return axes


def axis_users(specs: Sequence[TensorSpec], axis: str) -> list[str]:
    """The inputs that have `axis` among their dims, as "input[dim]" (dim counting the batch axis as 0)."""
    return [f"{s.name}[{i + 1}]" for s in specs for i, a in enumerate(s.dim_axes()) if a == axis]


DYNAMIC_SAMPLE_SIZE = 3
"""The size given to a dynamic dimension in sample inputs when no size is chosen for its axis."""
TYPICAL_AXIS_SIZE = 7
"""Where the search for each dynamic axis's typical (trace) size starts: not 1 (broadcasts), not the batch of 2."""
LARGE_AXIS_SIZE = 33
"""Where the search for each dynamic axis's large size starts (>= 32; odd, so it rarely equals a feature size)."""


def _free_size(start: int, taken: set[int]) -> int:
    size = start
    while size in taken:
        size += 1
    return size


def default_axis_sizes(specs: Sequence[TensorSpec], *, reserved: Sequence[int] = ()) -> dict[str, tuple[int, int, int]]:
    """Choose (smallest, typical, large) sizes for every dynamic axis of the inputs.

    The typical size is the one the model is traced at. It equals no static dim of the model, no reserved size (the
    trace's batch size) and no other axis's typical size, so a size baked into the graph or two axes mixed up show
    as wrong outputs at the other sizes instead of hiding behind a coincidence.

    Args:
        specs: the model's inputs.
        reserved: sizes no typical or large size may take (e.g. the example batch size).

    Returns:
        {axis: (1, typical, large)} in the order of `dynamic_axes(specs)`.
    """
    taken = {1, *reserved, *(d for s in specs for d in s.shape if d != DYNAMIC_DIM)}
    sizes: dict[str, tuple[int, int, int]] = {}
    for axis in dynamic_axes(specs):
        typical = _free_size(TYPICAL_AXIS_SIZE, taken)
        taken.add(typical)
        large = _free_size(LARGE_AXIS_SIZE, taken)
        taken.add(large)
        sizes[axis] = (1, typical, large)
    return sizes


def typical_size(sizes: Sequence[int]) -> int:
    """The size of a user's list that the model is traced at: the middle one, the upper middle of an even list."""
    ordered = sorted(set(sizes))
    return ordered[len(ordered) // 2]


def sample_inputs(
    specs: Sequence[TensorSpec],
    *,
    batch_size: int,
    seed: int = 0,
    axis_sizes: Mapping[str, int] | None = None,
    value_ranges: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """Make reproducible random inputs for a model, one array per spec with a leading batch axis.

    Floats are standard normal; integers are drawn from the spec's value range (inclusive), else from
    `value_ranges`, else from [0, 10) so they stay valid as indices into any embedding table; booleans are fair
    coin flips.

    Args:
        specs: the model's inputs (shapes without the batch axis).
        batch_size: the leading axis of every array.
        seed: seeds numpy's generator, so a failure reproduces.
        axis_sizes: the size of each dynamic axis by name (see `TensorSpec.dim_axes`); default DYNAMIC_SAMPLE_SIZE.
        value_ranges: (lo, hi) by input name for integer inputs without a range of their own (e.g. a sample's).

    Returns:
        Arrays keyed by input name, in spec order.

    Raises:
        ConfigError: a spec's dtype cannot be sampled (strings).
    """
    rng = np.random.default_rng(seed)
    sizes = axis_sizes or {}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for spec in specs:
        shape = (
            batch_size,
            *(
                d if axis is None else sizes.get(axis, DYNAMIC_SAMPLE_SIZE)
                for d, axis in zip(spec.shape, spec.dim_axes(), strict=True)
            ),
        )
        kind = np.dtype(spec.dtype).kind
        if kind == "f":
            arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif kind in "iu":
            lo, hi = spec.value_range or (value_ranges or {}).get(spec.name) or (0, 9)
            arrays[spec.name] = rng.integers(lo, hi, size=shape, endpoint=True).astype(spec.dtype)
        elif kind == "b":
            arrays[spec.name] = rng.random(shape) < 0.5
        else:
            raise ConfigError(f"input '{spec.name}' has dtype {spec.dtype}, which cannot be sampled for a torch model")
    return arrays


def _parse_dim(text: str, size_text: str) -> tuple[int, str | None]:
    if _AXIS_NAME.match(size_text):
        if size_text == BATCH_AXIS:
            raise ConfigError(f"input {text!r}: '{BATCH_AXIS}' is the leading batch axis; leave it out of the shape")
        return DYNAMIC_DIM, size_text
    try:
        return int(size_text), None
    except ValueError as exc:
        raise ConfigError(
            f"input {text!r}: shape part {size_text!r} must be a size, -1 or an axis name, joined by 'x' "
            "(e.g. 1x8x8, -1, seq, seqx4; axis names have no 'x')"
        ) from exc


def parse_tensor_spec(text: str) -> TensorSpec:
    """Parse the CLI form NAME:SHAPE[:DTYPE[:LO..HI]], e.g. "image:1x8x8:float32" or "ids:seq:int64:0..30521".

    SHAPE is sizes joined by "x", without the batch axis: a positive size, -1 (a dynamic dim of its own), or an
    identifier without an "x" (a named dynamic axis, shared by every input that uses the name). An empty SHAPE is a
    per-item scalar; DTYPE defaults to float32; LO..HI (inclusive) bounds the generated values of an integer input.

    Args:
        text: the CLI text.

    Returns:
        The spec.

    Raises:
        ConfigError: the text does not have that form, or the spec is invalid.
    """
    parts = text.split(":")
    if len(parts) not in (2, 3, 4):
        raise ConfigError(
            f"input {text!r} must look like NAME:SHAPE[:DTYPE[:LO..HI]], e.g. image:1x8x8:float32 or "
            "input_ids:seq:int64:0..30521 (shape without the batch axis)"
        )
    name, shape_text = parts[0], parts[1]
    dtype = (parts[2] if len(parts) > 2 else "") or "float32"
    value_range = None
    if len(parts) == 4:
        match = _RANGE.match(parts[3])
        if match is None:
            raise ConfigError(f"input {text!r}: value range {parts[3]!r} must look like LO..HI, e.g. 0..30521")
        value_range = (int(match[1]), int(match[2]))
    dims = [_parse_dim(text, size) for size in shape_text.split("x")] if shape_text else []
    names = tuple(axis for _, axis in dims)
    return TensorSpec(
        name=name,
        shape=tuple(size for size, _ in dims),
        dtype=dtype,
        axis_names=names if any(a is not None for a in names) else None,
        value_range=value_range,
    )


def axis_plan(
    specs: Sequence[TensorSpec],
    given: Mapping[str, Sequence[int]] | None = None,
    *,
    reserved: Sequence[int] = (),
) -> dict[str, tuple[tuple[int, ...], int]]:
    """The sizes the parity gate tries for each dynamic axis, and the typical one the model is traced at.

    Args:
        specs: the model's inputs.
        given: sizes chosen per axis (`--axis seq=1,16,64`); an axis not given gets `default_axis_sizes`.
        reserved: sizes a default typical or large size must avoid (the example batch size).

    Returns:
        {axis: (sorted sizes, typical size)} for every dynamic axis, in the order of `dynamic_axes(specs)`.

    Raises:
        ConfigError: `given` names an axis the inputs do not have, or a size below 1.
    """
    defaults = default_axis_sizes(specs, reserved=reserved)
    for axis, sizes in (given or {}).items():
        if axis not in defaults:
            known = ", ".join(defaults) or "none (every input shape is static)"
            raise ConfigError(f"--axis {axis}: the inputs have no dynamic axis '{axis}'; their dynamic axes: {known}")
        if not sizes or min(sizes) < 1:
            raise ConfigError(f"--axis {axis}={','.join(map(str, sizes))}: give one or more sizes >= 1")
    plan: dict[str, tuple[tuple[int, ...], int]] = {}
    for axis, default in defaults.items():
        chosen = (given or {}).get(axis)
        if chosen:
            plan[axis] = (tuple(sorted(set(chosen))), typical_size(chosen))
        else:
            plan[axis] = (default, default[1])
    return plan


def parse_axis_sizes(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse the CLI form NAME=S1,S2,S3 ("seq=1,16,64") into (axis name, sizes).

    Raises:
        ConfigError: the text does not have that form.
    """
    name, sep, sizes_text = text.partition("=")
    try:
        sizes = tuple(int(s) for s in sizes_text.split(","))
    except ValueError:
        sizes = ()
    if not sep or not _AXIS_NAME.match(name) or not sizes or min(sizes) < 1:
        raise ConfigError(f"--axis {text!r} must look like NAME=S1,S2,S3 with sizes >= 1, e.g. seq=1,16,64")
    return name, sizes
