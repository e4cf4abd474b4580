from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tritonforge.errors import ConfigError
from tritonforge.serving.launcher import ServerOptions
from tritonforge.serving.server_install import embedded_install, full_install, resolve_install


def test_embedded_install_assembles_backend_dir_with_stub_for_running_python(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRITONFORGE_CACHE_DIR", str(tmp_path))
    install = embedded_install()
    python_dir = install.backend_directory / "python"
    assert (python_dir / "libtriton_python.so").is_file()
    assert (python_dir / "triton_python_backend_stub").is_file()
    assert os.access(python_dir / "triton_python_backend_stub", os.X_OK)
    assert install.backends == {"python"}
    assert str(tmp_path) in str(install.backend_directory)  # never inside site-packages
    assert embedded_install().backend_directory == install.backend_directory  # assembled once


def test_embedded_install_environment_puts_this_interpreter_first_on_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TRITONFORGE_CACHE_DIR", str(tmp_path))
    env = embedded_install().environment({"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"})
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "nvidia_pytriton.libs" in env["LD_LIBRARY_PATH"]
    assert "PYTHONPATH" not in env


def test_full_install_rejects_missing_binary(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not an executable file"):
        full_install(tmp_path / "tritonserver")


def test_full_install_reads_backends_from_install_layout(tmp_path) -> None:
    binary = tmp_path / "bin" / "tritonserver"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    for name in ("onnxruntime", "python", "tensorrt"):
        (tmp_path / "backends" / name).mkdir(parents=True)
    install = resolve_install(binary)
    assert install.backends == {"onnxruntime", "python", "tensorrt"}
    assert install.backend_directory is None and not install.embedded


def test_server_options_reject_bad_values(tmp_path) -> None:
    with pytest.raises(ConfigError, match="model_control_mode"):
        ServerOptions(repository=tmp_path, model_control_mode="sometimes")
    with pytest.raises(ConfigError, match="grpc_port 70000"):
        ServerOptions(repository=tmp_path, grpc_port=70000)
