"""PredictionLogger: sampling per model, a bounded queue that drops rather than waits, counters of every loss."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from tritonforge.errors import ConfigError
from tritonforge.monitoring.logger import Delivery, PredictionLogger
from tritonforge.monitoring.records import PredictionRecord, TensorSummary


class MemorySink:
    """Keeps what it is given; can be made to fail or to hang."""

    def __init__(self, *, fail: bool = False) -> None:
        self.records: list[PredictionRecord] = []
        self.labels: list = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False

    def write(self, records):
        self.gate.wait(30)
        if self.fail:
            raise OSError(28, "No space left on device")
        self.records.extend(records)
        return Delivery(written=len(records))

    def write_labels(self, labels):
        self.labels.extend(labels)
        return Delivery(written=len(labels))

    def poll(self):
        return Delivery()

    def close(self):
        self.closed = True
        return Delivery()


def _record(model: str = "digits", **kw) -> PredictionRecord:
    return PredictionRecord.create(model=model, inputs={"x": np.ones((1, 4), np.float32)}, **kw)


def test_sampling_follows_each_models_rate():
    sink = MemorySink()
    with PredictionLogger(sink, sample_rate=0.25, sample_rates={"all": 1.0, "none": 0.0}, rng=random.Random(0)) as log:
        for _ in range(2000):
            for model in ("digits", "all", "none"):
                log.log(_record(model))
    counts = {m: sum(r.model == m for r in sink.records) for m in ("digits", "all", "none")}
    assert counts["all"] == 2000 and counts["none"] == 0
    assert 400 < counts["digits"] < 600  # 500 expected; binomial sd 19
    assert log.stats().sampled_out == 2000 + (2000 - counts["digits"])


def test_a_full_queue_drops_and_counts_instead_of_waiting():
    sink = MemorySink()
    sink.gate.clear()  # the writer hangs on its first batch
    log = PredictionLogger(sink, queue_size=5, flush_records=1)
    accepted = [log.log(_record()) for _ in range(50)]
    stats = log.stats()
    assert accepted.count(False) == stats.dropped_queue_full >= 50 - 5 - 1
    assert stats.logged == accepted.count(True)
    sink.gate.set()
    log.close()
    assert log.stats().written == len(sink.records) == accepted.count(True) and log.stats().lag == 0


def test_a_failing_sink_is_counted_and_the_writer_keeps_going():
    sink = MemorySink(fail=True)
    with PredictionLogger(sink, flush_records=2) as log:
        for _ in range(6):
            assert log.log(_record())
        assert log.flush()
        failing = log.stats()
        sink.fail = False
        log.log(_record())
    assert failing.dropped_sink_error == 6 and failing.sink_errors == 3 and "No space left" in failing.last_error
    assert log.stats().written == 1 and sink.closed


def test_log_never_raises_on_a_record_it_cannot_take():
    with PredictionLogger(MemorySink()) as log:
        bad = PredictionRecord.create(model="digits", inputs={"x": object()})  # type: ignore[dict-item]
        assert log.log(bad) in (True, False)
        assert log.log(_record())


def test_inputs_are_copied_so_callers_may_reuse_their_buffers():
    sink = MemorySink()
    buffer = np.zeros((1, 4), np.float32)
    with PredictionLogger(sink) as log:
        log.log(PredictionRecord.create(model="digits", inputs={"x": buffer}))
        buffer[:] = 7
    np.testing.assert_array_equal(sink.records[0].inputs["x"], np.zeros((1, 4)))


def test_tensors_over_the_cap_are_kept_as_summaries():
    sink = MemorySink()
    big = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)  # 4,000 bytes per item
    with PredictionLogger(sink, max_tensor_bytes=1000) as log:
        log.log(PredictionRecord.create(model="digits", items=2, inputs={"big": big, "small": big[:, :10]}))
    kept = sink.records[0].inputs
    assert isinstance(kept["big"], TensorSummary) and kept["big"].shape == (2, 1000)
    assert kept["big"].mean == pytest.approx(999.5) and kept["big"].max == 1999
    assert isinstance(kept["small"], np.ndarray)


def test_flush_writes_a_partial_batch_and_close_is_idempotent():
    sink = MemorySink()
    log = PredictionLogger(sink, flush_records=1000, flush_interval_s=3600)
    log.log(_record())
    assert log.stats().lag == 1
    assert log.flush() and len(sink.records) == 1 and log.stats().lag == 0
    log.close()
    log.close()
    assert not log.log(_record()) and log.stats().dropped_queue_full == 1  # closed: dropped, counted


def test_feedback_labels_reach_the_sink():
    sink = MemorySink()
    with PredictionLogger(sink) as log:
        assert log.feedback("r1", 3, item_index=2, model="digits")
    assert [(x.request_id, x.item_index, x.label, x.model) for x in sink.labels] == [("r1", 2, "3", "digits")]
    assert log.stats().labels_written == 1


@pytest.mark.parametrize(
    "kwargs", [{"sample_rate": 1.5}, {"sample_rates": {"digits": -0.1}}, {"queue_size": 0}, {"flush_interval_s": 0}]
)
def test_bad_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        PredictionLogger(MemorySink(), **kwargs)
