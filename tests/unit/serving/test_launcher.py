from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tritonforge.errors import ConfigError, ServerError
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions, describe_exit
from tritonforge.serving.server_install import ServerInstall

FAKE_SERVER = """#!/bin/sh
echo "$@" > "{args_file}"
echo "E1126 00:00:00.000 1 server.cc:1] \\"failed to load 'm' version 1: Invalid argument: no GPU here\\""
exit 1
"""


def _fake_install(tmp_path: Path) -> Path:
    binary = tmp_path / "triton" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True)
    binary.write_text(FAKE_SERVER.format(args_file=tmp_path / "args.txt"))
    binary.chmod(0o755)
    (tmp_path / "triton" / "backends" / "onnxruntime").mkdir(parents=True)
    return binary


def _onnx_repository(tmp_path: Path) -> Path:
    model = tmp_path / "repo" / "m"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n')
    (model / "1" / "model.onnx").write_bytes(b"x")
    return tmp_path / "repo"


def test_launcher_serves_canonical_repository_when_server_binary_has_the_backend(tmp_path: Path) -> None:
    server = EmbeddedTriton(repository=_onnx_repository(tmp_path), server_binary=_fake_install(tmp_path))
    with pytest.raises(
        ServerError, match=r"start-up \(exit code 1\): model 'm' version 1: Invalid argument: no GPU here"
    ):
        server.start()
    args = (tmp_path / "args.txt").read_text()
    assert f"--model-repository={(tmp_path / 'repo').resolve()}" in args  # no derived copy, no adapter
    assert "--backend-directory" not in args  # the install's own backends
    assert not server.is_running()


def test_launcher_picks_distinct_free_ports_when_ports_are_zero(tmp_path: Path) -> None:
    server = EmbeddedTriton(repository=_onnx_repository(tmp_path), server_binary=_fake_install(tmp_path))
    with pytest.raises(ServerError):
        server.start()
    ports = {server.grpc_port, server.http_port, server.metrics_port}
    assert len(ports) == 3 and all(port > 0 for port in ports)


# A stand-in tritonserver for the supervisor: answers /v2/health/ready on --http-address:--http-port until it is
# killed. The tests kill it with a real SIGSEGV, the signal the embedded 2.51 dies of (Triton #7368, #8034).
READY_SERVER = """#!{python}
import http.server, sys
flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
with open({args_file!r}, "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
print("fake tritonserver on", flags["http-address"], flags["http-port"], flush=True)

class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer((flags["http-address"], int(flags["http-port"])), Ready).serve_forever()
"""


def _ready_install(tmp_path: Path) -> Path:
    binary = tmp_path / "ready" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True)
    binary.write_text(READY_SERVER.format(python=sys.executable, args_file=str(tmp_path / "args.txt")))
    binary.chmod(0o755)
    (tmp_path / "ready" / "backends" / "onnxruntime").mkdir(parents=True)
    return binary


def _crash(server: EmbeddedTriton) -> None:
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSEGV)
    deadline = time.monotonic() + 10
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.is_running()


def _command(**options: object) -> list[str]:
    install = ServerInstall(binary=Path("tritonserver"), backend_directory=None, backends=frozenset())
    return EmbeddedTriton(ServerOptions(repository=Path("/models"), **options))._command(install)  # type: ignore[arg-type]


def test_every_port_binds_loopback_unless_told_otherwise() -> None:
    flags = _command()
    for name in ("grpc", "http", "metrics"):
        assert f"--{name}-address=127.0.0.1" in flags
    everywhere = ServerOptions(repository=Path("/models"), listen="0.0.0.0")
    assert everywhere.host == "127.0.0.1"  # where clients on this machine connect
    assert {f for f in _command(listen="0.0.0.0") if "-address=" in f} == {
        "--grpc-address=0.0.0.0", "--http-address=0.0.0.0", "--metrics-address=0.0.0.0"
    }  # fmt: skip
    assert ServerOptions(repository=Path("/models"), listen="10.1.2.3").host == "10.1.2.3"


def test_a_listen_address_that_is_not_ipv4_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"listen address 'localhost' is not an IPv4 address; use 127\.0\.0\.1"):
        ServerOptions(repository=Path("/models"), listen="localhost")


def test_remote_model_control_must_be_asked_for_twice() -> None:
    with pytest.raises(ConfigError, match="listen 0.0.0.0 with model_control_mode explicit .* --allow-remote-model"):
        ServerOptions(repository=Path("/models"), listen="0.0.0.0", model_control_mode="explicit")
    with pytest.raises(ConfigError, match="model_control_mode poll"):
        ServerOptions(repository=Path("/models"), listen="192.168.1.20", model_control_mode="poll")
    ServerOptions(
        repository=Path("/models"), listen="0.0.0.0", model_control_mode="explicit", allow_remote_model_control=True
    )
    ServerOptions(repository=Path("/models"), listen="0.0.0.0")  # no model control: nothing to guard
    ServerOptions(repository=Path("/models"), listen="127.0.0.5", model_control_mode="explicit")  # loopback


def test_model_control_is_always_restricted_and_off_means_no_restriction(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TRITONFORGE_MODEL_CONTROL_KEY", raising=False)
    binary = _ready_install(tmp_path)
    with EmbeddedTriton(repository=_onnx_repository(tmp_path), server_binary=binary) as plain:
        assert plain.model_control_key is None
    assert "restricted" not in (tmp_path / "args.txt").read_text()
    (tmp_path / "args.txt").unlink()
    with EmbeddedTriton(
        repository=_onnx_repository(tmp_path / "b"), server_binary=binary, model_control_mode="explicit"
    ) as guarded:
        key = guarded.model_control_key
        assert key is not None
        assert guarded.log_text().count(key.reveal()) == 0  # the command line is never written to the log
    args = (tmp_path / "args.txt").read_text()
    assert f"--grpc-restricted-protocol=model-repository:tritonforge-model-control-key={key.reveal()}" in args
    assert f"--http-restricted-api=model-repository:tritonforge-model-control-key={key.reveal()}" in args


def test_the_log_outlives_the_server_and_a_failure_names_the_exit_code(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRITONFORGE_CACHE_DIR", str(tmp_path / "cache"))
    server = EmbeddedTriton(repository=_onnx_repository(tmp_path), server_binary=_fake_install(tmp_path))
    with pytest.raises(
        ServerError, match=r"exited during start-up \(exit code 1\).*server log: .*/cache/logs/"
    ) as info:
        server.start()
    assert server.log_path.parent == (tmp_path / "cache" / "logs").resolve()
    assert str(server.log_path) in str(info.value) and "\n" not in str(info.value)
    assert "no GPU here" in server.log_path.read_text()  # still there after the work folder is gone
    assert server.log_tail(1) == [server.log_text().strip().splitlines()[-1]]


def test_watch_restarts_a_crashed_server_on_the_same_ports_and_says_so(tmp_path: Path, caplog) -> None:
    server = EmbeddedTriton(
        repository=_onnx_repository(tmp_path), server_binary=_ready_install(tmp_path), restart_on_crash=True,
        max_restarts_per_minute=2, log_path=tmp_path / "server.log",
    )  # fmt: skip
    with server:
        ports, first_pid = (server.grpc_port, server.http_port, server.metrics_port), server.pid
        server.watch()  # alive: nothing to do
        assert server.restarts == 0 and server.pid == first_pid
        _crash(server)
        with caplog.at_level(logging.WARNING, logger="tritonforge.serving.launcher"):
            server.watch()
        assert server.restarts == 1 and server.is_running() and server.pid != first_pid
        assert (server.grpc_port, server.http_port, server.metrics_port) == ports
        assert "tritonserver died (signal 11, SIGSEGV); restarted (1/2)" in caplog.text
        assert "fake tritonserver on 127.0.0.1" in caplog.text  # the last log lines come with it
        log = server.log_text()
        assert "tritonforge: tritonserver died (signal 11, SIGSEGV); restart 1" in log
        assert log.count("fake tritonserver on") == 2  # the first run's output is kept

        _crash(server)
        server.watch()
        _crash(server)
        with pytest.raises(ServerError, match=r"died while serving \(signal 11, SIGSEGV\); 2 restarts in the last"):
            server.watch()
    assert server.restarts == 2 and not server.is_running()


def test_watch_raises_naming_the_signal_when_restarts_are_off(tmp_path: Path) -> None:
    server = EmbeddedTriton(repository=_onnx_repository(tmp_path), server_binary=_ready_install(tmp_path))
    with server:
        _crash(server)
        with pytest.raises(ServerError, match=r"died while serving \(signal 11, SIGSEGV\); restart-on-crash is off"):
            server.watch()
    assert server.restarts == 0


def test_describe_exit_names_signals_and_codes() -> None:
    assert describe_exit(-11) == "signal 11, SIGSEGV"
    assert describe_exit(-6) == "signal 6, SIGABRT"
    assert describe_exit(3) == "exit code 3"


def test_serve_refuses_bad_safety_options_in_one_line_before_writing_anything(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tritonforge.cli.main import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    remote = runner.invoke(app, ["serve", "--listen", "0.0.0.0", "--model-control-mode", "explicit"])
    assert remote.exit_code == 1
    assert remote.output.strip().splitlines() == [
        "ConfigError: listen 0.0.0.0 with model_control_mode explicit lets other machines load and unload models; "
        "listen on 127.0.0.1, or also pass --allow-remote-model-control"
    ]
    assert runner.invoke(app, ["serve", "--listen", "::"]).exit_code == 1
    assert not (tmp_path / "runs").exists()
