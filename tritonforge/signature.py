"""A model's signature (inputs, outputs, batching) in one plain shape, shared by the exporter, the client and the CLI.

    image = SignatureTensor(name="image", dtype="float32", dims=(1, 8, 8))
    signature = ModelSignature(name="digits", inputs=(image,), outputs=(...,), max_batch_size=64)
    signature.to_dict()["inputs"][0]["shape"]   # ["batch", 1, 8, 8]

It depends on nothing else in tritonforge, so library code and the CLI can both import it without a cycle; the
table people read is drawn by `tritonforge.cli.signature.format_signature`. (The client's own
`tritonforge.client.tensors.ModelSignature` is what requests are checked against: Triton datatypes, batch axis as -1.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BATCH_AXIS = "batch"
"""How the batch axis Triton adds in front of every tensor of a batching model (max_batch_size > 0) is shown."""


@dataclass(frozen=True, kw_only=True)
class SignatureTensor:
    """One input or output as a client sees it.

    Attributes:
        name: the tensor's name.
        dtype: the numpy dtype name ("float32", "int64", "object" for strings).
        dims: Triton's dims, without the batch axis: an int for a fixed size, -1 for any size, or a str naming a
            symbolic size (an ONNX dim_param such as "seq"), which tells which tensors share that axis.
    """

    name: str
    dtype: str
    dims: tuple[int | str, ...]

    def shape(self, *, max_batch_size: int) -> list[int | str]:
        """The full shape a request carries: the batch axis in front when the model batches."""
        return ([BATCH_AXIS] if max_batch_size > 0 else []) + list(self.dims)


@dataclass(frozen=True, kw_only=True)
class ModelSignature:
    """A served or repository model's inputs and outputs.

    Attributes:
        name: the model's name.
        version: the version described, or None when it is the server's or repository's choice.
        inputs: inputs in the model's order.
        outputs: outputs in the model's order.
        max_batch_size: the largest batch Triton forms; 0 means the model does not batch (dims are the full shape).
        platform: Triton's platform or backend (e.g. "onnxruntime_onnx"), or "" when unknown.
    """

    name: str
    inputs: tuple[SignatureTensor, ...]
    outputs: tuple[SignatureTensor, ...]
    max_batch_size: int
    version: str | None = None
    platform: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for scripts: each tensor's name, dtype, dims and full shape."""
        return {
            "name": self.name,
            "version": self.version,
            "platform": self.platform,
            "max_batch_size": self.max_batch_size,
            "inputs": _tensors_dict(self.inputs, self.max_batch_size),
            "outputs": _tensors_dict(self.outputs, self.max_batch_size),
        }


def _tensors_dict(tensors: Sequence[SignatureTensor], max_batch_size: int) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "dtype": t.dtype, "dims": list(t.dims), "shape": t.shape(max_batch_size=max_batch_size)}
        for t in tensors
    ]
