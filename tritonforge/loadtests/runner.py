"""Run a headless Locust load test against Triton in a subprocess that always ends, then gate it on SLOs.

    config = LoadTestConfig(host="127.0.0.1:8001", model="digits", users=4, run_time_s=10,
                            slo=load_slo_file(Path("slo/digits.yaml"))["digits"], output_dir=Path("out"))
    result = run_loadtest(config)       # out/summary.json, out/locust_stats.csv, out/report.html, out/locust.log
    print(format_table(result)); sys.exit(0 if result.passed else 1)

Locust runs in its own process (gevent monkey-patching must never reach the caller) and its own process
group. tritonclient's gRPC under gevent has been seen to finish a run and then hang instead of exiting, even
ignoring SIGTERM; so the runner watches Locust's log for its final "Shutting down" line and a hard deadline,
and past either it sends SIGTERM, then SIGKILL, to the whole group. The run always ends within seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tritonforge.errors import ConfigError, TritonForgeError
from tritonforge.loadtests.inputs import build_inputs, save_inputs
from tritonforge.loadtests.report import LoadTestResult, read_locust_stats, write_summary
from tritonforge.loadtests.slo import SLOSpec, evaluate

__all__ = [
    "LOCUSTFILE",
    "LoadTestConfig",
    "ProcessOutcome",
    "locust_command",
    "run_loadtest",
    "run_with_deadline",
    "validate_grpc_host",
]

_LOGGER = logging.getLogger(__name__)

#: The locustfile the runner starts (tasks only; the plumbing is in triton_user.py).
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
#: Locust's last log line before it tears down; after it only exiting is left.
_SHUTDOWN_MARKER = "Shutting down (exit code"
_HOST = re.compile(r"^(?:dns:///)?(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_POLL_S = 0.2


def validate_grpc_host(host: str) -> str:
    """Check a gRPC address (`host:port`, `[v6]:port`, `dns:///host:port`; a `grpc://` prefix is dropped).

    Args:
        host: the address.

    Returns:
        The address without a `grpc://` prefix.

    Raises:
        ConfigError: the address is not host:port (an HTTP URL, no port, a path...).
    """
    address = host.strip().removeprefix("grpc://")
    match = _HOST.match(address)
    if match is None or not 0 < int(match.group(1)) < 65536:
        raise ConfigError(f"'{host}' is not a gRPC address; give host:port, e.g. 127.0.0.1:8001 (no http://, no path)")
    return address


@dataclass(frozen=True, kw_only=True)
class LoadTestConfig:
    """What to load, how hard, for how long, and what it must achieve.

    Attributes:
        host: the server's gRPC address, host:port.
        model: the model to call.
        output_dir: where the CSV, HTML, log, request and summary.json go (created if missing).
        users: concurrent Locust users, each sending one request after another.
        spawn_rate: users started per second; None starts them all in the first second.
        run_time_s: how long the load lasts, in whole seconds (Locust's resolution).
        batch_size: items per request for generated inputs; must stay 1 with a sample file.
        slo: the objectives to check; None only measures.
        sample_path: a request to send as it is (.npy or .npz); None generates random inputs from the metadata.
        model_version: the version to call; None lets the server choose.
        processes: Locust worker processes (its `--processes`; -1 = one per core); None runs one process.
        seed: seed of the generated inputs.
        request_timeout_s: deadline of one inference call; a slower call counts as a failure.
        ready_timeout_s: how long to wait for the model to be ready before the run.
        stop_timeout_s: grace Locust gives in-flight requests at the end of the run.
        exit_grace_s: how long Locust may take to exit after its final log line before it is killed.
        startup_allowance_s: time allowed for Locust to start, on top of run and stop time, before it is killed.
    """

    host: str
    model: str
    output_dir: Path
    users: int = 4
    spawn_rate: float | None = None
    run_time_s: int = 10
    batch_size: int = 1
    slo: SLOSpec | None = None
    sample_path: Path | None = None
    model_version: str | None = None
    processes: int | None = None
    seed: int = 0
    request_timeout_s: float = 10.0
    ready_timeout_s: float = 30.0
    stop_timeout_s: int = 2
    exit_grace_s: float = 5.0
    startup_allowance_s: float = 15.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", validate_grpc_host(self.host))
        if not self.model:
            raise ConfigError("the model name is empty; pass the name the server serves, e.g. --model digits")
        _at_least("users", self.users, 1)
        _at_least("run_time_s", self.run_time_s, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("stop_timeout_s", self.stop_timeout_s, 0)
        for name in ("request_timeout_s", "ready_timeout_s", "exit_grace_s", "startup_allowance_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be above 0, got {getattr(self, name)!r}")
        if self.spawn_rate is not None and not self.spawn_rate > 0:
            raise ConfigError(f"spawn_rate must be above 0 users/s, got {self.spawn_rate!r}")
        if self.processes is not None and self.processes != -1 and self.processes < 1:
            raise ConfigError(f"processes must be -1 (one per core) or at least 1, got {self.processes!r}")
        if self.sample_path is not None and self.batch_size != 1:
            raise ConfigError("batch_size applies to generated inputs; a --sample file is sent as it is, drop one")

    @property
    def deadline_s(self) -> float:
        """Longest Locust may live: start-up allowance + run time + in-flight grace + exit grace."""
        return self.startup_allowance_s + self.run_time_s + self.stop_timeout_s + self.exit_grace_s


@dataclass(frozen=True, kw_only=True)
class ProcessOutcome:
    """How a supervised process ended.

    Attributes:
        returncode: its exit status (negative: the signal that killed it).
        killed: True when it did not exit by itself and was terminated.
        wall_s: seconds from start to exit.
        cpu_percent: its average CPU use (its children's included), 100 = one core; None if unknown.
    """

    returncode: int
    killed: bool
    wall_s: float
    cpu_percent: float | None


def run_loadtest(config: LoadTestConfig) -> LoadTestResult:
    """Load a model with Locust, write the reports and summary.json, and check the SLO.

    The model is checked (ready, inputs buildable) before Locust starts, so a wrong name or a server that is
    down fails at once with a clear error instead of a run of failures. The request is saved to
    `<output_dir>/request.npz` and every Locust user sends it.

    Args:
        config: the test.

    Returns:
        The result; `result.passed` says whether every objective was met. Missing an SLO is not an exception
        here, so that callers get the numbers either way (the CLI turns it into exit code 1).

    Raises:
        ConfigError: bad inputs (sample file, batch size) for this model.
        ClientError: the server or the model is not there (ServerUnavailableError, ModelNotReadyError).
        TritonForgeError: Locust ended without writing its statistics (its log is named in the message).
    """
    out = config.output_dir.resolve()  # Locust runs with cwd=out: every path it gets must be absolute
    files = _fresh_output_dir(out)
    _prepare_request(config, files["inputs"])
    command = locust_command(config, csv_prefix=out / "locust", html_path=files["html"], request_path=files["inputs"])
    started_at = _now()
    _LOGGER.info("load-testing %s at %s: %d users for %d s", config.model, config.host, config.users, config.run_time_s)
    outcome = run_with_deadline(
        command, log_path=files["log"], deadline_s=config.deadline_s, exit_grace_s=config.exit_grace_s, cwd=out
    )
    ended_at = _now()
    if outcome.killed:
        _LOGGER.warning("Locust did not exit by itself; killed it after %.1f s (log: %s)", outcome.wall_s, files["log"])
    try:
        measurement = read_locust_stats(files["stats_csv"], name=config.model)
    except TritonForgeError as exc:
        last = _last_line(files["log"])
        raise TritonForgeError(f"{exc}; Locust exit code {outcome.returncode}, last log line: {last}") from exc
    result = LoadTestResult(
        model=config.model,
        host=config.host,
        users=config.users,
        spawn_rate=_spawn_rate(config),
        run_time_s=config.run_time_s,
        batch_size=config.batch_size,
        measurement=measurement,
        checks=tuple(evaluate(config.slo, measurement)) if config.slo is not None else (),
        locust_version=importlib.metadata.version("locust"),
        locust_exit_code=outcome.returncode,
        locust_killed=outcome.killed,
        generator_cpu_percent=outcome.cpu_percent,
        started_at=started_at,
        ended_at=ended_at,
        wall_s=round(outcome.wall_s, 3),
        files={role: str(path) for role, path in files.items()},
    )
    write_summary(result, out / "summary.json")
    return result


def locust_command(config: LoadTestConfig, *, csv_prefix: Path, html_path: Path, request_path: Path) -> list[str]:
    """The headless Locust command line for `config` (run with the current interpreter).

    Args:
        config: the test.
        csv_prefix: Locust's `--csv` prefix.
        html_path: where Locust writes its HTML report.
        request_path: the .npz request every user sends.

    Returns:
        The argument list.
    """
    command = [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--headless", "--only-summary",
        "--host", config.host,
        "--users", str(config.users),
        "--spawn-rate", f"{_spawn_rate(config):g}",
        "--run-time", f"{config.run_time_s}s",
        "--stop-timeout", str(config.stop_timeout_s),
        "--csv", str(csv_prefix),
        "--html", str(html_path),
        # Failed requests are judged by the SLO's error ratio, not by Locust's exit code.
        "--exit-code-on-error", "0",
        "--triton-model", config.model,
        "--triton-sample", str(request_path),
        "--triton-timeout-s", f"{config.request_timeout_s:g}",
    ]  # fmt: skip
    if config.model_version is not None:
        command += ["--triton-model-version", config.model_version]
    if config.processes is not None:
        command += ["--processes", str(config.processes)]
    return command


def run_with_deadline(
    command: Sequence[str],
    *,
    log_path: Path,
    deadline_s: float,
    exit_grace_s: float = 5.0,
    term_grace_s: float = 3.0,
    done_marker: str = _SHUTDOWN_MARKER,
    cwd: Path | None = None,
) -> ProcessOutcome:
    """Run a command in its own process group, its output to `log_path`, and make sure it ends.

    The process is terminated when it outlives `deadline_s`, or `exit_grace_s` after `done_marker` appears in
    its output (it has said it is done but has not exited). Termination is SIGTERM to the group, then SIGKILL
    after `term_grace_s`, so a process that ignores SIGTERM, or its children, cannot linger.

    Args:
        command: the program and its arguments.
        log_path: file that receives stdout and stderr.
        deadline_s: the longest the process may run.
        exit_grace_s: how long the process may take to exit once `done_marker` was logged.
        term_grace_s: time between SIGTERM and SIGKILL.
        done_marker: text the process logs when only exiting is left.
        cwd: working directory.

    Returns:
        How it ended.
    """
    start = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    cpu = _CpuMeter(process.pid)
    watcher = _LogWatcher(log_path, done_marker)
    deadline = start + deadline_s
    marker_seen = False
    killed = False
    while process.poll() is None:
        now = time.monotonic()
        cpu.sample()
        if not marker_seen and watcher.seen():
            marker_seen = True
            deadline = min(deadline, now + exit_grace_s)
        if now >= deadline:
            _LOGGER.warning("pid %d still running %.1f s after start; terminating its group", process.pid, now - start)
            _terminate_group(process, term_grace_s=term_grace_s)
            _kill_stragglers(process.pid)
            killed = True
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_POLL_S)
    wall_s = time.monotonic() - start
    return ProcessOutcome(returncode=process.wait(), killed=killed, wall_s=wall_s, cpu_percent=cpu.percent())


def _terminate_group(process: subprocess.Popen[bytes], *, term_grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=term_grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_stragglers(pgid: int) -> None:
    """Kill whatever is left in the group (workers of `--processes` whose parent died first)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _CpuMeter:
    """Samples the CPU time of a process tree while it runs.

    Each process keeps its last sample, so workers that exit before the main process (Locust's `--processes`)
    still count.
    """

    def __init__(self, pid: int) -> None:
        import psutil  # a dependency of Locust itself

        self._root: psutil.Process | None = None
        with contextlib.suppress(psutil.Error):  # it may have exited already
            self._root = psutil.Process(pid)
        self._start = time.monotonic()
        self._cpu_s: dict[int, float] = {}
        self._sampled_at = self._start

    def sample(self) -> None:
        import psutil

        now = time.monotonic()
        if self._root is None or now - self._sampled_at < 0.5:
            return
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:  # the root exited between two calls
            return
        for process in tree:
            with contextlib.suppress(psutil.Error):
                self._cpu_s[process.pid] = sum(process.cpu_times()[:2])
        self._sampled_at = now

    def percent(self) -> float | None:
        elapsed = self._sampled_at - self._start
        return round(100.0 * sum(self._cpu_s.values()) / elapsed, 1) if elapsed > 0 else None


class _LogWatcher:
    """Looks for a marker in a growing log file, reading only what was appended since the last look."""

    def __init__(self, path: Path, marker: str) -> None:
        self._path = path
        self._marker = marker.encode()
        self._offset = 0
        self._tail = b""

    def seen(self) -> bool:
        try:
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return False
        self._offset += len(chunk)
        window = self._tail + chunk
        self._tail = window[-len(self._marker) :]
        return self._marker in window


def _prepare_request(config: LoadTestConfig, path: Path) -> None:
    """Check the model is served and build the request once, here, where errors reach the caller."""
    from tritonforge.client import TritonClient

    with TritonClient(config.host, timeout_s=config.request_timeout_s) as client:
        client.wait_until_ready(config.model, timeout_s=config.ready_timeout_s)
        tensors = client.model_inputs(config.model, config.model_version)
        max_batch_size = client.max_batch_size(config.model, config.model_version)
    inputs = build_inputs(
        tensors,
        max_batch_size=max_batch_size,
        batch_size=config.batch_size,
        seed=config.seed,
        sample_path=config.sample_path,
    )
    save_inputs(path, inputs)


def _fresh_output_dir(out: Path) -> dict[str, Path]:
    """Create `out` and empty it of an earlier run's files, returning this run's file paths by role.

    A failed run must never be read as a fresh one from the files a previous run left.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "stats_csv": out / "locust_stats.csv",
        "html": out / "report.html",
        "log": out / "locust.log",
        "inputs": out / "request.npz",
    }
    for path in [*files.values(), out / "summary.json", *out.glob("locust_*.csv")]:
        path.unlink(missing_ok=True)
    return files


def _spawn_rate(config: LoadTestConfig) -> float:
    return config.spawn_rate if config.spawn_rate is not None else float(config.users)


def _at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}, got {value!r}")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
