"""Restarts lose no request: the client's retries spend the deadline, and round robin moves past a stopping server.

Two real embedded tritonservers serve `digits`; one is stopped (SIGINT: it drains, unloads the model, answering
"has no available versions", then closes) and started again on the same port while a client thread keeps sending.
Assertions are about outcomes (no request failed, every answer right, traffic came back), never about speed.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tritonforge.client import TritonClient
from tritonforge.errors import ClientError
from tritonforge.serving.launcher import EmbeddedTriton

pytestmark = pytest.mark.integration

MODEL = "digits"
MAX_REQUESTS = 200_000
"""Upper bound on what the sending thread sends; it stops much earlier, once the restarted server has served."""
WAIT_S = 120.0
"""How long the test waits for a server-side event before failing (a bound, not a speed requirement)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server(repository: Path, port: int, log_path: Path) -> EmbeddedTriton:
    return EmbeddedTriton(repository=repository, grpc_port=port, log_path=log_path, startup_timeout_s=WAIT_S)


@contextmanager
def _running(server: EmbeddedTriton) -> Iterator[EmbeddedTriton]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _served(port: int) -> int:
    """How many requests for `digits` the server on `port` has answered successfully (its statistics API)."""
    with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as raw:
        stats = raw.get_inference_statistics(MODEL, client_timeout=10.0)
    return sum(int(s.inference_stats.success.count) for s in stats.model_stats)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


class _Sender:
    """Sends the same batch over and over from a thread, recording answers and failures."""

    def __init__(self, client: TritonClient, batch: np.ndarray, expected: np.ndarray) -> None:
        self.client, self.batch, self.expected = client, batch, expected
        self.answers = 0
        self.wrong = 0
        self.errors: list[ClientError] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def _run(self) -> None:
        for _ in range(MAX_REQUESTS):
            if self.stop.is_set():
                return
            try:
                logits = self.client.infer(MODEL, {"image": self.batch})["logits"]
            except ClientError as exc:
                self.errors.append(exc)
                continue
            self.answers += 1
            self.wrong += int(not np.array_equal(logits.argmax(axis=1), self.expected))

    def __enter__(self) -> _Sender:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(timeout=WAIT_S)


@pytest.mark.timeout(600)
def test_round_robin_client_loses_no_request_when_one_of_two_servers_restarts(
    digits_repository: Path, digits_split, tmp_path: Path
) -> None:
    batch = np.ascontiguousarray(digits_split.x_test[:4], dtype=np.float32)
    expected = digits_split.torch_logits[:4].argmax(axis=1)
    port_a, port_b = _free_port(), _free_port()
    assert port_a != port_b
    server_a = _server(digits_repository, port_a, tmp_path / "a.log")
    restarted_a = _server(digits_repository, port_a, tmp_path / "a-restarted.log")
    with _running(_server(digits_repository, port_b, tmp_path / "b.log")):
        server_a.start()
        try:
            # gRPC's syntax for a fixed list of addresses: the ipv4 scheme, comma-separated host:port pairs.
            url = f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}"
            with TritonClient(url, round_robin=True, timeout_s=30.0) as client:
                client.wait_until_ready(MODEL, timeout_s=WAIT_S)
                with _Sender(client, batch, expected) as sender:
                    _wait_for(lambda: _served(port_a) >= 20 and _served(port_b) >= 20, "both servers to serve")
                    server_a.stop()  # SIGINT: drain, unload, close; the sender keeps going
                    with _running(restarted_a):  # same port, new process
                        _wait_for(lambda: _served(port_a) >= 20, "the restarted server to get traffic again")
                        sender.stop.set()
                        sender.thread.join(timeout=WAIT_S)
                    assert not sender.thread.is_alive()
        finally:
            server_a.stop()
    assert [str(e) for e in sender.errors] == []
    assert sender.wrong == 0
    assert sender.answers > 60


@pytest.mark.timeout(600)
def test_client_request_survives_kill_9_when_server_restarts_within_deadline(
    digits_repository: Path, digits_split, tmp_path: Path
) -> None:
    batch = np.ascontiguousarray(digits_split.x_test[:4], dtype=np.float32)
    port = _free_port()
    result: dict[str, object] = {}
    with _running(_server(digits_repository, port, tmp_path / "first.log")) as first:
        with TritonClient(f"127.0.0.1:{port}", timeout_s=WAIT_S) as client:
            client.wait_until_ready(MODEL, timeout_s=WAIT_S)
            client.infer(MODEL, {"image": batch})  # connected, metadata cached
            assert first.pid is not None
            os.killpg(first.pid, signal.SIGKILL)  # kill -9: no drain, connections just drop
            _wait_for(lambda: not first.is_running(), "the killed server to exit")

            def call() -> None:
                try:
                    result["logits"] = client.infer(MODEL, {"image": batch})["logits"]
                except ClientError as exc:
                    result["error"] = exc

            caller = threading.Thread(target=call, name="caller", daemon=True)
            caller.start()
            caller.join(timeout=1.0)
            assert caller.is_alive(), f"the call gave up while the server was down: {result.get('error')}"
            # The server is started from this thread: it must outlive the server (PDEATHSIG follows the thread).
            with _running(_server(digits_repository, port, tmp_path / "second.log")):
                caller.join(timeout=WAIT_S)
    assert "error" not in result, result.get("error")
    logits = result["logits"]
    assert isinstance(logits, np.ndarray)
    np.testing.assert_array_equal(logits.argmax(axis=1), digits_split.torch_logits[:4].argmax(axis=1))
