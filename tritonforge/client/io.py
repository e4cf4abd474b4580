"""Files in, readable results out: what `tritonforge infer` needs around TritonClient.infer.

    job = InferJob(url="127.0.0.1:8001", model="digits", inputs=(InputSpec.parse("image=batch.npy"),))
    outputs = run_infer_job(job)
    print(render_outputs(outputs, fmt=OutputFormat.TABLE))

Inputs come from `.npy` files (their dtype is kept) or `.json` files holding a nested list (cast to the dtype
the model expects, since JSON has no dtype). Float outputs are shown as scores (argmax and top values per item);
integer and boolean outputs (class ids, token ids, counts) as the values they are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.client.client import TritonClient
from tritonforge.client.tensors import TensorInfo
from tritonforge.client.transport import SyncTransportFactory
from tritonforge.errors import ConfigError, InvalidInputError
from tritonforge.signature import ModelSignature, SignatureTensor

__all__ = [
    "InferJob",
    "InputSpec",
    "OutputFormat",
    "format_json",
    "format_table",
    "load_array",
    "render_outputs",
    "resolve_inputs",
    "run_infer_job",
    "served_signature",
]

_LOGGER = logging.getLogger(__name__)

_TOP_K = 3
_MAX_ROWS = 32  # a table longer than a screen helps nobody; JSON has everything
_MAX_INLINE_VALUES = 16


class OutputFormat(str, Enum):
    """How `tritonforge infer` prints outputs."""

    TABLE = "table"
    """For people: each output's shape, then per item the argmax and top values of float scores, or the values of
    integer outputs."""
    JSON = "json"
    """For scripts: every output's dtype, shape and full data."""


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """One `--input [NAME=]PATH` option.

    Attributes:
        name: the model input's name; None when the model has exactly one input.
        path: a `.npy` file, or a `.json` file holding a nested list.
    """

    name: str | None
    path: Path

    def __post_init__(self) -> None:
        if self.path.suffix.lower() not in (".npy", ".json"):
            raise ConfigError(f"input file {self.path} must end in .npy or .json (a nested list)")

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """Parse `NAME=PATH` or `PATH`."""
        name, sep, path = text.partition("=")
        if not sep:
            return cls(name=None, path=Path(text))
        if not name.strip() or not path.strip():
            raise ConfigError(f"--input '{text}' must be NAME=PATH or PATH, e.g. image=batch.npy")
        return cls(name=name.strip(), path=Path(path.strip()))


@dataclass(frozen=True, kw_only=True)
class InferJob:
    """One `tritonforge infer` run.

    Attributes:
        url: the server's gRPC address.
        model: the model's name.
        inputs: the input files.
        version: the model version; None for the server's choice.
        timeout_s: the call's deadline.
        add_batch_dim: prepend a batch dimension of 1 to every input (one item, saved without its batch axis).
    """

    url: str
    model: str
    inputs: tuple[InputSpec, ...]
    version: str | None = None
    timeout_s: float = 10.0
    add_batch_dim: bool = False

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("give at least one --input [NAME=]PATH")
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout-s must be > 0, got {self.timeout_s}")


def load_array(path: Path, *, dtype: np.dtype[Any] | None = None) -> NDArray[Any]:
    """Read an array from a `.npy` file, or from a `.json` file holding a (nested) list of numbers or strings.

    Args:
        path: the file.
        dtype: the dtype to give JSON data (JSON has none); `.npy` files keep their own.

    Returns:
        The array.

    Raises:
        ConfigError: the file is missing, unreadable, or not a rectangular array.
    """
    if not path.is_file():
        raise ConfigError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array: NDArray[Any] = np.load(path, allow_pickle=False)
            return array
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return np.array(data, dtype=dtype) if dtype is not None else np.array(data)
    except (OSError, ValueError, TypeError) as exc:  # numpy and json report bad content as ValueError
        raise ConfigError(f"cannot read an array from {path}: {exc}; save a rectangular array") from exc
    raise ConfigError(f"input file {path} must end in .npy or .json (a nested list)")


def resolve_inputs(
    specs: Sequence[InputSpec], model_inputs: Sequence[TensorInfo], *, model: str, add_batch_dim: bool = False
) -> dict[str, NDArray[Any]]:
    """Load every input file and name it after the model's input.

    Args:
        specs: the `--input` options.
        model_inputs: the model's inputs, from its metadata.
        model: the model's name, for messages.
        add_batch_dim: prepend a batch dimension of 1 to every array.

    Returns:
        One array per input name.

    Raises:
        InvalidInputError: a name is missing while the model has several inputs, or is given twice.
        ConfigError: a file cannot be read.
    """
    by_name = {tensor.name: tensor for tensor in model_inputs}
    arrays: dict[str, NDArray[Any]] = {}
    for spec in specs:
        name = spec.name
        if name is None:
            if len(model_inputs) != 1:
                raise InvalidInputError(
                    f"model '{model}' has {len(model_inputs)} inputs {sorted(by_name)}; name each: --input NAME=PATH"
                )
            name = model_inputs[0].name
        if name in arrays:
            raise InvalidInputError(f"input '{name}' of model '{model}' is given twice; give it once")
        tensor = by_name.get(name)
        array = load_array(spec.path, dtype=tensor.np_dtype if tensor is not None else None)
        if add_batch_dim:
            array = array[np.newaxis, ...]
        elif tensor is not None and tensor.accepts_shape((1, *array.shape)) and not tensor.accepts_shape(array.shape):
            raise InvalidInputError(
                f"input '{name}' of model '{model}' expects {tensor.describe()}, got {array.dtype} "
                f"{list(array.shape)} from {spec.path}; add --add-batch-dim if the file holds one item"
            )
        arrays[name] = array
    return arrays


def run_infer_job(job: InferJob, *, transport_factory: SyncTransportFactory | None = None) -> dict[str, NDArray[Any]]:
    """Load the job's input files, send one request and return the outputs.

    Args:
        job: what to send where.
        transport_factory: what carries the calls (default: tritonclient's gRPC client).

    Returns:
        One array per output name.

    Raises:
        ClientError: the server is unreachable, the model unknown, or the inputs do not match (a subclass).
        ConfigError: an input file cannot be read.
    """
    with TritonClient(job.url, timeout_s=job.timeout_s, transport_factory=transport_factory) as client:
        model_inputs = client.model_inputs(job.model, job.version)
        arrays = resolve_inputs(job.inputs, model_inputs, model=job.model, add_batch_dim=job.add_batch_dim)
        _LOGGER.info("sending %s to %s at %s", {n: a.shape for n, a in arrays.items()}, job.model, job.url)
        return client.infer(job.model, arrays, version=job.version, timeout_s=job.timeout_s)


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _item_width(array: NDArray[Any]) -> int:
    return max(len(str(min(len(array), _MAX_ROWS) - 1)), 4)


def _more_rows(array: NDArray[Any]) -> list[str]:
    return [f"  ... {len(array) - _MAX_ROWS} more rows (use --format json for all)"] if len(array) > _MAX_ROWS else []


def _score_rows(array: NDArray[Any], top_k: int) -> list[str]:
    width = _item_width(array)
    lines = [f"  {'item':>{width}}  {'argmax':>6}  top {min(top_k, array.shape[1])} (index: value)"]
    for i, row in enumerate(array[:_MAX_ROWS]):
        order = np.argsort(-row, kind="stable")[:top_k]
        top = "  ".join(f"{int(j)}: {_fmt(row[j])}" for j in order)
        lines.append(f"  {i:>{width}}  {int(order[0]):>6}  {top}")
    return lines + _more_rows(array)


def _value_rows(array: NDArray[Any]) -> list[str]:
    """One row per item with its values: an integer output is an answer (a class id, token ids), not scores."""
    width = _item_width(array)
    lines = [f"  {'item':>{width}}  values"]
    for i, row in enumerate(array[:_MAX_ROWS]):
        flat = row.reshape(-1)
        shown = ", ".join(_fmt(v) for v in flat[:_MAX_INLINE_VALUES])
        more = f", ... ({flat.size - _MAX_INLINE_VALUES} more)" if flat.size > _MAX_INLINE_VALUES else ""
        lines.append(f"  {i:>{width}}  {shown}{more}")
    return lines + _more_rows(array)


def format_table(outputs: Mapping[str, NDArray[Any]], *, top_k: int = _TOP_K) -> str:
    """Render outputs for a person: shape and dtype, then per batch item the scores' argmax or the integer values.

    Args:
        outputs: one array per output name.
        top_k: how many of the largest values to show per row of a 2-D float output.

    Returns:
        The table, one output after another.
    """
    lines: list[str] = []
    for name, array in outputs.items():
        lines.append(f"{name}: {array.dtype} {list(array.shape)}")
        if array.ndim == 2 and array.shape[1] > 0 and array.dtype.kind == "f":
            lines += _score_rows(array, top_k)
        elif array.ndim >= 2 and array.shape[0] > 0 and array.dtype.kind in "biu":
            lines += _value_rows(array)
        elif array.size <= _MAX_INLINE_VALUES:
            text = np.array2string(array, formatter={"all": _fmt}, separator=", ")
            lines.append("  " + text.replace("\n", "\n  "))
        elif array.dtype.kind == "f":
            lines.append(f"  min {_fmt(array.min())}  max {_fmt(array.max())}  mean {_fmt(array.mean())}")
        elif array.dtype.kind in "biu":
            shown = ", ".join(_fmt(v) for v in array[:_MAX_INLINE_VALUES])
            lines.append(f"  {shown}, ... ({array.size - _MAX_INLINE_VALUES} more; use --format json for all)")
        else:
            lines.append(f"  {array.size} values (use --format json to see them)")
    return "\n".join(lines)


def _jsonable(array: NDArray[Any]) -> Any:
    if array.dtype.kind in "OS":
        return np.vectorize(_fmt, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def format_json(outputs: Mapping[str, NDArray[Any]]) -> str:
    """Render outputs for scripts: `{"outputs": {name: {"dtype", "shape", "data"}}}`, data in full."""
    document = {
        "outputs": {
            name: {"dtype": str(array.dtype), "shape": list(array.shape), "data": _jsonable(array)}
            for name, array in outputs.items()
        }
    }
    return json.dumps(document)


def render_outputs(outputs: Mapping[str, NDArray[Any]], *, fmt: OutputFormat = OutputFormat.TABLE) -> str:
    """Render outputs as a table or as JSON."""
    return format_json(outputs) if fmt is OutputFormat.JSON else format_table(outputs)


def _signature_tensor(tensor: TensorInfo, *, batched: bool) -> SignatureTensor:
    dims = tensor.shape[1:] if batched and tensor.shape else tensor.shape
    return SignatureTensor(name=tensor.name, dtype=tensor.np_dtype.name, dims=tuple(dims))


def served_signature(
    url: str,
    model: str,
    *,
    version: str | None = None,
    timeout_s: float = 10.0,
    transport_factory: SyncTransportFactory | None = None,
) -> ModelSignature:
    """Ask a server what a model takes and returns (its metadata and config), for `tritonforge model signature`.

    Args:
        url: the server's gRPC address.
        model: the model's name.
        version: the model version; None for the server's choice.
        timeout_s: the calls' deadline.
        transport_factory: what carries the calls (default: tritonclient's gRPC client).

    Returns:
        The signature, dims without the batch axis; a server reports no dim names, so variable sizes are -1.

    Raises:
        ClientError: the server is unreachable or the model unknown (a subclass).
    """
    with TritonClient(url, timeout_s=timeout_s, transport_factory=transport_factory) as client:
        signature = client.model_signature(model, version)
    batched = signature.max_batch_size > 0
    return ModelSignature(
        name=model,
        version=version,
        inputs=tuple(_signature_tensor(t, batched=batched) for t in signature.inputs),
        outputs=tuple(_signature_tensor(t, batched=batched) for t in signature.outputs),
        max_batch_size=signature.max_batch_size,
    )
