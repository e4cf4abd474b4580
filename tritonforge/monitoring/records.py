"""One logged prediction and its Arrow form: the row every sink writes and every reader decodes.

    record = PredictionRecord.create(model="digits", version="1", latency_s=0.004, status="ok",
                                     inputs={"image": batch}, outputs={"logits": logits}, items=len(batch))
    table = records_to_table([record])                 # pyarrow.Table with PREDICTION_SCHEMA
    arrays = decode_tensor(table["inputs"][0][0].as_py())   # back to numpy

A request of batch n is one record (one row) with `items = n`; readers split its tensors along the first axis.
A tensor is stored in full (raw little-endian bytes, C order; BYTES tensors in Triton's length-prefixed form) when
one item of it takes at most `max_tensor_bytes`; otherwise only its summary (shape, dtype, mean, std, min, max) is
kept. The cap is per item, so a model's tensor is stored the same way whatever the batch size.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "DEFAULT_MAX_TENSOR_BYTES",
    "LabelRecord",
    "PredictionRecord",
    "TensorSummary",
    "decode_tensor",
    "encode_tensor",
    "fits",
    "label_schema",
    "labels_to_table",
    "new_request_id",
    "prediction_schema",
    "records_to_table",
    "summarize",
]

DEFAULT_MAX_TENSOR_BYTES = 64 * 1024
"""Largest item of one tensor stored in full (64 KiB: a 128x128 float32 image, 16,384 values)."""

STATUS_OK = "ok"
BYTES_DTYPE = "BYTES"


def new_request_id() -> str:
    """A fresh request id (uuid4 hex): unique without coordination between clients."""
    return uuid.uuid4().hex


def utc_now() -> dt.datetime:
    """The current time in UTC (records always carry an aware UTC time)."""
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True, kw_only=True)
class PredictionRecord:
    """One inference call as the log keeps it.

    Attributes:
        request_id: the id sent to Triton and returned to the caller (uuid4 hex unless the caller gave one).
        time: when the call started, UTC.
        model: the model's name.
        version: the version asked for, or "" for the server's choice.
        latency_s: wall time of the whole call (retries included), seconds.
        status: "ok", or the class name of the error the call raised (e.g. "InferenceTimeoutError").
        items: how many items the request carried (its batch size; 1 for a model that does not batch).
        inputs: the request's tensors by name (a TensorSummary for one too large to keep).
        outputs: the response's tensors by name (empty when the call failed).
        attributes: caller-given strings (segment, group, experiment arm).
    """

    request_id: str
    time: dt.datetime
    model: str
    version: str = ""
    latency_s: float = 0.0
    status: str = STATUS_OK
    items: int = 1
    inputs: Mapping[str, NDArray[Any] | TensorSummary] = field(default_factory=dict)
    outputs: Mapping[str, NDArray[Any] | TensorSummary] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        *,
        model: str,
        request_id: str | None = None,
        time: dt.datetime | None = None,
        **fields: Any,
    ) -> PredictionRecord:
        """A record with a generated id and the current UTC time where they are not given."""
        return cls(request_id=request_id or new_request_id(), time=time or utc_now(), model=model, **fields)


@dataclass(frozen=True, kw_only=True)
class TensorSummary:
    """What is kept of a tensor too large to store in full.

    Attributes:
        dtype: numpy dtype string (e.g. "<f4"), or "BYTES".
        shape: the tensor's shape.
        mean: mean of its values (None for BYTES or empty tensors); likewise std, min, max.
    """

    dtype: str
    shape: tuple[int, ...]
    mean: float | None
    std: float | None
    min: float | None
    max: float | None


@dataclass(frozen=True, kw_only=True)
class LabelRecord:
    """A late label for one item of a logged request.

    Attributes:
        request_id: the request the label belongs to.
        item_index: the item within that request (0 for a request of one item).
        label: the true answer, as text (class ids are written as their decimal digits).
        time: when the label arrived, UTC.
        model: the model, when known (labels can come without it; they are matched by request id).
    """

    request_id: str
    item_index: int
    label: str
    time: dt.datetime
    model: str | None = None


def _tensor_type() -> pa.DataType:
    import pyarrow as pa

    return pa.struct(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("dtype", pa.string(), nullable=False),
            pa.field("shape", pa.list_(pa.int64()), nullable=False),
            pa.field("data", pa.binary()),  # null when only the summary is kept
            pa.field("mean", pa.float64()),
            pa.field("std", pa.float64()),
            pa.field("min", pa.float64()),
            pa.field("max", pa.float64()),
        ]
    )


def prediction_schema() -> pa.Schema:
    """The Arrow schema of a prediction row (Parquet files leave out `model`, which their folder names)."""
    import pyarrow as pa

    tensors = pa.list_(_tensor_type())
    return pa.schema(
        [
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("version", pa.string(), nullable=False),
            pa.field("latency_s", pa.float64(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("items", pa.int32(), nullable=False),
            pa.field("inputs", tensors, nullable=False),
            pa.field("outputs", tensors, nullable=False),
            pa.field("attributes", pa.map_(pa.string(), pa.string()), nullable=False),
        ]
    )


def label_schema() -> pa.Schema:
    """The Arrow schema of a label row."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("request_id", pa.string(), nullable=False),
            pa.field("item_index", pa.int32(), nullable=False),
            pa.field("label", pa.string(), nullable=False),
            pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("model", pa.string()),
        ]
    )


def _summary(array: NDArray[Any]) -> tuple[float | None, float | None, float | None, float | None]:
    if array.size == 0 or array.dtype.kind not in "biuf":
        return None, None, None, None
    values = array.astype(np.float64, copy=False)
    stats = (float(values.mean()), float(values.std()), float(values.min()), float(values.max()))
    # NaN/inf inputs are data too, but Parquet statistics and JSON want finite numbers or nothing.
    return tuple(v if math.isfinite(v) else None for v in stats)  # type: ignore[return-value]


def _dtype_name(array: NDArray[Any]) -> str:
    if array.dtype.kind in "OSU":
        return BYTES_DTYPE
    return array.dtype.newbyteorder("<").str if array.dtype.byteorder == ">" else array.dtype.str


def fits(array: NDArray[Any], *, items: int, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> bool:
    """Whether one item of `array` is small enough to store in full.

    BYTES tensors always pass here (their size is known once serialized; `encode_tensor` checks it then).
    """
    return array.dtype.kind in "OSU" or array.nbytes / max(items, 1) <= max_tensor_bytes


def summarize(array: NDArray[Any]) -> TensorSummary:
    """The summary kept of a tensor too large to store."""
    mean, std, low, high = _summary(array)
    return TensorSummary(dtype=_dtype_name(array), shape=tuple(array.shape), mean=mean, std=std, min=low, max=high)


def _serialized(value: Any) -> bytes:
    # tritonclient returns a 0-d object array holding the bytes (older releases: a uint8/bytes array).
    array = np.asarray(value)
    return bytes(array.item()) if array.dtype == np.object_ else array.tobytes()


def encode_tensor(
    name: str,
    array: NDArray[Any] | TensorSummary,
    *,
    items: int,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> dict[str, Any]:
    """One tensor as a row of the `inputs`/`outputs` list: full bytes under the per-item cap, else a summary."""
    if isinstance(array, TensorSummary):
        return {
            "name": name, "dtype": array.dtype, "shape": list(array.shape), "data": None,
            "mean": array.mean, "std": array.std, "min": array.min, "max": array.max,
        }  # fmt: skip
    array = np.asarray(array)
    dtype = _dtype_name(array)
    payload: bytes | None
    if dtype == BYTES_DTYPE:
        from tritonclient.utils import serialize_byte_tensor

        payload = _serialized(serialize_byte_tensor(array.astype(np.object_))) if array.size else b""
        full = len(payload) / max(items, 1) <= max_tensor_bytes
    else:
        full = fits(array, items=items, max_tensor_bytes=max_tensor_bytes)
        payload = np.ascontiguousarray(array, dtype=np.dtype(dtype)).tobytes() if full else None
    # A tensor stored in full needs no summary (its values are there); computing one cost 4 passes per tensor,
    # most of the writer's time, and the writer shares the caller's CPU.
    mean, std, low, high = (None, None, None, None) if full else _summary(array)
    return {
        "name": name,
        "dtype": dtype,
        "shape": list(array.shape),
        "data": payload if full else None,
        "mean": mean,
        "std": std,
        "min": low,
        "max": high,
    }


def decode_tensor(entry: Mapping[str, Any]) -> NDArray[Any] | None:
    """The array an `encode_tensor` row holds, or None when only its summary was kept."""
    data = entry["data"]
    if data is None:
        return None
    shape = tuple(int(n) for n in entry["shape"])
    if entry["dtype"] == BYTES_DTYPE:
        from tritonclient.utils import deserialize_bytes_tensor

        values = deserialize_bytes_tensor(data) if data else np.empty(0, dtype=np.object_)
        return np.asarray(values, dtype=np.object_).reshape(shape)
    return np.frombuffer(data, dtype=np.dtype(entry["dtype"])).reshape(shape)


def _tensors(
    tensors: Mapping[str, NDArray[Any] | TensorSummary], items: int, max_tensor_bytes: int
) -> list[dict[str, Any]]:
    return [encode_tensor(n, a, items=items, max_tensor_bytes=max_tensor_bytes) for n, a in tensors.items()]


def record_to_row(record: PredictionRecord, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> dict[str, Any]:
    """A record as a plain dict with the schema's columns (tensors encoded)."""
    time = record.time if record.time.tzinfo else record.time.replace(tzinfo=dt.timezone.utc)
    return {
        "request_id": record.request_id,
        "time": time.astimezone(dt.timezone.utc),
        "model": record.model,
        "version": record.version,
        "latency_s": float(record.latency_s),
        "status": record.status,
        "items": int(record.items),
        "inputs": _tensors(record.inputs, record.items, max_tensor_bytes),
        "outputs": _tensors(record.outputs, record.items, max_tensor_bytes),
        "attributes": [(str(k), str(v)) for k, v in record.attributes.items()],
    }


def _tensor_column(rows: list[list[dict[str, Any]]]) -> pa.Array:
    """A list<struct> column built field by field (one pyarrow call per field, not one per value)."""
    import pyarrow as pa

    offsets = [0]
    fields: dict[str, list[Any]] = {
        name: [] for name in ("name", "dtype", "shape", "data", "mean", "std", "min", "max")
    }
    for tensors in rows:
        for entry in tensors:
            for name, values in fields.items():
                values.append(entry[name])
        offsets.append(offsets[-1] + len(tensors))
    struct_type = _tensor_type()
    children = [pa.array(fields[f.name], type=f.type) for f in struct_type]
    structs = pa.StructArray.from_arrays(children, fields=list(struct_type))
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), structs)


def records_to_table(
    records: Sequence[PredictionRecord], *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> pa.Table:
    """Records as one Arrow table with `prediction_schema()`, built column by column (the writer's hot path)."""
    import pyarrow as pa

    schema = prediction_schema()
    rows = [record_to_row(r, max_tensor_bytes=max_tensor_bytes) for r in records]
    keys: list[str] = []
    values: list[str] = []
    offsets = [0]
    for row in rows:
        for key, value in row["attributes"]:
            keys.append(key)
            values.append(value)
        offsets.append(len(keys))
    columns = {
        name: pa.array([row[name] for row in rows], type=schema.field(name).type)
        for name in ("request_id", "time", "model", "version", "latency_s", "status", "items")
    }
    columns["inputs"] = _tensor_column([row["inputs"] for row in rows])
    columns["outputs"] = _tensor_column([row["outputs"] for row in rows])
    columns["attributes"] = pa.MapArray.from_arrays(
        pa.array(offsets, type=pa.int32()), pa.array(keys, type=pa.string()), pa.array(values, type=pa.string())
    )
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def labels_to_table(labels: Sequence[LabelRecord]) -> pa.Table:
    """Labels as one Arrow table with `label_schema()`."""
    import pyarrow as pa

    rows = [
        {"request_id": x.request_id, "item_index": x.item_index, "label": x.label, "time": x.time, "model": x.model}
        for x in labels
    ]
    return pa.Table.from_pylist(rows, schema=label_schema())
