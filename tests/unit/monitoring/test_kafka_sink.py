"""KafkaSink against a loopback port where nothing listens: the real confluent-kafka client, a dead broker.

Delivery to a live broker is not tested here (none runs on these machines); the README says so.
"""

from __future__ import annotations

import base64
import json
import socket

import numpy as np
import pytest

from tritonforge.errors import ConfigError
from tritonforge.monitoring.kafka_sink import KafkaSink, label_message, prediction_message
from tritonforge.monitoring.logger import PredictionLogger
from tritonforge.monitoring.records import LabelRecord, PredictionRecord, utc_now


@pytest.fixture
def dead_broker() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


def _record(i: int = 0) -> PredictionRecord:
    return PredictionRecord.create(
        model="digits", request_id=f"r{i}", items=2, inputs={"x": np.arange(4, dtype=np.float32).reshape(2, 2)},
        outputs={"y": np.array([1, 0])}, attributes={"group": "a"},
    )  # fmt: skip


def test_a_dead_broker_drops_and_counts_every_record_without_failing_log(dead_broker):
    sink = KafkaSink(dead_broker, max_queued=5, message_timeout_ms=300)
    with PredictionLogger(sink, flush_records=1) as log:
        accepted = [log.log(_record(i)) for i in range(30)]
    stats = log.stats()
    assert all(accepted)  # log() took every record; the writer thread met the dead broker
    assert stats.logged == 30 and stats.written == 0
    assert stats.dropped_sink_error == 30 and stats.lag == 0  # refused by the full local queue, or timed out
    assert "queue is full" in stats.last_error or "timed out" in stats.last_error


def test_the_message_holds_the_records_fields_as_json():
    record = _record()
    message = json.loads(prediction_message(record))
    assert message["kind"] == "prediction" and message["request_id"] == "r0" and message["model"] == "digits"
    assert message["items"] == 2 and message["attributes"] == {"group": "a"} and message["status"] == "ok"
    x = message["inputs"][0]
    assert (x["name"], x["dtype"], x["shape"]) == ("x", "<f4", [2, 2])
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(x["data"]), "<f4"), [0, 1, 2, 3])
    assert x["mean"] is None  # stored in full: no summary needed
    label = json.loads(label_message(LabelRecord(request_id="r0", item_index=1, label="7", time=utc_now())))
    assert label["kind"] == "label" and label["item_index"] == 1 and label["label"] == "7"


def test_a_setting_librdkafka_rejects_is_a_config_error(dead_broker):
    with pytest.raises(ConfigError, match="librdkafka"):
        KafkaSink(dead_broker, config={"no.such.setting": 1})
