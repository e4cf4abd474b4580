"""Find a tritonserver to run and prepare what it needs: the binary, its backends and its environment.

    install = embedded_install()          # the tritonserver inside the nvidia-pytriton wheel
    install = full_install(Path("/opt/tritonserver/bin/tritonserver"))   # e.g. inside the NGC image
    subprocess.Popen([str(install.binary), ...], env=install.environment())

The embedded server is the real Triton 2.51 shipped in the `nvidia-pytriton` wheel: CPU only, python backend only.
Its python backend needs the stub built for the running Python placed beside `libtriton_python.so`; we assemble that
backend directory in a cache folder of our own, never in site-packages.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from tritonforge.errors import ConfigError, ServerError

_LOGGER = logging.getLogger(__name__)

SERVER_BINARY_ENV = "TRITONFORGE_SERVER_BINARY"
"""Environment variable naming a full tritonserver binary; the same as `--server-binary`."""

CACHE_DIR_ENV = "TRITONFORGE_CACHE_DIR"
"""Environment variable overriding the cache folder (default: ~/.cache/tritonforge)."""


@dataclass(frozen=True, kw_only=True)
class ServerInstall:
    """A tritonserver binary with the backends it can load and the environment it needs.

    Attributes:
        binary: the tritonserver executable.
        backend_directory: passed as --backend-directory, or None to use the install's default.
        backends: names of the backends this install has (e.g. {"python"} for the embedded server).
        library_paths: prepended to LD_LIBRARY_PATH.
        embedded: True for the pip-wheel server.
    """

    binary: Path
    backend_directory: Path | None
    backends: frozenset[str]
    library_paths: tuple[Path, ...] = field(default=())
    embedded: bool = False

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Return the environment to start the server with.

        The python backend stub embeds libpython and finds its packages from the first `python3` on PATH, so the
        running interpreter's bin folder goes first: the stub then sees this virtual environment (and its numpy<2).
        """
        env = dict(os.environ if base is None else base)
        paths = [str(p) for p in self.library_paths]
        if env.get("LD_LIBRARY_PATH"):
            paths.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("PYTHONPATH", None)
        return env


def cache_dir() -> Path:
    """Return tritonforge's cache folder (created if missing)."""
    root = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "tritonforge")
    root.mkdir(parents=True, exist_ok=True)
    return root


def resolve_install(server_binary: Path | None = None) -> ServerInstall:
    """Return the install to run: `server_binary`, else $TRITONFORGE_SERVER_BINARY, else the embedded server."""
    binary = server_binary or (Path(os.environ[SERVER_BINARY_ENV]) if os.environ.get(SERVER_BINARY_ENV) else None)
    return full_install(binary) if binary is not None else embedded_install()


def full_install(binary: Path) -> ServerInstall:
    """Describe a full Triton install (NGC image layout: <root>/bin/tritonserver, <root>/backends/<name>/)."""
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ConfigError(f"--server-binary {binary} is not an executable file; point it at tritonserver")
    backends_dir = binary.resolve().parent.parent / "backends"
    backends = frozenset(p.name for p in backends_dir.iterdir() if p.is_dir()) if backends_dir.is_dir() else frozenset()
    if not backends:
        # Unknown layout: assume the install has the standard backends and let the server report what it lacks.
        backends = frozenset({"python", "onnxruntime", "tensorrt", "pytorch"})
    return ServerInstall(binary=binary, backend_directory=None, backends=backends)


def embedded_install() -> ServerInstall:
    """Prepare the tritonserver from the nvidia-pytriton wheel: backend directory with this Python's stub, libraries."""
    wheel_root = _pytriton_root()
    server_root = wheel_root / "tritonserver"
    binary = server_root / "bin" / "tritonserver"
    libs = wheel_root.parent / "nvidia_pytriton.libs"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server_root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton ships no python backend stub for Python {version}; use Python 3.8-3.13")
    backend_dir = _assemble_backend_dir(server_root / "backends" / "python", stub)
    interpreter_libdir = Path(sysconfig.get_config_var("LIBDIR") or "/usr/lib")
    return ServerInstall(
        binary=binary,
        backend_directory=backend_dir,
        backends=frozenset({"python"}),
        library_paths=(interpreter_libdir, libs),
        embedded=True,
    )


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ServerError(
            "the embedded Triton needs the nvidia-pytriton wheel; install it with `pip install 'tritonforge[serve]'` "
            "or pass --server-binary"
        ) from exc
    return Path(pytriton.__file__).resolve().parent


def _assemble_backend_dir(python_backend: Path, stub: Path) -> Path:
    """Copy the python backend and the stub into a cache folder keyed by their content, once."""
    sources = [python_backend / "libtriton_python.so", python_backend / "triton_python_backend_utils.py", stub]
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.name.encode())
        digest.update(str(src.stat().st_size).encode())
        digest.update(str(src.stat().st_mtime_ns).encode())
    target = cache_dir() / "backends" / digest.hexdigest()[:16]
    if (target / "python" / stub.name).is_file():
        return target
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "python").mkdir(parents=True)
    for src in sources:
        shutil.copy2(src, staging / "python" / src.name)
    try:
        staging.rename(target)
    except OSError:  # another process assembled it first
        shutil.rmtree(staging, ignore_errors=True)
    _LOGGER.debug("python backend assembled in %s", target)
    return target
