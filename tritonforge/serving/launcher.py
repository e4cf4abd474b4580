"""Start the real tritonserver on a model repository, wait until it is ready, stop it cleanly.

    with EmbeddedTriton(repository=Path("model_repository")) as server:
        client = TritonClient(server.grpc_url)
        ...
    # the server and its python-backend stubs are gone here

Safe by default:
- it listens on 127.0.0.1 for gRPC, HTTP and metrics (`listen` says otherwise; Triton's own default is 0.0.0.0);
- with model control (explicit or poll) Triton's restricted APIs refuse load/unload/index calls that lack the
  model-control key (`tritonforge.serving.model_control`), and a non-loopback `listen` with model control is refused
  unless `allow_remote_model_control` is also set;
- every model version whose manifest records sha256 hashes is checked before start (`tritonforge.serving.integrity`);
- the server's whole output goes to `log_path`, a file that outlives the server (default: tritonforge's cache folder,
  `logs/`), and start-up failures name it.

Ports default to free loopback ports. Stopping sends SIGINT so the server drains in-flight requests (up to
`exit_timeout_s`), then kills the process group if it is still there; an atexit hook makes sure no server outlives the
Python process that started it. `watch()`, called periodically by the thread that started the server, notices a
server that died and, with `restart_on_crash`, starts it again on the same ports (a bounded number of times a minute).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import datetime as dt
import ipaddress
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
from tritonforge.serving import model_control
from tritonforge.serving.derived_repository import derive_repository
from tritonforge.serving.integrity import VerifiedRepository, verify_repository
from tritonforge.serving.model_control import ModelControlKey
from tritonforge.serving.server_install import ServerInstall, cache_dir, resolve_install

_LOGGER = logging.getLogger(__name__)

_LOAD_FAILURE = re.compile(r"failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*?)\"?$")
_RUNNING: set[EmbeddedTriton] = set()
_STUB_COMM = "(triton_python_b"  # /proc's comm: the stub's name, cut to 15 characters
_STUB_GRACE_S = 2.0  # a stub that ends this long before its server is a stub that died
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_SHM_PREFIX = "/dev/shm/triton_python_backend_shm_region_"
LOG_TAIL_LINES = 20
"""How many of the server's last log lines a crash report shows."""
_KEPT_LOGS = 50
_RESTART_WINDOW_S = 60.0


@dataclass(kw_only=True)
class ServerOptions:
    """How to start tritonserver. Port 0 means "pick a free port".

    Attributes:
        repository: the canonical model repository.
        server_binary: a full Triton install's tritonserver; None uses the embedded one from nvidia-pytriton.
        listen: the IPv4 address gRPC, HTTP and metrics bind to: 127.0.0.1 (default, this machine only), 0.0.0.0
            (every interface) or one interface's address.
        host: where clients reach the server; default: `listen`, or 127.0.0.1 when listening on 0.0.0.0.
        grpc_port / http_port / metrics_port: ports to bind, 0 for a free one.
        model_control_mode: "none" (load everything at start), "explicit" (load on request) or "poll".
        model_control_key: the key model-control calls must carry (explicit/poll only); default:
            $TRITONFORGE_MODEL_CONTROL_KEY, else a random key for this server (`EmbeddedTriton.model_control_key`).
        allow_remote_model_control: permit model control with a non-loopback `listen` (the key still guards it).
        verify_manifests: check model files against the sha256 in their manifests before start.
        restart_on_crash: `watch()` restarts a server that died, at most `max_restarts_per_minute` times a minute.
        max_restarts_per_minute: the restart budget in any 60 s window.
        startup_timeout_s: how long to wait for readiness before giving up.
        exit_timeout_s: how long the server may drain in-flight requests on shutdown.
        log_path: where the server's output goes (appended to across restarts); default: a new file under
            tritonforge's cache folder, `logs/` (the newest 50 are kept).
        log_verbose: tritonserver's --log-verbose level.
        extra_args: passed to tritonserver as they are.
    """

    repository: Path
    server_binary: Path | None = None
    listen: str = "127.0.0.1"
    host: str = ""
    grpc_port: int = 0
    http_port: int = 0
    metrics_port: int = 0
    model_control_mode: str = "none"
    model_control_key: ModelControlKey | None = None
    allow_remote_model_control: bool = False
    verify_manifests: bool = True
    restart_on_crash: bool = False
    max_restarts_per_minute: int = 3
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
        if self.max_restarts_per_minute < 0:
            raise ConfigError(f"max_restarts_per_minute {self.max_restarts_per_minute} is negative; use 0 or more")
        address = _ipv4(self.listen)
        if not self.host:
            self.host = "127.0.0.1" if address.is_unspecified else self.listen
        if self.model_control_mode != "none" and not address.is_loopback and not self.allow_remote_model_control:
            raise ConfigError(
                f"listen {self.listen} with model_control_mode {self.model_control_mode} lets other machines "
                "load and unload models; listen on 127.0.0.1, or also pass --allow-remote-model-control"
            )

    @property
    def model_control(self) -> bool:
        """True when the server accepts model-control calls (explicit or poll)."""
        return self.model_control_mode != "none"


class EmbeddedTriton:
    """A tritonserver child process serving one repository (embedded by default, any install with server_binary).

    Attributes:
        restarts: how many times `watch()` restarted the server after it (or one of its models' stubs) died.
        model_control_key: the key model-control calls need (None without model control); never printed.
        verified: what the manifest check found at start.
    """

    def __init__(self, options: ServerOptions | None = None, **kwargs: object) -> None:
        self.options = options if options is not None else ServerOptions(**kwargs)  # type: ignore[arg-type]
        self._process: subprocess.Popen[bytes] | None = None
        self._work_dir: tempfile.TemporaryDirectory[str] | None = None
        self._install: ServerInstall | None = None
        self._recent_restarts: collections.deque[float] = collections.deque()
        self.grpc_port = self.http_port = self.metrics_port = 0
        self.log_path: Path = Path()
        self.served_repository: Path = Path()
        self.restarts = 0
        self._stubs: set[int] = set()
        self.model_control_key: ModelControlKey | None = None
        self.verified: VerifiedRepository | None = None

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
        """Check the repository, start the server and block until it is ready.

        Raises:
            ServerError: a model file differs from its manifest, or the server exited or was not ready in time; the
                message carries the server's own reason and the log's path.
            ConfigError: the options or the environment's model-control key are invalid.
        """
        if self.is_running():
            return self
        opts = self.options
        install = resolve_install(opts.server_binary)
        repository = opts.repository.resolve()
        if opts.verify_manifests:
            self.verified = verify_repository(repository)
        self._work_dir = tempfile.TemporaryDirectory(prefix="tritonforge-serve-")
        work = Path(self._work_dir.name)
        self.served_repository = derive_repository(repository=repository, backends=install.backends, work_dir=work)
        self.grpc_port, self.http_port, self.metrics_port = _free_ports(
            opts.grpc_port, opts.http_port, opts.metrics_port, address=opts.listen
        )
        if opts.model_control:
            self.model_control_key = opts.model_control_key or ModelControlKey.from_env() or ModelControlKey.generate()
        self.log_path = (opts.log_path or _default_log_path(self.grpc_port)).resolve()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")  # a new run starts a new log; restarts append to it
        self._install = install
        _LOGGER.info("starting %s (log: %s)", install.binary, self.log_path)
        self._spawn()
        _RUNNING.add(self)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self._stubs = self._watched_stubs()
        if self.model_control_key is not None:
            model_control.register(self._addresses(), self.model_control_key)
        _LOGGER.info("tritonserver ready: grpc %s, http %s, metrics %s", self.grpc_url, self.http_url, self.metrics_url)
        return self

    def watch(self) -> None:
        """Check that the server still runs; restart it after a crash when allowed, else raise.

        Call it periodically from the thread that started the server (the kernel's parent-death signal follows that
        thread). A restart reuses the ports, the derived repository, the key and the log (a marker line separates
        the runs) and is logged with the server's last log lines.

        Raises:
            ServerError: the server died and may not be restarted (restart_on_crash off, or the budget of
                max_restarts_per_minute spent), or it did not come back; the message names its exit code or signal.
        """
        process = self._process
        if process is None:
            return
        died = self._dead_stub(process) if process.poll() is None else None
        if process.poll() is None and died is None:
            return
        if died is None:
            died = describe_exit(process.returncode)
        self._reap(process)
        tail = self.log_tail()
        now = time.monotonic()
        while self._recent_restarts and now - self._recent_restarts[0] > _RESTART_WINDOW_S:
            self._recent_restarts.popleft()
        budget = self.options.max_restarts_per_minute
        crashed = process.returncode != 0  # exit code 0: something asked it to stop (SIGTERM, SIGINT); a stub's death
        # ends in the SIGKILL of _reap
        if not crashed or not self.options.restart_on_crash or len(self._recent_restarts) >= budget:
            if not crashed:
                why = "it was stopped from outside, so it is not restarted"
            elif self.options.restart_on_crash:
                why = f"{len(self._recent_restarts)} restarts in the last minute already, the limit"
            else:
                why = "restart-on-crash is off"
            self.stop()
            raise ServerError(f"tritonserver died while serving ({died}); {why} (server log: {self.log_path})")
        self._recent_restarts.append(now)
        self.restarts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n---- tritonforge: tritonserver died ({died}); restart {self.restarts} ----\n".encode())
        self._spawn()
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self._stubs = self._watched_stubs()
        _LOGGER.warning(
            "tritonserver died (%s); restarted (%d/%d) on grpc %s, http %s, metrics %s; its last log lines:\n%s",
            died, len(self._recent_restarts), budget, self.grpc_url, self.http_url, self.metrics_url,
            "\n".join(f"    {line}" for line in tail) or "    (the log is empty)",
        )  # fmt: skip

    def stop(self, *, timeout_s: float | None = None) -> int | None:
        """Stop the server: SIGINT (drains in-flight requests), then SIGKILL to its process group past the deadline.

        Returns:
            The server's exit code, or None if it was not started.
        """
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if self.model_control_key is not None:
            model_control.unregister(self._addresses())
        code = None
        if process is not None:
            deadline_s = timeout_s if timeout_s is not None else self.options.exit_timeout_s + 10
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=deadline_s)
                except subprocess.TimeoutExpired:
                    _LOGGER.warning("tritonserver did not stop within %.0fs; killing it", deadline_s)
            code = self._reap(process)
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

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> list[str]:
        """The last `lines` non-empty lines of the server's log."""
        return [line for line in self.log_text().splitlines() if line.strip()][-lines:]

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
            f"--grpc-address={opts.listen}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={opts.listen}",
            f"--http-port={self.http_port}",
            f"--metrics-address={opts.listen}",
            f"--metrics-port={self.metrics_port}",
            f"--model-control-mode={opts.model_control_mode}",
            f"--exit-timeout-secs={opts.exit_timeout_s}",
            f"--log-verbose={opts.log_verbose}",
            "--strict-readiness=true",
        ]
        if self.model_control_key is not None:
            command += self.model_control_key.server_args()
        if install.backend_directory is not None:
            command.append(f"--backend-directory={install.backend_directory}")
        if install.embedded:
            command += ["--allow-gpu-metrics=false", "--backend-config=python,shm-default-byte-size=4194304"]
        return command + list(opts.extra_args)

    def _watched_stubs(self) -> set[int]:
        """The python-backend stubs to watch: all of them when models never unload on request, else none."""
        if self.options.model_control or self._process is None:
            return set()  # with model control a stub also ends when its model is unloaded, which is no crash
        return _live_stubs(self._process.pid)

    def _dead_stub(self, process: subprocess.Popen[bytes]) -> str | None:
        """Name a watched stub that died while the server runs, else None.

        WAR: Triton 2.51 never restarts a python-backend stub that died (a request whose dims wrap its byte size to
        0 aborts it before execute() runs): the model still reports ready and fails every later request with "Stub
        process ... is not healthy". The only cure is a restart. A stub also ends when the server shuts down, so a
        server that exits within the grace period is judged by its own exit code instead.
        """
        lost = self._stubs - _live_stubs(process.pid)
        if not lost:
            return None
        try:
            process.wait(timeout=_STUB_GRACE_S)
            return None  # the server itself is ending: its exit code says why
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return f"the python-backend stub of a model died (pid {min(lost)}), which Triton 2.51 never restarts"

    def _spawn(self) -> None:
        assert self._install is not None
        # The command holds the model-control key: never log it.
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command(self._install),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._install.environment(),
                start_new_session=True,  # its own process group: stop() takes the python stubs down with it
                preexec_fn=_stop_with_parent,
            )

    def _reap(self, process: subprocess.Popen[bytes]) -> int:
        """Kill what is left of the server's process group (python stubs) and free their shared memory."""
        regions = _shm_regions(process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
        for region in regions:  # a server that died could not unlink them; a clean stop already did
            with contextlib.suppress(OSError):
                os.unlink(region)
        return code

    def _addresses(self) -> list[str]:
        hosts = {self.options.host, self.options.listen}
        return [f"{h}:{p}" for h in hosts for p in (self.grpc_port, self.http_port)]

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.options.startup_timeout_s
        ready_url = f"{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = self._process.returncode if self._process is not None else None
                raise ServerError(self._failure_reason(f"tritonserver exited during start-up ({describe_exit(code)})"))
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


def describe_exit(code: int | None) -> str:
    """'signal 11, SIGSEGV' for a process killed by a signal, 'exit code 1' otherwise."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
        return f"signal {-code}, {name}"
    return f"exit code {code}"


def _ipv4(listen: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(listen)
    except ValueError:
        raise ConfigError(
            f"listen address {listen!r} is not an IPv4 address; use 127.0.0.1 (this machine), 0.0.0.0 "
            "(every interface) or one interface's address"
        ) from None


def _default_log_path(grpc_port: int) -> Path:
    """A log file that outlives the server: <cache>/logs/tritonserver-<UTC time>-<pid>-<port>.log; keeps the newest."""
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    old = sorted(logs.glob("tritonserver-*.log"), key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
    for stale in old[: max(0, len(old) - _KEPT_LOGS + 1)]:
        with contextlib.suppress(OSError):
            stale.unlink()
    return logs / f"tritonserver-{stamp}-{os.getpid()}-{grpc_port}.log"


def _live_stubs(pgid: int) -> set[int]:
    """Process ids of the live (not zombie) python-backend stubs in a process group (Linux /proc)."""
    stubs: set[int] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            comm, rest = (proc / "stat").read_text().rsplit(")", 1)
            fields = rest.split()
            if int(fields[2]) == pgid and fields[0] != "Z" and comm.endswith(_STUB_COMM):
                stubs.add(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    return stubs


def _shm_regions(pgid: int) -> set[str]:
    """The python backend's shared-memory files mapped by the processes of a process group (Linux /proc)."""
    regions: set[str] = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            for line in (proc / "maps").read_text().splitlines():
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith(_SHM_PREFIX):
                    regions.add(parts[5].removesuffix(" (deleted)"))
        except (OSError, IndexError, ValueError):
            continue
    return regions


def _stop_with_parent() -> None:
    """Ask Linux to send the server SIGTERM when its parent dies, even by SIGKILL, when atexit cannot run.

    The signal follows the thread that started the server: start servers from a thread that outlives them.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _first_line(text: str) -> str:
    return text.replace("\\n", "\n").strip().splitlines()[0] if text.strip() else text


def _free_ports(*requested: int, address: str = "127.0.0.1") -> tuple[int, ...]:
    """Return the requested ports, with each 0 replaced by a distinct port free on `address`."""
    sockets, ports = [], []
    try:
        for port in requested:
            if port:
                ports.append(port)
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((address, 0))
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
