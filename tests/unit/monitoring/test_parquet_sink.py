"""ParquetSink: the model=/date=/hour= layout, whole files only, URLs through fsspec, failures that only count."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest

from tritonforge.errors import ConfigError
from tritonforge.monitoring.log_reader import read_predictions
from tritonforge.monitoring.logger import PredictionLogger
from tritonforge.monitoring.parquet_sink import ParquetSink
from tritonforge.monitoring.records import PredictionRecord, prediction_schema

T0 = dt.datetime(2026, 12, 1, 23, 59, 30, tzinfo=dt.timezone.utc)


def _record(i: int, *, time: dt.datetime = T0, model: str = "digits") -> PredictionRecord:
    return PredictionRecord.create(
        model=model, request_id=f"r{i}", time=time, inputs={"x": np.full((1, 2), i, np.float32)}
    )


def test_records_land_in_model_date_hour_folders_by_their_utc_time(tmp_path):
    later = T0 + dt.timedelta(minutes=1)  # the next day, hour 00
    ParquetSink(tmp_path).write([_record(0), _record(1, time=later), _record(2, model="minilm")])
    folders = sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet"))
    assert folders == [
        "model=digits/date=2026-12-01/hour=23",
        "model=digits/date=2026-12-02/hour=00",
        "model=minilm/date=2026-12-01/hour=23",
    ]
    stored = pq.ParquetFile(next(tmp_path.rglob("*.parquet"))).schema_arrow
    assert stored.equals(prediction_schema().remove(2), check_metadata=False)  # all but model, the folder's key
    dataset = pq.read_table(tmp_path, partitioning="hive")  # pyarrow reads the layout as a hive dataset too
    assert sorted(dataset.column("model").to_pylist()) == ["digits", "digits", "minilm"]


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    import pyarrow.parquet

    def broken(table, where, **kwargs):
        with kwargs["filesystem"].open_output_stream(where) as out:
            out.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pyarrow.parquet, "write_table", broken)
    with pytest.raises(OSError, match="No space"):
        ParquetSink(tmp_path).write([_record(0)])
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []
    assert len(read_predictions(tmp_path, "digits")) == 0


def test_the_dataset_is_readable_between_flushes(tmp_path):
    with PredictionLogger(ParquetSink(tmp_path), flush_records=1000, flush_interval_s=3600) as log:
        log.log(_record(0, time=dt.datetime.now(dt.timezone.utc)))
        assert log.flush()
        assert read_predictions(tmp_path, "digits").request_ids.tolist() == ["r0"]
        log.log(_record(1, time=dt.datetime.now(dt.timezone.utc)))
        assert len(read_predictions(tmp_path, "digits")) == 1  # not flushed yet: not visible, not half visible
        assert log.flush()
        assert len(read_predictions(tmp_path, "digits")) == 2


def test_an_fsspec_url_is_written_and_read(tmp_path):
    root = f"memory://tf-{uuid.uuid4().hex}/log"
    with PredictionLogger(ParquetSink(root)) as log:
        for i in range(3):
            log.log(_record(i))
    assert log.stats().written == 3
    window = read_predictions(root, "digits")
    assert window.inputs["x"][:, 0].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_counts_sink_errors(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with PredictionLogger(ParquetSink(tmp_path / "log")) as log:
            assert log.log(_record(0))
            assert log.flush()
            stats = log.stats()
    finally:
        tmp_path.chmod(0o700)
    assert stats.dropped_sink_error == 1 and "Permission denied" in stats.last_error


def test_an_unknown_url_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuchfs"):
        ParquetSink("nosuchfs://bucket/log")


def test_bytes_tensors_round_trip(tmp_path):
    texts = np.array([["héllo"], ["world"]], dtype=object)
    with PredictionLogger(ParquetSink(tmp_path)) as log:
        log.log(PredictionRecord.create(model="minilm", items=2, inputs={"text": texts}, time=T0))
    window = read_predictions(tmp_path, "minilm")
    assert window.inputs["text"][:, 0].tolist() == ["héllo".encode(), b"world"]
