"""The prediction log against the real embedded tritonserver serving `digits`: what the clients log, the id Triton
sees, labels joined back, and a dead sink that costs inference nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from tritonforge.client import AsyncTritonClient, TritonClient
from tritonforge.client.transport import grpc_transport
from tritonforge.monitoring.kafka_sink import KafkaSink
from tritonforge.monitoring.log_reader import join_labels, read_labels, read_predictions
from tritonforge.monitoring.logger import PredictionLogger
from tritonforge.monitoring.parquet_sink import ParquetSink

pytestmark = pytest.mark.integration

MODEL = "digits"


class _Recording:
    """The real transport, keeping the id of each response Triton sent back."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.response_ids: list[str] = []

    def infer(self, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.infer(*args, **kwargs)
        self.response_ids.append(result.get_response().id)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _batches(digits_split, n: int = 5, size: int = 8) -> list[np.ndarray]:
    x = np.ascontiguousarray(digits_split.x_test, dtype=np.float32)
    return [x[i * size : (i + 1) * size] for i in range(n)]


def test_sync_client_logs_each_call_and_triton_answers_with_its_id(triton_server, digits_split, tmp_path):
    transports: list[_Recording] = []

    def factory(settings):
        transports.append(_Recording(grpc_transport(settings)))
        return transports[-1]

    log = PredictionLogger(ParquetSink(tmp_path / "log"))
    results = []
    with TritonClient(triton_server.grpc_url, timeout_s=30.0, transport_factory=factory, prediction_log=log) as client:
        client.wait_until_ready(MODEL, timeout_s=60.0)
        for i, batch in enumerate(_batches(digits_split)):
            results.append(client.infer(MODEL, {"image": batch}, attributes={"segment": f"s{i % 2}"}))
    assert transports[0].response_ids == [r.request_id for r in results]  # the id went to Triton and came back
    log.close()
    window = read_predictions(tmp_path / "log", MODEL)
    assert len(window) == 40 and window.total_items == 40
    np.testing.assert_array_equal(window.inputs["image"], np.concatenate(_batches(digits_split)))
    logged = {name: window.outputs[name] for name in results[0]}
    for name, values in logged.items():
        np.testing.assert_array_equal(values, np.concatenate([r[name] for r in results]))
    assert set(window.versions.tolist()) == {"1"} and set(window.statuses.tolist()) == {"ok"}
    assert window.attributes["segment"].tolist()[:8] == ["s0"] * 8
    assert (window.latencies_s > 0).all()


def test_labels_given_through_feedback_join_the_logged_items(triton_server, digits_split, tmp_path):
    log = PredictionLogger(ParquetSink(tmp_path / "log"))
    y = digits_split.y_test
    with TritonClient(triton_server.grpc_url, timeout_s=30.0, prediction_log=log) as client:
        client.wait_until_ready(MODEL, timeout_s=60.0)
        for i, batch in enumerate(_batches(digits_split, n=4)):
            outputs = client.infer(MODEL, {"image": batch})
            if i % 2 == 0:  # labels arrive for half of the requests
                client.feedback(outputs.request_id, y[i * 8 : (i + 1) * 8], model=MODEL)
    log.close()
    labelled = join_labels(read_predictions(tmp_path / "log", MODEL), read_labels(tmp_path / "log", MODEL))
    assert labelled.coverage == pytest.approx(0.5) and len(labelled.labels) == 16
    np.testing.assert_array_equal(labelled.labels, np.concatenate([y[0:8], y[16:24]]))
    (name,) = labelled.window.outputs
    accuracy = float((labelled.window.outputs[name].argmax(axis=1) == labelled.labels).mean())
    assert accuracy > 0.8  # the digits CNN is right on most of its test images


def test_async_client_logs_concurrent_calls_once_each(triton_server, digits_split, tmp_path):
    log = PredictionLogger(ParquetSink(tmp_path / "log"))

    async def run() -> list[str]:
        async with AsyncTritonClient(triton_server.grpc_url, timeout_s=30.0, prediction_log=log) as client:
            await client.wait_until_ready(MODEL, timeout_s=60.0)
            results = await asyncio.gather(*(client.infer(MODEL, {"image": b}) for b in _batches(digits_split)))
            return [r.request_id for r in results]

    ids = asyncio.run(run())
    log.close()
    window = read_predictions(tmp_path / "log", MODEL)
    assert sorted(set(window.request_ids.tolist())) == sorted(ids) and len(window) == 40


@pytest.mark.parametrize("sink_kind", ["unwritable folder", "kafka broker down"])
def test_a_dead_sink_fails_no_request_and_counts_its_drops(triton_server, digits_split, tmp_path, sink_kind):
    if sink_kind == "unwritable folder":
        (tmp_path / "file").write_text("")
        sink: Any = ParquetSink(tmp_path / "file" / "log")
    else:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        sink = KafkaSink(f"127.0.0.1:{port}", message_timeout_ms=500, max_queued=4)
    log = PredictionLogger(sink, flush_records=2)
    with TritonClient(triton_server.grpc_url, timeout_s=30.0, prediction_log=log) as client:
        client.wait_until_ready(MODEL, timeout_s=60.0)
        answers = [client.infer(MODEL, {"image": b}) for b in _batches(digits_split, n=10, size=4)]
    log.close()
    stats = log.stats()
    assert len(answers) == 10 and stats.logged == 10
    assert stats.written == 0 and stats.dropped_sink_error == 10 and stats.lag == 0
