"""The launcher against the real embedded tritonserver: readiness, load failures, draining shutdown, no leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient

from tritonforge.errors import ServerError
from tritonforge.serving.launcher import EmbeddedTriton, _free_ports

SLOW_MODEL = """
import time
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        time.sleep(1.5)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""

SLOW_CONFIG = """
name: "slow"
backend: "python"
max_batch_size: 4
input { name: "X" data_type: TYPE_FP32 dims: [2] }
output { name: "Y" data_type: TYPE_FP32 dims: [2] }
"""


def _process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def slow_repository(tmp_path: Path) -> Path:
    (tmp_path / "repo" / "slow" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "slow" / "config.pbtxt").write_text(SLOW_CONFIG)
    (tmp_path / "repo" / "slow" / "1" / "model.py").write_text(SLOW_MODEL)
    return tmp_path / "repo"


def test_embedded_triton_leaves_no_process_when_stopped(triton_server: EmbeddedTriton, digits_repository: Path) -> None:
    server = EmbeddedTriton(repository=digits_repository)
    with server:
        pid = server.pid
        assert pid is not None and _process_group_alive(pid)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        assert client.is_model_ready("digits")
        client.close()
    assert not server.is_running()
    assert not _process_group_alive(pid)  # server and its python-backend stubs


def test_embedded_triton_reports_server_reason_when_model_fails_to_load(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "broken"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(
        'name: "broken"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
        'input { name: "x" data_type: TYPE_FP32 dims: [2] }\noutput { name: "y" data_type: TYPE_FP32 dims: [2] }\n'
    )
    (model_dir / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    server = EmbeddedTriton(repository=tmp_path / "repo", startup_timeout_s=60)
    with pytest.raises(ServerError, match=r"model 'broken' version 1: .*(onnx|ONNX|protobuf|Protobuf|parse|load)"):
        server.start()
    assert not server.is_running()


def _start_serve_command(repository: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    grpc_port, http_port, metrics_port = _free_ports(0, 0, 0)
    command = [sys.executable, "-m", "tritonforge", "serve", "--repository", str(repository)]
    command += ["--grpc-port", str(grpc_port), "--http-port", str(http_port), "--metrics-port", str(metrics_port)]
    command += ["--log-path", str(tmp_path / "server.log"), *extra]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True
    )
    assert process.stdout is not None
    assert "tritonserver ready" in process.stdout.readline()
    return process, grpc_port


def test_server_stops_when_serve_command_is_killed_with_sigkill(slow_repository: Path, tmp_path: Path) -> None:
    process, _ = _start_serve_command(slow_repository, tmp_path, "--exit-timeout-s", "2")
    descendants = psutil.Process(process.pid).children(recursive=True)  # tritonserver and its python stub
    assert any("tritonserver" in p.name() for p in descendants)
    assert any("stub" in " ".join(p.cmdline()) for p in descendants)
    process.kill()  # no atexit, no signal handler: only the kernel's parent-death signal can stop the server
    process.wait(timeout=10)
    gone, alive = psutil.wait_procs(descendants, timeout=30)
    for leftover in alive:
        leftover.kill()
    assert not alive, "tritonserver outlived its parent"


def test_serve_command_drains_in_flight_request_when_sent_sigterm(slow_repository: Path, tmp_path: Path) -> None:
    grpc_port, http_port, metrics_port = _free_ports(0, 0, 0)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritonforge",
            "serve",
            "--repository",
            str(slow_repository),
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
            "--metrics-port",
            str(metrics_port),
            "--log-path",
            str(tmp_path / "server.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert "tritonserver ready" in process.stdout.readline()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        tensor = grpcclient.InferInput("X", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0]], dtype=np.float32))
        answers: list[np.ndarray] = []
        request = threading.Thread(target=lambda: answers.append(client.infer("slow", [tensor]).as_numpy("Y")))
        request.start()
        time.sleep(0.5)  # the request is now inside the model's 1.5 s execute()
        process.send_signal(signal.SIGTERM)
        request.join(timeout=20)
        client.close()
        assert answers and answers[0].tolist() == [[1.0, 2.0]]  # the in-flight request was answered
        assert process.wait(timeout=30) == 0
        assert "tritonserver stopped" in process.stdout.read()
        assert not _process_group_alive(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
