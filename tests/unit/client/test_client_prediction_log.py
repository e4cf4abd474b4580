"""The clients' prediction log: one record per call with its final status, ids to the caller and to Triton,
and a log that never fails or blocks inference."""

from __future__ import annotations

import asyncio
import re
import threading

import grpc
import numpy as np
import pytest
from client_fakes import DIGITS, FakeRpcError, fake_logits, images, server_error

from tritonforge.client import AsyncTritonClient, InferOutputs, TritonClient
from tritonforge.errors import ConfigError, InvalidInputError, ServerOverloadedError
from tritonforge.monitoring.log_reader import read_labels, read_predictions
from tritonforge.monitoring.logger import Delivery, PredictionLogger
from tritonforge.monitoring.parquet_sink import ParquetSink


@pytest.fixture
def logger(tmp_path):
    log = PredictionLogger(ParquetSink(tmp_path / "log"))
    yield log
    log.close()


def _client(factory, logger, **overrides) -> TritonClient:
    return TritonClient("127.0.0.1:8001", transport_factory=factory, retries=3, backoff_s=0.001,
                        prediction_log=logger, **overrides)  # fmt: skip


def test_infer_logs_the_call_and_returns_its_request_id_when_a_logger_is_given(factory, fake, logger, tmp_path):
    batch = images(3)
    outputs = _client(factory, logger).infer(DIGITS, {"image": batch}, attributes={"group": "a"})
    assert isinstance(outputs, InferOutputs) and isinstance(outputs, dict)
    assert re.fullmatch(r"[0-9a-f]{32}", outputs.request_id)
    assert fake.calls[-1][1]["request_id"] == outputs.request_id  # Triton gets the same id
    assert logger.flush()
    window = read_predictions(tmp_path / "log", DIGITS)
    assert window.request_ids.tolist() == [outputs.request_id] * 3
    assert window.item_index.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(window.inputs["image"], batch)
    np.testing.assert_array_equal(window.outputs["logits"], fake_logits(batch))
    assert window.versions.tolist() == ["1"] * 3  # the version that answered
    assert window.attributes["group"].tolist() == ["a"] * 3


def test_infer_sends_the_callers_request_id_when_given(factory, fake, logger):
    outputs = _client(factory, logger).infer(DIGITS, {"image": images()}, request_id="order-17")
    assert outputs.request_id == "order-17" and fake.calls[-1][1]["request_id"] == "order-17"


def test_infer_logs_once_with_the_final_status_when_attempts_are_retried(factory, fake, logger, tmp_path):
    client = _client(factory, logger)
    fake.fail("infer", FakeRpcError(grpc.StatusCode.UNAVAILABLE), FakeRpcError(grpc.StatusCode.UNAVAILABLE))
    client.infer(DIGITS, {"image": images()})
    assert fake.count("infer") == 3
    fake.fail("infer", server_error(grpc.StatusCode.UNAVAILABLE, "Exceeds maximum queue size"))
    with pytest.raises(ServerOverloadedError):
        client.infer(DIGITS, {"image": images()})
    assert logger.flush()
    window = read_predictions(tmp_path / "log", DIGITS, include_errors=True)
    statuses = [window.statuses[window.request_ids == r][0] for r in dict.fromkeys(window.request_ids.tolist())]
    assert statuses == ["ok", "ServerOverloadedError"]
    assert logger.stats().logged == 2


def test_infer_logs_a_request_rejected_before_sending_with_its_error_class(factory, fake, logger, tmp_path):
    with pytest.raises(InvalidInputError):
        _client(factory, logger).infer(DIGITS, {"image": images(2, np.float64)})
    assert logger.flush()
    window = read_predictions(tmp_path / "log", DIGITS, include_errors=True)
    assert set(window.statuses.tolist()) == {"InvalidInputError"}
    assert len(read_predictions(tmp_path / "log", DIGITS)) == 0  # failed calls are left out by default


def test_infer_succeeds_and_counts_sink_errors_when_the_log_path_is_unwritable(factory, fake, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with PredictionLogger(ParquetSink(blocker / "log"), flush_records=1) as logger:
        client = _client(factory, logger)
        for _ in range(3):
            client.infer(DIGITS, {"image": images()})
        assert logger.flush()
        stats = logger.stats()
    assert stats.dropped_sink_error == 3 and stats.written == 0 and stats.sink_errors >= 1
    assert "NotADirectory" in stats.last_error or "Not a directory" in stats.last_error


class _StuckSink:
    """A sink whose write hangs until released: the writer thread is stuck, the queue fills."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, records):
        self.release.wait(30)
        return Delivery(written=len(records))

    def write_labels(self, labels):
        return Delivery(written=len(labels))

    def poll(self):
        return Delivery()

    def close(self):
        return Delivery()


def test_infer_never_waits_for_a_stuck_sink_and_counts_what_the_full_queue_drops(factory, fake):
    sink = _StuckSink()
    logger = PredictionLogger(sink, queue_size=2, flush_records=1)
    client = _client(factory, logger)
    for _ in range(20):
        client.infer(DIGITS, {"image": images()})
    stats = logger.stats()
    assert stats.logged + stats.dropped_queue_full == 20
    assert stats.dropped_queue_full >= 20 - 2 - 1  # the queue, plus the record the writer holds
    sink.release.set()
    logger.close()
    assert logger.stats().written == logger.stats().logged


def test_infer_is_not_logged_when_the_models_sample_rate_is_zero(factory, fake, tmp_path):
    with PredictionLogger(ParquetSink(tmp_path / "log"), sample_rates={DIGITS: 0.0}) as logger:
        outputs = _client(factory, logger).infer(DIGITS, {"image": images()})
    assert outputs.request_id
    assert logger.stats().sampled_out == 1 and logger.stats().logged == 0


def test_feedback_stores_one_label_per_item_of_the_request(factory, fake, logger, tmp_path):
    client = _client(factory, logger)
    outputs = client.infer(DIGITS, {"image": images(2)})
    client.feedback(outputs.request_id, np.array([3, 8]), model=DIGITS)
    client.feedback("other", "cat")
    assert logger.flush()
    labels = read_labels(tmp_path / "log")
    mine = labels[labels["request_id"] == outputs.request_id]
    assert mine["item_index"].tolist() == [0, 1] and mine["label"].tolist() == ["3", "8"]  # str: "cat" is there too
    assert read_labels(tmp_path / "log", DIGITS)["request_id"].nunique() == 2  # labels without a model match all


def test_client_without_a_log_still_returns_request_ids_and_refuses_feedback(factory, fake):
    client = TritonClient("127.0.0.1:8001", transport_factory=factory)
    outputs = client.infer(DIGITS, {"image": images()})
    assert outputs.request_id and client.prediction_log is None
    with pytest.raises(ConfigError, match="prediction_log"):
        client.feedback(outputs.request_id, 1)


def test_client_opens_and_closes_a_parquet_log_from_a_path(factory, fake, tmp_path):
    with TritonClient("127.0.0.1:8001", transport_factory=factory, prediction_log=tmp_path / "log") as client:
        request_id = client.infer(DIGITS, {"image": images(1)}).request_id
    assert read_predictions(tmp_path / "log", DIGITS).request_ids.tolist() == [request_id]  # closing flushed it


def test_infer_rejects_attributes_that_are_not_a_mapping_of_names(factory, fake, logger):
    with pytest.raises(InvalidInputError, match="attributes"):
        _client(factory, logger).infer(DIGITS, {"image": images()}, attributes=["group"])  # type: ignore[arg-type]


def test_async_infer_logs_once_and_returns_the_request_id(async_factory, fake, logger, tmp_path):
    async def run():
        async with AsyncTritonClient("127.0.0.1:8001", transport_factory=async_factory, retries=3,
                                     backoff_s=0.001, prediction_log=logger) as client:  # fmt: skip
            fake.fail("infer", FakeRpcError(grpc.StatusCode.UNAVAILABLE))
            outputs = await client.infer(DIGITS, {"image": images(2)}, request_id="a-1", attributes={"arm": "b"})
            client.feedback(outputs.request_id, [1, 2])
            return outputs

    outputs = asyncio.run(run())
    assert outputs.request_id == "a-1" and fake.calls[-1][1]["request_id"] == "a-1"
    assert logger.flush()
    window = read_predictions(tmp_path / "log", DIGITS)
    assert window.request_ids.tolist() == ["a-1", "a-1"] and window.attributes["arm"].tolist() == ["b", "b"]
    assert logger.stats().logged == 1
    assert read_labels(tmp_path / "log")["label"].tolist() == [1, 2]


def test_the_log_path_can_come_from_the_environment(factory, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONFORGE_CLIENT_PREDICTION_LOG", str(tmp_path / "env-log"))
    with TritonClient("127.0.0.1:8001", transport_factory=factory) as client:
        request_id = client.infer(DIGITS, {"image": images(1)}).request_id
    assert read_predictions(tmp_path / "env-log", DIGITS).request_ids.tolist() == [request_id]
