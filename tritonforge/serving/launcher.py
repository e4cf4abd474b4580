"""Start the real tritonserver on a model repository, wait until it is ready, stop it cleanly.

    with EmbeddedTriton(repository=Path("model_repository")) as server:
        client = TritonClient(server.grpc_url)
        ...
    # the server and its python-backend stubs are gone here

Ports default to free loopback ports. The server's whole output goes to `log_path`. Stopping sends SIGINT so the
server drains in-flight requests (up to `exit_timeout_s`), then kills the process group if it is still there; an
atexit hook makes sure no server outlives the Python process that started it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tritonforge.errors import ConfigError, ServerError
from tritonforge.serving.derived_repository import derive_repository
from tritonforge.serving.server_install import ServerInstall, resolve_install

_LOGGER = logging.getLogger(__name__)

_LOAD_FAILURE = re.compile(r"failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*?)\"?$")
_RUNNING: set[EmbeddedTriton] = set()
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(kw_only=True)
class ServerOptions:
    """How to start tritonserver. Port 0 means "pick a free port".

    Attributes:
        repository: the canonical model repository.
        server_binary: a full Triton install's tritonserver; None uses the embedded one from nvidia-pytriton.
        host: where clients reach the server (the embedded server listens on all interfaces; tests use loopback).
        grpc_port / http_port / metrics_port: ports to bind, 0 for a free one.
        model_control_mode: "none" (load everything at start), "explicit" (load on request) or "poll".
        startup_timeout_s: how long to wait for readiness before giving up.
        exit_timeout_s: how long the server may drain in-flight requests on shutdown.
        log_path: where the server's output goes; default: the work folder.
        log_verbose: tritonserver's --log-verbose level.
        extra_args: passed to tritonserver as they are.
    """

    repository: Path
    server_binary: Path | None = None
    host: str = "127.0.0.1"
    grpc_port: int = 0
    http_port: int = 0
    metrics_port: int = 0
    model_control_mode: str = "none"
    startup_timeout_s: float = 120.0
    exit_timeout_s: int = 30
    log_path: Path | None = None
    log_verbose: int = 0
    extra_args: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.model_control_mode not in {"none", "explicit", "poll"}:
            raise ConfigError(f"model_control_mode '{self.model_control_mode}' is not one of none, explicit, poll")
        for name in ("grpc_port", "http_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name} {port} is out of range; use 1-65535, or 0 for a free port")
        if self.startup_timeout_s <= 0 or self.exit_timeout_s < 0:
            raise ConfigError("startup_timeout_s must be > 0 and exit_timeout_s >= 0")


class EmbeddedTriton:
    """A tritonserver child process serving one repository (embedded by default, any install with server_binary)."""

    def __init__(self, options: ServerOptions | None = None, **kwargs: object) -> None:
        self.options = options if options is not None else ServerOptions(**kwargs)  # type: ignore[arg-type]
        self._process: subprocess.Popen[bytes] | None = None
        self._work_dir: tempfile.TemporaryDirectory[str] | None = None
        self.grpc_port = self.http_port = self.metrics_port = 0
        self.log_path: Path = Path()
        self.served_repository: Path = Path()

    @property
    def repository(self) -> Path:
        """The canonical repository being served."""
        return self.options.repository

    @property
    def grpc_url(self) -> str:
        """host:port for gRPC clients."""
        return f"{self.options.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP/REST endpoint."""
        return f"http://{self.options.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics endpoint."""
        return f"http://{self.options.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedTriton:
        """Start the server and block until it is ready.

        Raises:
            ServerError: the server exited or was not ready in time; the message carries the server's own reason.
        """
        if self.is_running():
            return self
        install = resolve_install(self.options.server_binary)
        self._work_dir = tempfile.TemporaryDirectory(prefix="tritonforge-serve-")
        work = Path(self._work_dir.name)
        self.served_repository = derive_repository(
            repository=self.options.repository.resolve(), backends=install.backends, work_dir=work
        )
        self.grpc_port, self.http_port, self.metrics_port = _free_ports(
            self.options.grpc_port, self.options.http_port, self.options.metrics_port
        )
        self.log_path = (self.options.log_path or work / "tritonserver.log").resolve()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = self._command(install)
        _LOGGER.info("starting %s (log: %s)", install.binary, self.log_path)
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=install.environment(),
                start_new_session=True,  # its own process group: stop() takes the python stubs down with it
                preexec_fn=_stop_with_parent,
            )
        _RUNNING.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        _LOGGER.info("tritonserver ready: grpc %s, http %s, metrics %s", self.grpc_url, self.http_url, self.metrics_url)
        return self

    def stop(self, *, timeout_s: float | None = None) -> int | None:
        """Stop the server: SIGINT (drains in-flight requests), then SIGKILL to its process group past the deadline.

        Returns:
            The server's exit code, or None if it was not started.
        """
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is None:
            return None
        deadline_s = timeout_s if timeout_s is not None else self.options.exit_timeout_s + 10
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                _LOGGER.warning("tritonserver did not stop within %.0fs; killing it", deadline_s)
        # The python-backend stubs share the server's process group; none may outlive it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
        if self._work_dir is not None and self.options.log_path is None:
            self._keep_log()
        if self._work_dir is not None:
            self._work_dir.cleanup()
            self._work_dir = None
        return code

    def log_text(self) -> str:
        """The server's output so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> EmbeddedTriton:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _command(self, install: ServerInstall) -> list[str]:
        opts = self.options
        command = [
            str(install.binary),
            f"--model-repository={self.served_repository}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={opts.model_control_mode}",
            f"--exit-timeout-secs={opts.exit_timeout_s}",
            f"--log-verbose={opts.log_verbose}",
            "--strict-readiness=true",
        ]
        if install.backend_directory is not None:
            command.append(f"--backend-directory={install.backend_directory}")
        if install.embedded:
            command += ["--allow-gpu-metrics=false", "--backend-config=python,shm-default-byte-size=4194304"]
        return command + list(opts.extra_args)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.options.startup_timeout_s
        ready_url = f"{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise ServerError(self._failure_reason("tritonserver exited during start-up"))
            try:
                with urllib.request.urlopen(ready_url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise ServerError(
            self._failure_reason(f"tritonserver was not ready within {self.options.startup_timeout_s:g}s")
        )

    def _failure_reason(self, headline: str) -> str:
        log = self.log_text()
        failures = [m.groupdict() for m in map(_LOAD_FAILURE.search, log.splitlines()) if m]
        if failures:
            reasons = "; ".join(
                f"model '{f['model']}' version {f['version']}: {_first_line(f['reason'])}" for f in failures
            )
            return f"{headline}: {reasons} (server log: {self.log_path})"
        errors = [line for line in log.splitlines() if line.startswith(("E1", "E0", "error:"))]
        detail = _first_line(errors[-1]) if errors else "no error in the log"
        return f"{headline}: {detail} (server log: {self.log_path})"

    def _keep_log(self) -> None:
        """Move the log out of the work folder before it is deleted, so a failure can still be read."""
        kept = Path(tempfile.gettempdir()) / f"tritonforge-tritonserver-{os.getpid()}-{self.grpc_port}.log"
        with contextlib.suppress(OSError):
            self.log_path.replace(kept)
            self.log_path = kept


def _stop_with_parent() -> None:
    """Ask Linux to send the server SIGTERM when its parent dies, even by SIGKILL, when atexit cannot run.

    The signal follows the thread that started the server: start servers from a thread that outlives them.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _first_line(text: str) -> str:
    return text.replace("\\n", "\n").strip().splitlines()[0] if text.strip() else text


def _free_ports(*requested: int) -> tuple[int, ...]:
    """Return the requested ports, with each 0 replaced by a distinct free loopback port."""
    sockets, ports = [], []
    try:
        for port in requested:
            if port:
                ports.append(port)
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return tuple(ports)


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop(timeout_s=5)
