"""A model's signature as a table people read: name, dtype and shape of every input and output, and its batching.

    print(format_signature(inputs, outputs, max_batch_size=64))
      inputs   name       dtype  shape
               input_ids  int64  [batch, seq]
      ...
      max batch size 64 (the batch axis is the first; -1: any size)

Used by `tritonforge model signature` and at the end of `tritonforge export`, so both show a signature the same way.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tritonforge.signature import ModelSignature, SignatureTensor

__all__ = ["format_model_signature", "format_signature", "signature_renderable"]

DEFAULT_WIDTH = 120


def _shape_text(tensor: SignatureTensor, max_batch_size: int) -> str:
    return "[" + ", ".join(str(d) for d in tensor.shape(max_batch_size=max_batch_size)) + "]"


def _batch_line(max_batch_size: int, tensors: Sequence[SignatureTensor]) -> str:
    if max_batch_size > 0:
        line = f"max batch size {max_batch_size} (batch: the first axis, 1 to {max_batch_size} per request)"
    else:
        line = "max batch size 0 (no batching: shapes are the full request shapes)"
    if any(d == -1 for t in tensors for d in t.dims):
        line += "; -1: any size"
    return line


def signature_renderable(
    inputs: Sequence[SignatureTensor],
    outputs: Sequence[SignatureTensor],
    *,
    max_batch_size: int,
    title: str | None = None,
) -> RenderableType:
    """Build the signature as a rich renderable (a table plus the batching line), for a caller's own Console.

    Args:
        inputs: the model's inputs, in order.
        outputs: the model's outputs, in order.
        max_batch_size: Triton's max_batch_size; 0 means no batch axis.
        title: a heading line (e.g. "digits version 1"), or None.

    Returns:
        A renderable that prints the table and, under it, the batching line.
    """
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=Text(title) if title else None, title_justify="left"
    )
    table.add_column("")
    table.add_column("name")
    table.add_column("dtype")
    table.add_column("shape")
    for role, tensors in (("input", inputs), ("output", outputs)):
        for tensor in tensors:
            # Text cells: a shape like "[batch, seq]" must not be read as rich markup.
            table.add_row(role, Text(tensor.name), Text(tensor.dtype), Text(_shape_text(tensor, max_batch_size)))
    return Group(table, Text(_batch_line(max_batch_size, [*inputs, *outputs])))


def format_signature(
    inputs: Sequence[SignatureTensor],
    outputs: Sequence[SignatureTensor],
    *,
    max_batch_size: int,
    title: str | None = None,
    width: int = DEFAULT_WIDTH,
) -> str:
    """Render the signature as plain text (no colour codes), ready for typer.echo or a log line.

    Args:
        inputs: the model's inputs, in order.
        outputs: the model's outputs, in order.
        max_batch_size: Triton's max_batch_size; 0 means no batch axis.
        title: a heading line, or None.
        width: the widest line allowed; long names wrap inside their column.

    Returns:
        The table and the batching line, lines without trailing spaces, ending with a newline.
    """
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False)
    console.print(signature_renderable(inputs, outputs, max_batch_size=max_batch_size, title=title))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def format_model_signature(signature: ModelSignature, *, width: int = DEFAULT_WIDTH) -> str:
    """Render a ModelSignature with a title line naming the model, its version and platform."""
    title = signature.name
    if signature.version:
        title += f" version {signature.version}"
    if signature.platform:
        title += f" ({signature.platform})"
    return format_signature(
        signature.inputs, signature.outputs, max_batch_size=signature.max_batch_size, title=title, width=width
    )
