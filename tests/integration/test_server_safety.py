"""The real embedded tritonserver, started safely: loopback sockets, guarded model control, and a supervisor that
brings a crashed server back on the same ports (the crash is a real SIGSEGV sent to tritonserver)."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tritonforge.loadtests.tuner import _ModelControl
from tritonforge.serving.launcher import EmbeddedTriton, _free_ports
from tritonforge.serving.model_control import MODEL_CONTROL_KEY_ENV

ECHO_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 4
input { name: "X" data_type: TYPE_FP32 dims: [2] }
output { name: "Y" data_type: TYPE_FP32 dims: [2] }
"""


@pytest.fixture
def echo_repository(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "echo" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "echo" / "config.pbtxt").write_text(ECHO_CONFIG)
    (tmp_path / "repo" / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    return tmp_path / "repo"


def _echo(url: str) -> list[list[float]]:
    client = grpcclient.InferenceServerClient(url)
    try:
        tensor = grpcclient.InferInput("X", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0]], dtype=np.float32))
        return client.infer("echo", [tensor]).as_numpy("Y").tolist()  # type: ignore[union-attr]
    finally:
        client.close()


def _listening(pid: int) -> set[tuple[str, int]]:
    process = psutil.Process(pid)
    connections = process.net_connections(kind="inet") if hasattr(process, "net_connections") else process.connections()
    found = set()
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN:
            address = ipaddress.ip_address(conn.laddr.ip)
            mapped = getattr(address, "ipv4_mapped", None)  # gRPC binds an IPv6 socket: ::ffff:127.0.0.1
            found.add((str(mapped or address), conn.laddr.port))
    return found


def test_grpc_http_and_metrics_listen_on_loopback_only(echo_repository: Path, tmp_path: Path) -> None:
    with EmbeddedTriton(repository=echo_repository, log_path=tmp_path / "server.log") as server:
        assert server.pid is not None
        listening = _listening(server.pid)
        ports = {server.grpc_port, server.http_port, server.metrics_port}
        assert {port for _, port in listening} == ports
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
        assert server.grpc_url.startswith("127.0.0.1:") and _echo(server.grpc_url) == [[1.0, 2.0]]


def test_model_control_without_the_key_is_refused_over_grpc_and_http(
    echo_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(MODEL_CONTROL_KEY_ENV, raising=False)
    server = EmbeddedTriton(
        repository=echo_repository, model_control_mode="explicit", extra_args=("--load-model=echo",),
        log_path=tmp_path / "server.log", log_verbose=1,
    )  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="tritonforge"), server:
        key = server.model_control_key
        assert key is not None
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        http = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
        try:
            for refused in (
                lambda: grpc.load_model("echo"),
                lambda: grpc.unload_model("echo"),
                lambda: grpc.get_model_repository_index(),
                lambda: http.load_model("echo"),
                lambda: http.unload_model("echo"),
                lambda: http.get_model_repository_index(),
                lambda: grpc.load_model(
                    "echo", headers={"triton-grpc-protocol-tritonforge-model-control-key": "x" * 20}
                ),
            ):
                with pytest.raises(InferenceServerException, match="restricted"):
                    refused()
            assert grpc.is_model_ready("echo") and http.is_model_ready("echo")  # never unloaded
            assert _echo(server.grpc_url) == [[1.0, 2.0]]  # inference and health stay open
            grpc.load_model("echo", headers=key.grpc_headers())
            http.load_model("echo", headers=key.http_headers())
            assert [m["name"] for m in http.get_model_repository_index(headers=key.http_headers())] == ["echo"]
            # the tuner finds the key of the server this process started and sends it
            control = _ModelControl(server.grpc_url, "echo")
            try:
                control.load(control.served_config(), label="same config")
            finally:
                control.close()
        finally:
            grpc.close()
            http.close()
        secret = key.reveal()
        assert secret not in repr(server.options) and secret not in repr(key)
    assert secret not in server.log_text() and secret not in caplog.text


def _reader(stream: object) -> tuple[list[str], threading.Thread]:
    lines: list[str] = []

    def read() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return lines, thread


@pytest.fixture
def serve_command(echo_repository: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _serve(started: list[subprocess.Popen[str]], repository: Path, cwd: Path, *extra: str) -> subprocess.Popen[str]:
    grpc_port, http_port, metrics_port = _free_ports(0, 0, 0)
    command = [sys.executable, "-m", "tritonforge", "serve", "--repository", str(repository), "--exit-timeout-s", "2"]
    command += ["--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port)]
    process = subprocess.Popen(
        [*command, *extra], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    started.append(process)
    return process


def _tritonserver(process: subprocess.Popen[str]) -> psutil.Process:
    (server,) = [p for p in psutil.Process(process.pid).children() if "tritonserver" in p.name()]
    return server


def _wait_for(lines: list[str], text: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        joined = "".join(lines)
        if text in joined:
            return joined
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in:\n{''.join(lines)}")


def test_serve_restarts_a_server_that_died_of_sigsegv_on_the_same_port(
    echo_repository: Path, tmp_path: Path, serve_command: list[subprocess.Popen[str]]
) -> None:
    process = _serve(
        serve_command, echo_repository, tmp_path, "--run-dir", str(tmp_path / "run"), "--max-restarts-per-minute", "2"
    )
    out, _ = _reader(process.stdout)
    err, _ = _reader(process.stderr)
    banner = _wait_for(out, "restart on crash: ON")
    assert "restart on crash: ON, at most 2 a minute" in banner
    grpc_url = banner.split("grpc ", 1)[1].split()[0]
    assert _echo(grpc_url) == [[1.0, 2.0]]
    first = _tritonserver(process)
    first.send_signal(signal.SIGSEGV)  # what 2.51 does under overload with cancellations (Triton #7368, #8034)
    said = _wait_for(err, "restarted (1/2)")
    assert "tritonserver died (signal 11, SIGSEGV); restarted (1/2)" in said
    assert "Signal (11) received." in said  # the dead server's last log lines come with it
    assert _echo(grpc_url) == [[1.0, 2.0]]  # the same port answers again
    second = _tritonserver(process)
    assert second.pid != first.pid
    log = (tmp_path / "run" / "tritonserver.log").read_text()
    assert "Signal (11) received." in log and "tritonforge: tritonserver died (signal 11, SIGSEGV); restart 1" in log
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert "tritonserver stopped" in "".join(out)


def test_serve_exits_non_zero_naming_the_signal_and_keeps_the_log_when_restarts_are_off(
    echo_repository: Path, tmp_path: Path, serve_command: list[subprocess.Popen[str]]
) -> None:
    process = _serve(serve_command, echo_repository, tmp_path, "--no-restart-on-crash")
    out, _ = _reader(process.stdout)
    err, reading = _reader(process.stderr)
    banner = _wait_for(out, "restart on crash: off")
    (log_line,) = [line for line in banner.splitlines() if line.startswith("log: ")]
    log_path = Path(log_line.split()[1])
    assert log_path.parent.parent == (tmp_path / "runs" / "serve").resolve()  # default: runs/serve/<UTC time>/
    _tritonserver(process).send_signal(signal.SIGSEGV)
    assert process.wait(timeout=60) == 1
    reading.join(timeout=10)
    said = "".join(err)
    assert "ServerError: tritonserver died while serving (signal 11, SIGSEGV); restart-on-crash is off" in said
    assert f"last 20 lines of {log_path}:" in said or f"lines of {log_path}:" in said
    assert "Signal (11) received." in said
    assert log_path.is_file() and "Signal (11) received." in log_path.read_text()  # kept after the server is gone


def test_serve_with_model_control_writes_a_private_key_file_and_never_prints_the_key(
    echo_repository: Path, tmp_path: Path, serve_command: list[subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_CONTROL_KEY_ENV, raising=False)
    run = tmp_path / "run"
    process = _serve(
        serve_command, echo_repository, tmp_path, "--run-dir", str(run), "--model-control-mode", "explicit"
    )
    out, _ = _reader(process.stdout)
    err, _ = _reader(process.stderr)
    banner = _wait_for(out, "model-control key: ")
    key_file = run / "model_control.key"
    assert f"model-control key: {key_file}" in banner
    assert (key_file.stat().st_mode & 0o777) == 0o600
    secret = key_file.read_text().strip()
    url = banner.split("http http://", 1)[1].split()[0]
    http = httpclient.InferenceServerClient(url)
    try:
        with pytest.raises(InferenceServerException, match="restricted"):
            http.load_model("echo")
        http.load_model("echo", headers={"tritonforge-model-control-key": secret})
        assert http.is_model_ready("echo")
    finally:
        http.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    time.sleep(0.2)
    printed = "".join(out) + "".join(err)
    assert secret not in printed and secret not in (run / "tritonserver.log").read_text()
