"""The Parquet sink: a hive-partitioned dataset `model=/date=/hour=` on a local path or any pyarrow/fsspec URL.

    sink = ParquetSink("logs/")                  # or "s3://bucket/prefix", "memory://logs", "file:///var/log/tf"
    logger = PredictionLogger(sink)
    # logs/model=digits/date=2026-12-02/hour=07/part-20261202T070312-<uuid>.parquet
    # logs/labels/date=2026-12-02/part-....parquet

Each batch the logger hands over becomes one file per partition, written under a hidden temporary name and then
moved to its final name: readers (DuckDB globbing `*.parquet`, pyarrow datasets, which skip names starting with
"." ) see a whole file or none. On a local disk the move is a rename; on an object store the upload itself is
atomic. The dataset is readable while it is written. Nothing is touched until the first write, so a bad path or a
full disk shows up as counted sink errors, never as a failure of the client that logs.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tritonforge.errors import ConfigError
from tritonforge.monitoring.logger import Delivery
from tritonforge.monitoring.records import (
    DEFAULT_MAX_TENSOR_BYTES,
    LabelRecord,
    PredictionRecord,
    labels_to_table,
    records_to_table,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

__all__ = ["LABELS_DIR", "ParquetSink", "partition_dir", "resolve_filesystem"]

LABELS_DIR = "labels"
"""Folder under the log root holding the labels dataset (`labels/date=YYYY-MM-DD/`)."""


def resolve_filesystem(root: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path on it for a log root: a local path, or a pyarrow or fsspec URL.

    Raises:
        ConfigError: the URL's scheme is known to neither pyarrow nor fsspec (or its package is not installed).
    """
    import pyarrow.fs as pafs

    text = os.fspath(root)
    if "://" not in text:
        return pafs.LocalFileSystem(), str(Path(text).expanduser().absolute())
    try:
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path.rstrip("/")
    except (ValueError, OSError):  # ArrowInvalid is a ValueError: a scheme pyarrow lacks; try fsspec
        pass
    try:
        import fsspec

        spec_fs, path = fsspec.core.url_to_fs(text)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"cannot open the log {text!r}: {exc}; "
            "use a local path or a URL pyarrow or fsspec knows (s3://, gs://, memory://)"
        ) from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(spec_fs)), str(path).rstrip("/")


def partition_dir(base: str, model: str, time: dt.datetime) -> str:
    """The folder of a record: `<base>/model=<model>/date=<YYYY-MM-DD>/hour=<HH>` (UTC)."""
    utc = time.astimezone(dt.timezone.utc)
    return f"{base}/model={model}/date={utc:%Y-%m-%d}/hour={utc:%H}"


class ParquetSink:
    """Writes prediction batches and labels as Parquet files in a partitioned dataset.

    Args:
        root: the log's root: a local folder (created on first write) or a URL (`s3://...`, `memory://...`).
        max_tensor_bytes: per-item cap above which a tensor is stored as its summary.
        compression: Parquet compression codec.

    Raises:
        ConfigError: `root` is a URL no filesystem handles.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
        compression: str = "zstd",
    ) -> None:
        self.root = os.fspath(root)
        self.filesystem, self.path = resolve_filesystem(root)
        self.max_tensor_bytes = max_tensor_bytes
        self.compression = compression

    def __repr__(self) -> str:
        return f"ParquetSink({self.root!r})"

    def _commit(self, table: pa.Table, folder: str, stamp: dt.datetime) -> None:
        import pyarrow.parquet as pq

        self.filesystem.create_dir(folder, recursive=True)
        name = f"part-{stamp:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = f"{folder}/.{name}.tmp"
        try:
            pq.write_table(table, tmp, filesystem=self.filesystem, compression=self.compression)
            self.filesystem.move(tmp, f"{folder}/{name}")
        except BaseException:
            try:
                self.filesystem.delete_file(tmp)
            except OSError:
                pass
            raise

    def write(self, records: Sequence[PredictionRecord]) -> Delivery:
        """Write one file per partition the records fall in; raises (the logger counts the batch lost) on failure."""
        groups: dict[str, list[PredictionRecord]] = defaultdict(list)
        for record in records:
            groups[partition_dir(self.path, record.model, record.time)].append(record)
        written = 0
        now = dt.datetime.now(dt.timezone.utc)
        for folder, batch in groups.items():
            table = records_to_table(batch, max_tensor_bytes=self.max_tensor_bytes)
            # The folder holds the model (hive convention): a copy in the file would clash with the partition
            # key for pyarrow datasets, which read `model=` as a dictionary column.
            self._commit(table.drop_columns(["model"]), folder, now)
            written += len(batch)
        return Delivery(written=written)

    def write_labels(self, labels: Sequence[LabelRecord]) -> Delivery:
        """Write labels into `<root>/labels/date=<YYYY-MM-DD>/` (by arrival date)."""
        groups: dict[str, list[LabelRecord]] = defaultdict(list)
        for label in labels:
            day = label.time.astimezone(dt.timezone.utc)
            groups[f"{self.path}/{LABELS_DIR}/date={day:%Y-%m-%d}"].append(label)
        now = dt.datetime.now(dt.timezone.utc)
        for folder, batch in groups.items():
            self._commit(labels_to_table(batch), folder, now)
        return Delivery(written=len(labels))

    def poll(self) -> Delivery:
        """Parquet writes settle in `write`; nothing is pending."""
        return Delivery()

    def close(self) -> Delivery:
        """Nothing is buffered here (the logger batches)."""
        return Delivery()
