"""The prediction log read back through DuckDB: items, windows, sampling, labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from tritonforge.errors import ConfigError
from tritonforge.monitoring.log_reader import join_labels, parse_window, read_labels, read_predictions
from tritonforge.monitoring.logger import PredictionLogger
from tritonforge.monitoring.parquet_sink import ParquetSink
from tritonforge.monitoring.records import PredictionRecord

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)


def _record(i: int, *, model: str = "digits", items: int = 2, time: dt.datetime | None = None, **kw):
    x = np.full((items, 3), i, dtype=np.float32)
    return PredictionRecord.create(
        model=model,
        request_id=f"r{i:04d}",
        time=time or T0 + dt.timedelta(minutes=i),
        items=items,
        inputs={"x": x},
        outputs={"y": x.sum(axis=1, keepdims=True)},
        attributes={"group": "a" if i % 2 else "b"},
        **kw,
    )


def _write(root, records, labels=()):
    with PredictionLogger(ParquetSink(root)) as logger:
        for record in records:
            assert logger.log(record)
        for request_id, label, item in labels:
            logger.feedback(request_id, label, item_index=item)
    return logger.stats()


def test_read_predictions_returns_one_entry_per_item_in_time_order(tmp_path):
    _write(tmp_path, [_record(i) for i in reversed(range(5))] + [_record(9, model="other")])
    window = read_predictions(tmp_path, "digits")
    assert len(window) == 10
    assert window.request_ids.tolist()[:4] == ["r0000", "r0000", "r0001", "r0001"]
    assert window.item_index.tolist()[:4] == [0, 1, 0, 1]
    assert window.inputs["x"].shape == (10, 3) and window.inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(window.outputs["y"][:, 0], np.repeat(np.arange(5) * 3.0, 2))
    assert window.attributes["group"].tolist()[:4] == ["b", "b", "a", "a"]
    assert window.times[0] == np.datetime64("2026-12-01T10:00:00")


def test_read_predictions_filters_by_time_window_and_last(tmp_path):
    _write(tmp_path, [_record(i) for i in range(10)])
    window = read_predictions(tmp_path, "digits", start=T0 + dt.timedelta(minutes=3), end=T0 + dt.timedelta(minutes=6))
    assert sorted(set(window.request_ids.tolist())) == ["r0003", "r0004", "r0005"]
    latest = read_predictions(tmp_path, "digits", last=4)
    assert sorted(set(latest.request_ids.tolist())) == ["r0008", "r0009"]


def test_read_predictions_samples_max_items_uniformly_and_reproducibly(tmp_path):
    _write(tmp_path, [_record(i, items=1) for i in range(200)])
    a = read_predictions(tmp_path, "digits", max_items=50, seed=1)
    b = read_predictions(tmp_path, "digits", max_items=50, seed=1)
    assert len(a) == 50 and a.total_items == 200
    assert a.request_ids.tolist() == b.request_ids.tolist()
    assert a.inputs["x"][:, 0].max() > 100 and a.inputs["x"][:, 0].min() < 100  # drawn from all of it


def test_read_predictions_of_an_unlogged_model_is_empty(tmp_path):
    assert len(read_predictions(tmp_path / "nothing", "digits")) == 0


def test_labels_join_the_items_they_name(tmp_path):
    _write(tmp_path, [_record(i) for i in range(3)], labels=[("r0000", 7, 1), ("r0002", 4, 0), ("r0002", 5, 0)])
    labels = read_labels(tmp_path, "digits")
    assert sorted(labels["request_id"]) == ["r0000", "r0002"]  # the later label of an item replaces the earlier
    labelled = join_labels(read_predictions(tmp_path, "digits"), labels)
    assert labelled.window.request_ids.tolist() == ["r0000", "r0002"]
    assert labelled.window.item_index.tolist() == [1, 0]
    assert labelled.labels.tolist() == [7, 5] and labelled.labels.dtype == np.int64
    assert labelled.coverage == pytest.approx(2 / 6)


def test_parse_window_turns_durations_and_ranges_into_arguments():
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_window("90m", now=now)["start"] == now - dt.timedelta(minutes=90)
    both = parse_window("2026-12-01T00:00..2026-12-02T00:00", last=10)
    assert both["end"] == dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc) and both["last"] == 10
    with pytest.raises(ConfigError, match="neither a duration"):
        parse_window("yesterday")
    with pytest.raises(ConfigError, match="at least 1"):
        parse_window(None, last=0)
