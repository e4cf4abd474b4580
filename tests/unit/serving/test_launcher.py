from __future__ import annotations

from pathlib import Path

import pytest

from tritonforge.errors import ServerError
from tritonforge.serving.launcher import EmbeddedTriton

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
    with pytest.raises(ServerError, match=r"start-up: model 'm' version 1: Invalid argument: no GPU here"):
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
