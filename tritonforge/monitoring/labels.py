"""Storing late labels beside the prediction log, from a file (`tritonforge monitor labels FILE --log LOG`).

    count = import_labels("labels.csv", log="logs/")        # columns request_id, [item_index], label, [model]
    read_labels("logs/", "digits")                           # tritonforge.monitoring.log_reader

Labels live in their own dataset under the log root (`labels/date=YYYY-MM-DD/`), written by the same sink as the
predictions (`client.feedback` queues them through the logger; this writes a file's worth at once) and matched to
predictions by request id and item index when read. A later label of the same item replaces an earlier one.
"""

from __future__ import annotations

import os
from pathlib import Path

from tritonforge.errors import ConfigError
from tritonforge.monitoring.parquet_sink import ParquetSink
from tritonforge.monitoring.records import LabelRecord, utc_now

__all__ = ["import_labels"]

_REQUIRED = ("request_id", "label")


def import_labels(path: str | os.PathLike[str], *, log: str | os.PathLike[str], model: str | None = None) -> int:
    """Store the labels of a CSV or Parquet file in the log's labels dataset; return how many were stored.

    Args:
        path: a `.csv` or `.parquet` file with columns request_id and label, optionally item_index (default 0)
            and model.
        log: the prediction log's root (a folder or URL).
        model: the model of every label that does not name one.

    Raises:
        ConfigError: the file is missing, of another type, lacks a column, or has an empty request id or label.
    """
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"labels file {file} not found; give a .csv or .parquet with request_id and label columns")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(file, dtype={"request_id": str, "label": str, "model": str}, keep_default_na=False)
    elif suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(file)
    else:
        raise ConfigError(f"labels file {file} is {suffix or 'without a suffix'}; use .csv or .parquet")
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ConfigError(f"labels file {file} lacks column(s) {', '.join(missing)} (has {', '.join(frame.columns)})")
    if "item_index" not in frame.columns:
        frame["item_index"] = 0
    ids, labels = frame["request_id"].astype(str), frame["label"].astype(str)
    empty = (ids.str.strip() == "") | (labels.str.strip() == "")
    if empty.any():
        raise ConfigError(f"labels file {file}: row {int(empty.idxmax()) + 1} has an empty request_id or label")
    models = frame["model"].astype(str).replace("", None) if "model" in frame.columns else None
    now = utc_now()
    records = [
        LabelRecord(
            request_id=str(ids.iloc[i]),
            item_index=int(frame["item_index"].iloc[i]),
            label=str(labels.iloc[i]),
            time=now,
            model=(models.iloc[i] if models is not None and models.iloc[i] else None) or model,
        )
        for i in range(len(frame))
    ]
    if records:
        ParquetSink(log).write_labels(records)
    return len(records)
