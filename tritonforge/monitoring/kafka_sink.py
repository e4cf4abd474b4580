"""The Kafka sink: one JSON message per prediction (and per label) on one topic, through confluent-kafka.

    sink = KafkaSink("broker-1:9092,broker-2:9092", topic="tritonforge.predictions")
    logger = PredictionLogger(sink)

Messages are keyed by request id; the value is UTF-8 JSON with the Parquet record's fields (the README has the
schema): tensors keep name, dtype, shape, the summary and, when stored in full, `data` as base64. Labels go on the
same topic with `"kind": "label"`. `produce` never blocks: librdkafka queues at most `max_queued` messages
locally (a full queue raises BufferError at once, counted as dropped) and gives up on a message after
`message_timeout_ms` (counted as dropped in its delivery report). Delivery reports are served by `poll`, which
the logger's writer thread calls, never the thread that runs inference.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tritonforge.errors import ConfigError
from tritonforge.monitoring.logger import Delivery
from tritonforge.monitoring.records import (
    DEFAULT_MAX_TENSOR_BYTES,
    LabelRecord,
    PredictionRecord,
    record_to_row,
)

__all__ = ["KafkaSink", "label_message", "prediction_message"]

_LOGGER = logging.getLogger(__name__)
# librdkafka's own messages (a broker refusing connections is reported on every retry) under a logger of their own.
_LIBRDKAFKA_LOGGER = logging.getLogger(f"{__name__}.librdkafka")

SCHEMA_VERSION = 1


def _json_tensor(entry: Mapping[str, Any]) -> dict[str, Any]:
    data = entry["data"]
    return {**entry, "data": None if data is None else base64.b64encode(data).decode("ascii")}


def prediction_message(record: PredictionRecord, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> bytes:
    """A record as the Kafka message value (UTF-8 JSON)."""
    row = record_to_row(record, max_tensor_bytes=max_tensor_bytes)
    message = {
        "kind": "prediction",
        "schema_version": SCHEMA_VERSION,
        **row,
        "time": row["time"].isoformat(),
        "inputs": [_json_tensor(t) for t in row["inputs"]],
        "outputs": [_json_tensor(t) for t in row["outputs"]],
        "attributes": dict(row["attributes"]),
    }
    return json.dumps(message, separators=(",", ":")).encode()


def label_message(label: LabelRecord) -> bytes:
    """A label as the Kafka message value (UTF-8 JSON)."""
    message = {
        "kind": "label",
        "schema_version": SCHEMA_VERSION,
        "request_id": label.request_id,
        "item_index": label.item_index,
        "label": label.label,
        "time": label.time.astimezone(dt.timezone.utc).isoformat(),
        "model": label.model,
    }
    return json.dumps(message, separators=(",", ":")).encode()


class KafkaSink:
    """Produces prediction and label messages to one Kafka topic.

    Args:
        bootstrap_servers: the brokers, `host:port[,host:port]`.
        topic: the topic.
        max_queued: messages librdkafka holds locally before produce refuses (`queue.buffering.max.messages`).
        message_timeout_ms: how long a message may wait for delivery before it is dropped (`message.timeout.ms`).
        max_tensor_bytes: per-item cap above which a tensor is sent as its summary.
        config: further librdkafka settings (security, compression, ...), which override the ones above.

    Raises:
        ConfigError: librdkafka rejects the configuration.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic: str = "tritonforge.predictions",
        max_queued: int = 100_000,
        message_timeout_ms: int = 10_000,
        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import KafkaException, Producer

        settings: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "queue.buffering.max.messages": int(max_queued),
            "message.timeout.ms": int(message_timeout_ms),
            "linger.ms": 50,
            "compression.type": "zstd",
            "logger": _LIBRDKAFKA_LOGGER,  # to the process log, not stderr
            **(config or {}),
        }
        try:
            self._producer = Producer(settings)
        except KafkaException as exc:
            raise ConfigError(f"Kafka sink for {bootstrap_servers!r}: {exc}; fix the librdkafka setting") from exc
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.max_tensor_bytes = max_tensor_bytes
        self._delivered = 0
        self._failed = 0
        self._error = ""

    def __repr__(self) -> str:
        return f"KafkaSink({self.bootstrap_servers!r}, topic={self.topic!r})"

    def _report(self, err: Any, _message: Any) -> None:
        if err is None:
            self._delivered += 1
        else:
            self._failed += 1
            self._error = f"KafkaError: {err.str() if hasattr(err, 'str') else err}"

    def _settled(self, refused: int = 0) -> Delivery:
        error = self._error or ("BufferError: the producer's local queue is full" if refused else "")
        delivery = Delivery(written=self._delivered, failed=self._failed + refused, error=error)
        self._delivered = self._failed = 0
        self._error = ""
        return delivery

    def _report_label(self, err: Any, _message: Any) -> None:
        if err is not None:
            _LOGGER.warning("kafka sink: a label was not delivered: %s", err)

    def _produce(self, key: str, value: bytes, *, label: bool = False) -> bool:
        report = self._report_label if label else self._report
        try:
            self._producer.produce(self.topic, value=value, key=key.encode(), on_delivery=report)
        except BufferError:  # librdkafka's local queue is full: the broker is slow or gone
            return False
        except Exception as exc:  # noqa: BLE001 - e.g. a message over message.max.bytes: lose it, keep going
            _LOGGER.debug("kafka sink: could not produce %s: %s", key, exc)
            return False
        return True

    def write(self, records: Sequence[PredictionRecord]) -> Delivery:
        """Queue the records for delivery; deliveries settle in later `poll` calls."""
        refused = 0
        for record in records:
            message = prediction_message(record, max_tensor_bytes=self.max_tensor_bytes)
            refused += not self._produce(record.request_id, message)
        self._producer.poll(0)
        return self._settled(refused)

    def write_labels(self, labels: Sequence[LabelRecord]) -> Delivery:
        """Queue the labels for delivery; labels queued count as written (a later delivery failure is logged)."""
        refused = sum(not self._produce(x.request_id, label_message(x), label=True) for x in labels)
        self._producer.poll(0)
        return Delivery(written=len(labels) - refused, failed=refused)

    def poll(self) -> Delivery:
        """Serve delivery reports (never blocks)."""
        self._producer.poll(0)
        return self._settled()

    def close(self, timeout_s: float = 5.0) -> Delivery:
        """Wait up to timeout_s for queued messages; those still undelivered count as lost."""
        left = int(self._producer.flush(timeout_s))
        settled = self._settled(left)
        if left:
            return Delivery(
                written=settled.written, failed=settled.failed, error=f"{left} messages undelivered at close"
            )
        return settled
