"""Reading the prediction log for analysis: DuckDB over the Parquet dataset, one entry per item.

    window = read_predictions("logs/", "digits", **parse_window("1h"))     # the last hour
    window = read_predictions("logs/", "digits", last=2000, max_items=500)  # 500 of the latest 2,000 items
    window.inputs["image"]            # float32 [items, 1, 8, 8], in time order
    labelled = join_labels(window, read_labels("logs/", "digits"))
    labelled.labels, labelled.window.outputs["logits"]

A request of batch n is n items: each tensor is split along its first axis when that axis has length n (a model
that does not batch logs one item, its whole tensor). DuckDB does the filtering (partition pruning on model and
date), the `last` cut and the uniform sample (`max_items`, a seeded reservoir over items) before any tensor is
read, so memory follows the items returned, not the window's size.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.errors import ConfigError
from tritonforge.monitoring.parquet_sink import LABELS_DIR
from tritonforge.monitoring.records import STATUS_OK, decode_tensor

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

__all__ = [
    "LabelledItems",
    "LogSummary",
    "PredictionWindow",
    "join_labels",
    "log_summary",
    "parse_window",
    "read_labels",
    "read_predictions",
]

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


@dataclass(frozen=True)
class PredictionWindow:
    """Logged items of one model in a time window, in time order (arrays aligned by item).

    Attributes:
        model: the model.
        request_ids: str [items], the request each item came in.
        item_index: int [items], the item's position in its request.
        times: datetime64[us] [items], the request's start (UTC, naive numpy datetimes).
        versions: str [items], the version asked for ("" for the server's choice).
        statuses: str [items], "ok" or the error class.
        latencies_s: float [items], the request's latency.
        inputs: name -> [items, ...] for tensors logged in full (object arrays where shapes differ or some items
            have only a summary: None there).
        outputs: likewise for outputs.
        attributes: name -> str [items] ("" where a request lacked the attribute).
        total_items: items in the window before `max_items` sampling.
    """

    model: str
    request_ids: NDArray[np.str_]
    item_index: NDArray[np.int64]
    times: NDArray[np.datetime64]
    versions: NDArray[np.str_]
    statuses: NDArray[np.str_]
    latencies_s: NDArray[np.float64]
    inputs: dict[str, NDArray[Any]] = field(default_factory=dict)
    outputs: dict[str, NDArray[Any]] = field(default_factory=dict)
    attributes: dict[str, NDArray[np.str_]] = field(default_factory=dict)
    total_items: int = 0

    def __len__(self) -> int:
        return len(self.request_ids)

    def take(self, positions: Sequence[int] | NDArray[np.integer[Any]]) -> PredictionWindow:
        """The items at `positions`, as a window of their own."""
        idx = np.asarray(positions, dtype=np.int64)
        return PredictionWindow(
            model=self.model,
            request_ids=self.request_ids[idx],
            item_index=self.item_index[idx],
            times=self.times[idx],
            versions=self.versions[idx],
            statuses=self.statuses[idx],
            latencies_s=self.latencies_s[idx],
            inputs={k: v[idx] for k, v in self.inputs.items()},
            outputs={k: v[idx] for k, v in self.outputs.items()},
            attributes={k: v[idx] for k, v in self.attributes.items()},
            total_items=self.total_items,
        )


@dataclass(frozen=True)
class LabelledItems:
    """The items of a window that have a label, with the labels aligned to them.

    Attributes:
        window: the labelled items.
        labels: one label per item (int64 when every label is an integer, else str).
        coverage: labelled items / items in the window (0 for an empty window).
    """

    window: PredictionWindow
    labels: NDArray[Any]
    coverage: float


@dataclass(frozen=True)
class LogSummary:
    """What the log holds for one model (in a time window).

    Attributes:
        model: the model.
        requests: logged calls.
        items: logged items (requests times their batch size).
        failed: calls that ended in an error.
        p50_ms: median call latency, milliseconds; p99_ms: its 99th percentile.
        labels: labelled items among them.
        first: the earliest call (UTC); last: the latest.
    """

    model: str
    requests: int
    items: int
    failed: int
    p50_ms: float
    p99_ms: float
    labels: int
    first: dt.datetime
    last: dt.datetime


def _utc(value: dt.datetime | str | None, what: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"{what} {value!r} is not an ISO time (e.g. 2026-12-02T07:00)") from exc
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def parse_window(
    window: str | None = None, last: int | None = None, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """`--window 1h` / `--window START..END` / `--last N` as keyword arguments of `read_predictions`.

    Args:
        window: a duration back from now (`90s`, `30m`, `1h`, `2d`, `1w`) or an ISO range `START..END` (UTC unless
            it says otherwise; either side may be empty).
        last: the latest N items.
        now: the time a duration counts back from (default: the current time).

    Returns:
        `{"start": ..., "end": ..., "last": ...}`.

    Raises:
        ConfigError: a window that is neither a duration nor a range, or `last` below 1.
    """
    if last is not None and last < 1:
        raise ConfigError(f"--last must be at least 1, got {last}")
    start = end = None
    if window:
        match = _DURATION.match(window)
        if match:
            now = _utc(now, "now") or dt.datetime.now(dt.timezone.utc)
            start = now - dt.timedelta(seconds=float(match.group(1)) * _UNITS_S[match.group(2)])
        elif ".." in window:
            left, right = window.split("..", 1)
            start, end = _utc(left.strip() or None, "window start"), _utc(right.strip() or None, "window end")
        else:
            raise ConfigError(
                f"--window {window!r} is neither a duration (30m, 1h, 2d) nor a range START..END (ISO times)"
            )
    return {"start": start, "end": end, "last": last}


def _connect(log: str | os.PathLike[str]) -> tuple[duckdb.DuckDBPyConnection, str]:
    """A DuckDB connection able to read `log`, and the log's root as DuckDB names it."""
    import duckdb

    con = duckdb.connect()
    text = os.fspath(log)
    if "://" not in text or text.startswith("file://"):
        return con, os.path.abspath(os.path.expanduser(text.removeprefix("file://")))
    import fsspec

    fs, path = fsspec.core.url_to_fs(text)
    con.register_filesystem(fs)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return con, f"{protocol}://{str(path).rstrip('/')}"


def _has_files(con: duckdb.DuckDBPyConnection, pattern: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM glob(?)", [pattern]).fetchone()[0])  # type: ignore[index]


def _empty(model: str) -> PredictionWindow:
    return PredictionWindow(
        model=model,
        request_ids=np.array([], dtype=str),
        item_index=np.array([], dtype=np.int64),
        times=np.array([], dtype="datetime64[us]"),
        versions=np.array([], dtype=str),
        statuses=np.array([], dtype=str),
        latencies_s=np.array([], dtype=np.float64),
    )


def _filters(
    start: dt.datetime | None, end: dt.datetime | None, version: str | None, include_errors: bool
) -> tuple[str, list[Any], str, list[Any]]:
    """The WHERE clause of the window and, apart, its partition-pruning part (on the `date` folders)."""
    prune: list[str] = ["TRUE"]
    prune_params: list[Any] = []
    if start is not None:
        prune.append("date >= ?")
        prune_params.append(start.date())
    if end is not None:
        prune.append("date <= ?")
        prune_params.append(end.date())
    clauses, params = list(prune), list[Any](prune_params)
    if start is not None:
        clauses.append("time >= ?")
        params.append(start)
    if end is not None:
        clauses.append("time < ?")
        params.append(end)
    if version is not None:
        clauses.append("version = ?")
        params.append(str(version))
    if not include_errors:
        clauses.append("status = ?")
        params.append(STATUS_OK)
    return " AND ".join(clauses), params, " AND ".join(prune), prune_params


def _stack(values: list[NDArray[Any] | None]) -> NDArray[Any]:
    first = next((v for v in values if v is not None), None)
    if first is not None and all(v is not None and v.shape == first.shape and v.dtype == first.dtype for v in values):
        return np.stack(values)  # type: ignore[arg-type]
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _items(tensor: NDArray[Any], items: int, index: int) -> NDArray[Any]:
    return tensor[index] if tensor.ndim and tensor.shape[0] == items else tensor


def read_predictions(
    log: str | os.PathLike[str],
    model: str,
    *,
    start: dt.datetime | str | None = None,
    end: dt.datetime | str | None = None,
    last: int | None = None,
    version: str | None = None,
    max_items: int | None = None,
    include_errors: bool = False,
    seed: int = 0,
) -> PredictionWindow:
    """The logged items of `model` in [start, end), optionally only the latest `last`, sampled to `max_items`.

    Args:
        log: the log's root (a local folder or a URL fsspec knows).
        model: the model.
        start: first time included (UTC when naive).
        end: first time excluded.
        last: keep only the latest N items of the window.
        version: only requests that asked for this version.
        max_items: at most this many items, drawn uniformly (seeded) from the window.
        include_errors: also items of failed calls (their outputs are missing).
        seed: the sample's seed.

    Returns:
        The window; empty when nothing was logged.

    Raises:
        ConfigError: `last` or `max_items` below 1, or a time that is not ISO.
    """
    for name, value in (("last", last), ("max_items", max_items)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    start_utc, end_utc = _utc(start, "start"), _utc(end, "end")
    con, root = _connect(log)
    pattern = f"{root}/model={model}/date=*/hour=*/*.parquet"
    if not _has_files(con, pattern):
        return _empty(model)
    src = (
        f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true, filename = true,"
        " file_row_number = true, hive_types = {'date': DATE, 'hour': INTEGER})"
    )
    where, params, prune, prune_params = _filters(start_utc, end_utc, version, include_errors)
    items = (
        f"SELECT filename, file_row_number, time, request_id, unnest(range(items)) AS item_index FROM {src}"
        f" WHERE {where}"
    )
    if last is not None:
        items = f"SELECT * FROM ({items}) ORDER BY time DESC, request_id, item_index LIMIT {int(last)}"
    con.execute(f"CREATE TEMP TABLE chosen AS {items}", params)
    total = int(con.execute("SELECT count(*) FROM chosen").fetchone()[0])  # type: ignore[index]
    if max_items is not None and total > max_items:
        con.execute(
            f"CREATE TEMP TABLE picked AS SELECT * FROM chosen USING SAMPLE reservoir({int(max_items)} ROWS)"
            f" REPEATABLE ({int(seed)})"
        )
    else:
        con.execute("CREATE TEMP TABLE picked AS SELECT * FROM chosen")
    table = con.sql(
        "SELECT filename, file_row_number, request_id, time, version, status, latency_s, items, inputs, outputs,"
        f" attributes FROM {src} WHERE {prune} AND (filename, file_row_number) IN"
        " (SELECT filename, file_row_number FROM picked)",
        params=prune_params,
    ).to_arrow_table()
    picks = con.execute("SELECT filename, file_row_number, item_index FROM picked").fetchall()
    con.close()
    return _decode(model, table.to_pylist(), picks, total)


def _decode(model: str, rows: list[dict[str, Any]], picks: list[tuple[str, int, int]], total: int) -> PredictionWindow:
    chosen: dict[tuple[str, int], list[int]] = defaultdict(list)
    for filename, row_number, item in picks:
        chosen[(filename, row_number)].append(int(item))
    rows.sort(key=lambda r: (r["time"], r["request_id"], r["filename"], r["file_row_number"]))
    meta: dict[str, list[Any]] = defaultdict(list)
    tensors: dict[str, dict[str, list[NDArray[Any] | None]]] = {
        "inputs": defaultdict(list),
        "outputs": defaultdict(list),
    }
    attributes: dict[str, list[str]] = defaultdict(list)
    count = 0
    for row in rows:
        indices = sorted(chosen[(row["filename"], row["file_row_number"])])
        decoded = {
            kind: {entry["name"]: decode_tensor(entry) for entry in row[kind] or []} for kind in ("inputs", "outputs")
        }
        attrs = dict(row["attributes"] or [])
        for index in indices:
            meta["request_ids"].append(row["request_id"])
            meta["item_index"].append(index)
            meta["times"].append(row["time"].astimezone(dt.timezone.utc).replace(tzinfo=None))
            meta["versions"].append(row["version"])
            meta["statuses"].append(row["status"])
            meta["latencies_s"].append(row["latency_s"])
            for kind in ("inputs", "outputs"):
                for name in set(tensors[kind]) | set(decoded[kind]):
                    column = tensors[kind][name]
                    column.extend([None] * (count - len(column)))  # a tensor first seen in a later request
                    tensor = decoded[kind].get(name)
                    column.append(None if tensor is None else _items(tensor, row["items"], index))
            for name in set(attributes) | set(attrs):
                column_a = attributes[name]
                column_a.extend([""] * (count - len(column_a)))
                column_a.append(str(attrs.get(name, "")))
            count += 1
    if not count:
        return _empty(model)
    for kind in ("inputs", "outputs"):
        for column in tensors[kind].values():
            column.extend([None] * (count - len(column)))
    return PredictionWindow(
        model=model,
        request_ids=np.array(meta["request_ids"], dtype=str),
        item_index=np.array(meta["item_index"], dtype=np.int64),
        times=np.array(meta["times"], dtype="datetime64[us]"),
        versions=np.array(meta["versions"], dtype=str),
        statuses=np.array(meta["statuses"], dtype=str),
        latencies_s=np.array(meta["latencies_s"], dtype=np.float64),
        inputs={n: _stack(v) for n, v in tensors["inputs"].items() if any(x is not None for x in v)},
        outputs={n: _stack(v) for n, v in tensors["outputs"].items() if any(x is not None for x in v)},
        attributes={n: np.array(v + [""] * (count - len(v)), dtype=str) for n, v in attributes.items()},
        total_items=total,
    )


def read_labels(log: str | os.PathLike[str], model: str | None = None) -> pd.DataFrame:
    """The labels stored under the log: request_id, item_index, label, time, model (the latest label per item).

    Labels stored without a model match every model. `label` is int64 when every label is an integer, else str.
    """
    import pandas as pd

    con, root = _connect(log)
    pattern = f"{root}/{LABELS_DIR}/date=*/*.parquet"
    columns = ["request_id", "item_index", "label", "time", "model"]
    if not _has_files(con, pattern):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    where, params = ("TRUE", []) if model is None else ("(model = ? OR model IS NULL)", [model])
    frame = con.execute(
        f"SELECT request_id, item_index, label, time, model FROM read_parquet('{pattern}', hive_partitioning = false,"
        f" union_by_name = true) WHERE {where}"
        " QUALIFY row_number() OVER (PARTITION BY request_id, item_index ORDER BY time DESC) = 1"
        " ORDER BY time, request_id, item_index",
        params,
    ).df()
    con.close()
    frame["item_index"] = frame["item_index"].astype(np.int64)
    if len(frame) and frame["label"].str.fullmatch(r"-?\d+").all():
        frame["label"] = frame["label"].astype(np.int64)
    return frame[columns].reset_index(drop=True)


def join_labels(window: PredictionWindow, labels: pd.DataFrame) -> LabelledItems:
    """The window's items that have a label (matched on request id and item index), with their labels."""
    lookup = {
        (str(r), int(i)): v for r, i, v in zip(labels["request_id"], labels["item_index"], labels["label"], strict=True)
    }
    positions, values = [], []
    for position, key in enumerate(zip(window.request_ids.tolist(), window.item_index.tolist(), strict=True)):
        if key in lookup:
            positions.append(position)
            values.append(lookup[key])
    label_array = np.array(values) if values else np.array([], dtype=np.int64)
    if label_array.dtype.kind not in "iu" and all(isinstance(v, (int, np.integer)) for v in values):
        label_array = label_array.astype(np.int64)
    coverage = len(positions) / len(window) if len(window) else 0.0
    return LabelledItems(window=window.take(positions), labels=label_array, coverage=coverage)


def _source(root: str, pattern: str) -> str:
    return (
        f"read_parquet('{root}/{pattern}', hive_partitioning = true, union_by_name = true,"
        " hive_types = {'date': DATE, 'hour': INTEGER})"
    )


def log_summary(
    log: str | os.PathLike[str], *, start: dt.datetime | str | None = None, end: dt.datetime | str | None = None
) -> list[LogSummary]:
    """Requests, items, failures, latency, labels and time span per model, through DuckDB (no tensor is read)."""
    con, root = _connect(log)
    pattern = "model=*/date=*/hour=*/*.parquet"
    if not _has_files(con, f"{root}/{pattern}"):
        return []
    where, params, _, _ = _filters(_utc(start, "start"), _utc(end, "end"), None, include_errors=True)
    con.execute(f"CREATE TEMP TABLE p AS SELECT model, request_id, items, status, latency_s, time FROM"
                f" {_source(root, pattern)} WHERE {where}", params)  # fmt: skip
    labelled: dict[str, int] = {}
    labels_pattern = f"{LABELS_DIR}/date=*/*.parquet"
    if _has_files(con, f"{root}/{labels_pattern}"):
        rows = con.execute(
            f"SELECT p.model, count(DISTINCT (l.request_id, l.item_index)) FROM read_parquet('{root}/{labels_pattern}',"
            " hive_partitioning = false) l JOIN p USING (request_id) GROUP BY p.model"
        ).fetchall()
        labelled = {str(m): int(n) for m, n in rows}
    summary = con.execute(
        "SELECT model, count(*), sum(items), count(*) FILTER (WHERE status <> 'ok'), quantile_cont(latency_s, 0.5),"
        " quantile_cont(latency_s, 0.99), min(time), max(time) FROM p GROUP BY model ORDER BY model"
    ).fetchall()
    con.close()
    return [
        LogSummary(
            model=str(m),
            requests=int(n),
            items=int(i),
            failed=int(f),
            p50_ms=float(p50) * 1e3,
            p99_ms=float(p99) * 1e3,
            labels=labelled.get(str(m), 0),
            first=first,
            last=last,
        )  # fmt: skip
        for m, n, i, f, p50, p99, first, last in summary
    ]
