"""The inputs and outputs of an ONNX graph: the one place that reads an ONNX model's signature.

    signature = read_onnx_signature(Path("model_repository/digits/1/model.onnx"))
    signature.inputs[0].dims   # (-1, 1, 8, 8): -1 where the graph has a symbolic or unknown size
    batched_specs(signature.inputs)  # (TensorSpec(name="image", shape=(1, 8, 8), dtype="float32"),)

Both the exporter (to write config.pbtxt from the graph) and `repo check` (to compare config.pbtxt with it) use this,
so they cannot disagree about what the graph declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonforge.converters.specs import DYNAMIC_DIM, TensorSpec, onnx_to_numpy
from tritonforge.errors import ConfigError, ConversionError


@dataclass(frozen=True, kw_only=True)
class GraphTensor:
    """One graph input or output, shape including the batch axis.

    Attributes:
        name: the tensor's name.
        dims: every dimension, -1 where the size is symbolic or unknown; None when the graph gives no shape at all.
        elem_type: the ONNX TensorProto element type.
        dim_names: the symbolic name of each dim ("batch", "seq"), None where the size is fixed or unnamed.
    """

    name: str
    dims: tuple[int, ...] | None
    elem_type: int
    dim_names: tuple[str | None, ...] | None = None

    @property
    def dtype(self) -> str | None:
        """The numpy dtype name, or None for an element type Triton cannot carry here (bfloat16, float8...)."""
        try:
            return onnx_to_numpy(self.elem_type)
        except ConfigError:
            return None


@dataclass(frozen=True, kw_only=True)
class OnnxSignature:
    """The graph's real inputs (initializers excluded) and its outputs, in graph order."""

    inputs: tuple[GraphTensor, ...]
    outputs: tuple[GraphTensor, ...]


def _graph_tensor(value_info: Any) -> GraphTensor:
    tensor_type = value_info.type.tensor_type
    dims: tuple[int, ...] | None = None
    names: tuple[str | None, ...] | None = None
    if tensor_type.HasField("shape"):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else DYNAMIC_DIM for d in tensor_type.shape.dim
        )
        names = tuple(d.dim_param if d.HasField("dim_param") and d.dim_param else None for d in tensor_type.shape.dim)
    return GraphTensor(name=value_info.name, dims=dims, elem_type=tensor_type.elem_type, dim_names=names)


def read_onnx_signature(path: Path) -> OnnxSignature:
    """Read the inputs and outputs an ONNX file declares, without loading external weight data.

    Args:
        path: the .onnx file.

    Returns:
        The graph's signature.

    Raises:
        ConfigError: the file is missing or is not a readable ONNX model.
    """
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise ConfigError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, ValueError, DecodeError) as exc:
        raise ConfigError(f"{path} is not a readable ONNX model: {type(exc).__name__}: {exc}") from exc
    initializers = {init.name for init in model.graph.initializer}
    return OnnxSignature(
        inputs=tuple(_graph_tensor(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_graph_tensor(v) for v in model.graph.output),
    )


def batched_specs(tensors: Sequence[GraphTensor]) -> tuple[TensorSpec, ...]:
    """Turn graph tensors with a leading batch axis into TensorSpecs without it (Triton's view of a batching model).

    Args:
        tensors: graph inputs or outputs whose first dimension is the batch axis.

    Returns:
        One TensorSpec per tensor, in the same order.

    Raises:
        ConversionError: a tensor has no shape, no batch axis, a fixed batch size, or an unmappable dtype.
    """
    specs = []
    for tensor in tensors:
        if not tensor.dims:
            raise ConversionError(
                f"graph tensor '{tensor.name}' has no batch axis (shape {tensor.dims}); cannot batch it"
            )
        if tensor.dims[0] != DYNAMIC_DIM:
            raise ConversionError(
                f"graph tensor '{tensor.name}' has a fixed batch size {tensor.dims[0]}; "
                "export it with a dynamic batch axis"
            )
        if tensor.dtype is None:
            raise ConversionError(
                f"graph tensor '{tensor.name}' has ONNX element type {tensor.elem_type}, which Triton cannot serve here"
            )
        specs.append(TensorSpec(name=tensor.name, shape=tensor.dims[1:], dtype=tensor.dtype))
    return tuple(specs)
