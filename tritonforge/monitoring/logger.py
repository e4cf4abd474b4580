"""The prediction logger: sampled per model, handed to a background writer through a bounded queue (a deque).

    logger = PredictionLogger(ParquetSink("logs/"), sample_rates={"minilm": 0.1})
    client = TritonClient("127.0.0.1:8001", prediction_log=logger)
    ...
    logger.stats()     # LoggerStats(logged=..., dropped_queue_full=..., dropped_sink_error=..., written=..., lag=...)
    logger.close()     # writes what is queued

`log()` never waits and never raises: a full queue drops the record and counts it, and a sink that fails
(bad path, disk full, broker down) costs the writer thread, not the caller; its failures are counted as
`dropped_sink_error`. Small tensors are copied at `log()` (the caller may reuse its buffers); one over the
per-item size cap is reduced to its summary there, so the queue never holds large arrays.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tritonforge.errors import ConfigError
from tritonforge.monitoring.records import (
    DEFAULT_MAX_TENSOR_BYTES,
    LabelRecord,
    PredictionRecord,
    TensorSummary,
    fits,
    summarize,
    utc_now,
)

__all__ = ["Delivery", "LoggerStats", "PredictionLogger", "Sink"]

_LOGGER = logging.getLogger(__name__)

# A failing sink is reported at most this often in the process log (every failure is counted).
_WARN_INTERVAL_S = 30.0


@dataclass(frozen=True)
class Delivery:
    """What a sink call settled: records stored, records lost, and why the last one was lost ("" if none)."""

    written: int = 0
    failed: int = 0
    error: str = ""


class Sink(Protocol):
    """Where the writer thread puts records. Called from that one thread only.

    `write` and `write_labels` store a batch and say how many were stored or lost (raising counts the whole batch
    as lost); `poll` reports deliveries that settle later (Kafka); `close` flushes and releases.
    """

    def write(self, records: Sequence[PredictionRecord]) -> Delivery:
        """Store a batch of prediction records."""
        ...

    def write_labels(self, labels: Sequence[LabelRecord]) -> Delivery:
        """Store a batch of labels."""
        ...

    def poll(self) -> Delivery:
        """Report deliveries settled since the last call."""
        ...

    def close(self) -> Delivery:
        """Flush and release; report what settled."""
        ...


@dataclass(frozen=True)
class LoggerStats:
    """Counters of a PredictionLogger since it was created (M4 exports them as Prometheus metrics).

    Attributes:
        logged: records accepted into the queue.
        sampled_out: calls not logged because of the model's sample rate.
        dropped_queue_full: records dropped because the queue was full (the writer or sink is behind).
        dropped_sink_error: records the sink failed to store.
        written: records the sink stored.
        lag: records accepted but not yet stored or dropped.
        lag_s: age of the oldest record not yet stored, seconds (0 when none).
        labels_written: labels the sink stored.
        labels_dropped: labels lost (queue full or sink error).
        sink_errors: failed sink calls.
        last_error: the last sink error, as text ("" when none).
    """

    logged: int
    sampled_out: int
    dropped_queue_full: int
    dropped_sink_error: int
    written: int
    lag: int
    lag_s: float
    labels_written: int = 0
    labels_dropped: int = 0
    sink_errors: int = 0
    last_error: str = ""


# How often the writer looks for records when nobody wakes it: a batch is due by count or by age before this.
_TICK_S = 0.1


def _check_rate(rate: float, what: str) -> float:
    if not 0.0 <= float(rate) <= 1.0:
        raise ConfigError(f"{what} must be between 0 and 1, got {rate!r}")
    return float(rate)


def _snapshot(
    tensors: Mapping[str, NDArray[Any] | TensorSummary], items: int, cap: int
) -> dict[str, NDArray[Any] | TensorSummary]:
    out: dict[str, NDArray[Any] | TensorSummary] = {}
    for name, value in tensors.items():
        if isinstance(value, TensorSummary):
            out[name] = value
            continue
        array = np.asarray(value)
        out[name] = np.array(array, copy=True) if fits(array, items=items, max_tensor_bytes=cap) else summarize(array)
    return out


class PredictionLogger:
    """Sampled, asynchronous prediction logging into one sink.

    Args:
        sink: where records go (ParquetSink, KafkaSink, or anything with the Sink methods).
        sample_rate: share of calls logged for models without their own rate (default: all of them).
        sample_rates: rates per model name, overriding `sample_rate`.
        queue_size: records the queue holds; beyond it records are dropped and counted.
        flush_records: the writer hands the sink a batch once it holds this many records...
        flush_interval_s: ...or once its oldest record has waited this long.
        max_tensor_bytes: one item of a tensor up to this size is stored in full; larger ones as summaries.
        rng: random source of the sampling (tests pass a seeded one).

    Raises:
        ConfigError: a rate outside [0, 1], or a size or interval that is not positive.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        sample_rate: float = 1.0,
        sample_rates: Mapping[str, float] | None = None,
        queue_size: int = 10_000,
        flush_records: int = 1_000,
        flush_interval_s: float = 5.0,
        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
        rng: random.Random | None = None,
    ) -> None:
        self._default_rate = _check_rate(sample_rate, "sample_rate")
        self._rates = {m: _check_rate(r, f"the sample rate of model {m!r}") for m, r in (sample_rates or {}).items()}
        for name, value in (("queue_size", queue_size), ("flush_records", flush_records)):
            if int(value) < 1:
                raise ConfigError(f"{name} must be at least 1, got {value!r}")
        if not flush_interval_s > 0 or max_tensor_bytes < 0:
            raise ConfigError(
                f"flush_interval_s must be > 0 and max_tensor_bytes >= 0, "
                f"got {flush_interval_s!r} and {max_tensor_bytes!r}"
            )
        self.sink = sink
        self.max_tensor_bytes = int(max_tensor_bytes)
        self._flush_records = int(flush_records)
        self._flush_interval_s = float(flush_interval_s)
        self._rng = rng or random.Random()
        # A deque, not a queue.Queue: append and popleft are atomic without a lock or a condition variable, so a
        # call pays well under a microsecond for the hand-over, and the writer drains whole batches at once.
        self._pending: collections.deque[PredictionRecord | LabelRecord] = collections.deque()
        self._queue_size = int(queue_size)
        self._wake = threading.Event()
        self._flushes: list[threading.Event] = []
        self._stopping = False
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("logged", "sampled_out", "dropped_queue_full", "dropped_sink_error", "written", "labels_written",
             "labels_dropped", "labels_queued", "sink_errors"), 0,
        )  # fmt: skip
        self._last_error = ""
        self._last_warning = -_WARN_INTERVAL_S
        self._oldest_pending: dt.datetime | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tritonforge-prediction-log", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"PredictionLogger(sink={self.sink!r}, sample_rate={self._default_rate}, sample_rates={self._rates})"

    def sample_rate(self, model: str) -> float:
        """The share of `model`'s calls that are logged."""
        return self._rates.get(model, self._default_rate)

    def should_log(self, model: str) -> bool:
        """Draw the sampling decision for one call of `model` (a call not drawn is counted as sampled out)."""
        rate = self.sample_rate(model)
        if rate >= 1.0 or (rate > 0.0 and self._rng.random() < rate):
            return True
        self._count("sampled_out")
        return False

    def log(self, record: PredictionRecord) -> bool:
        """Sample and enqueue a record; True when it was queued. Never blocks, never raises."""
        try:
            return self.should_log(record.model) and self.submit(record)
        except Exception:  # noqa: BLE001 - logging must never fail the inference it records
            _LOGGER.exception("prediction log: could not log a record of model %s", record.model)
            return False

    def submit(self, record: PredictionRecord) -> bool:
        """Enqueue a record already drawn by `should_log`; True when queued, False when dropped (queue full)."""
        try:
            cap = self.max_tensor_bytes
            kept = PredictionRecord(
                request_id=record.request_id,
                time=record.time,
                model=record.model,
                version=record.version,
                latency_s=record.latency_s,
                status=record.status,
                items=record.items,
                inputs=_snapshot(record.inputs, record.items, cap),
                outputs=_snapshot(record.outputs, record.items, cap),
                attributes={str(k): str(v) for k, v in record.attributes.items()},
            )
            if self._closed or len(self._pending) >= self._queue_size:
                self._count("dropped_queue_full")
                return False
            self._pending.append(kept)
        except Exception:  # noqa: BLE001 - see log()
            _LOGGER.exception("prediction log: could not queue a record of model %s", record.model)
            self._count("dropped_queue_full")
            return False
        self._count("logged")
        if len(self._pending) == self._flush_records:  # a full batch waits: wake the writer now, not at its tick
            self._wake.set()
        return True

    def feedback(self, request_id: str, label: Any, *, item_index: int = 0, model: str | None = None) -> bool:
        """Queue a late label for one item of a logged request; True when queued (labels are never sampled)."""
        record = LabelRecord(request_id=str(request_id), item_index=int(item_index), label=str(label),
                             time=utc_now(), model=model)  # fmt: skip
        if self._closed or len(self._pending) >= self._queue_size:
            self._count("labels_dropped")
            return False
        self._pending.append(record)
        self._count("labels_queued")
        return True

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued before this call has reached the sink; False if that took over timeout_s."""
        if self._closed or not self._thread.is_alive():
            return False
        done = threading.Event()
        with self._lock:
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued, close the sink and stop the writer; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            _LOGGER.warning("prediction log: the writer did not finish within %.0f s at close", timeout_s)

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stats(self) -> LoggerStats:
        """The counters now (cheap; safe from any thread)."""
        with self._lock:
            c = dict(self._counts)
            oldest = self._oldest_pending
            last_error = self._last_error
        lag = c["logged"] - c["written"] - c["dropped_sink_error"]
        lag_s = max(0.0, (utc_now() - oldest).total_seconds()) if oldest is not None and lag > 0 else 0.0
        return LoggerStats(
            logged=c["logged"],
            sampled_out=c["sampled_out"],
            dropped_queue_full=c["dropped_queue_full"],
            dropped_sink_error=c["dropped_sink_error"],
            written=c["written"],
            lag=lag,
            lag_s=lag_s,
            labels_written=c["labels_written"],
            labels_dropped=c["labels_dropped"],
            sink_errors=c["sink_errors"],
            last_error=last_error,
        )

    # -- the writer thread -------------------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _settle(self, delivery: Delivery, *, labels: bool = False) -> None:
        with self._lock:
            self._counts["labels_written" if labels else "written"] += delivery.written
            self._counts["labels_dropped" if labels else "dropped_sink_error"] += delivery.failed
            if delivery.error:
                self._last_error = delivery.error

    def _sink_failed(self, exc: BaseException, n: int, *, labels: bool) -> None:
        with self._lock:
            self._counts["labels_dropped" if labels else "dropped_sink_error"] += n
            self._counts["sink_errors"] += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._last_warning >= _WARN_INTERVAL_S:
            self._last_warning = now
            _LOGGER.warning("prediction log: the sink %r failed, %d records lost: %s", self.sink, n, self._last_error)

    def _call_sink(self, fn: Any, batch: Sequence[Any] | None, *, labels: bool = False) -> None:
        try:
            delivery = fn(batch) if batch is not None else fn()
        except Exception as exc:  # noqa: BLE001 - a dead sink must not stop the writer
            self._sink_failed(exc, len(batch or ()), labels=labels)
        else:
            self._settle(delivery, labels=labels)

    def _write(self, records: list[PredictionRecord], labels: list[LabelRecord]) -> None:
        if records:
            self._call_sink(self.sink.write, records)
        if labels:
            self._call_sink(self.sink.write_labels, labels, labels=True)
        self._call_sink(self.sink.poll, None)
        records.clear()
        labels.clear()
        with self._lock:
            self._oldest_pending = None

    def _drain(self, records: list[PredictionRecord], labels: list[LabelRecord], limit: int) -> None:
        pending = self._pending
        while pending and len(records) < limit:
            item = pending.popleft()
            if isinstance(item, PredictionRecord):
                if not records:
                    with self._lock:
                        self._oldest_pending = item.time
                records.append(item)
            else:
                labels.append(item)

    def _run(self) -> None:
        records: list[PredictionRecord] = []
        labels: list[LabelRecord] = []
        due = time.monotonic() + self._flush_interval_s
        while True:
            self._wake.wait(_TICK_S)
            self._wake.clear()
            with self._lock:
                flushes, self._flushes = self._flushes, []
            stopping = self._stopping
            # Everything queued before a flush or close request is written; a batch is at most flush_records.
            while True:
                self._drain(records, labels, self._flush_records)
                full = len(records) >= self._flush_records
                if full or ((flushes or stopping) and (records or labels)) or time.monotonic() >= due:
                    if records or labels:
                        self._write(records, labels)
                    else:
                        self._call_sink(self.sink.poll, None)
                    due = time.monotonic() + self._flush_interval_s
                if not (full or ((flushes or stopping) and self._pending)):
                    break
            for done in flushes:
                done.set()
            if stopping:
                self._call_sink(self.sink.close, None)
                return
