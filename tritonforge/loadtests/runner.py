"""Run a headless Locust load test against Triton in a subprocess that always ends, then gate it on SLOs.

    config = LoadTestConfig(host="127.0.0.1:8001", model="digits", users=4, run_time_s=10,
                            slo=load_slo_file(Path("slo/digits.yaml"))["digits"], output_dir=Path("out"))
    result = run_loadtest(config)       # out/summary.json, out/locust_stats.csv, out/report.html, out/locust.log
    print(format_table(result)); sys.exit(0 if result.passed else 1)
    # open loop: 200 requests/s on a Poisson schedule, latency measured from each request's scheduled start
    result = run_loadtest(LoadTestConfig(..., arrival="poisson", rate_rps=200, users=16))

Two loads: a closed loop (fixed users, each sending as soon as its last answer came: load = users x speed) and
an open loop (requests start on a constant or Poisson schedule whatever the answers; a slow server cannot slow
the load down, so its stalls show in the latency instead of hiding: no coordinated omission). In the open loop
the `users` are the in-flight bound: each of them follows its own schedule at rate/users (Poisson streams add up
to a Poisson stream), and a request that could not start on time because its user was still busy is counted as
late and its latency still runs from the schedule, as wrk2 does.

A warm-up (`warmup_s`, open loop only) comes before the measured part: the users are started evenly over it, so
the rate ramps up to its target while the channels connect and the server warms, and when the last user has
started Locust resets its statistics (its `--reset-stats`). The run then lasts warmup_s + run_time_s and its
requests, rate and percentiles are those of the run_time_s after the warm-up only (the steady state); the
late-start tally and the server's counters still cover the whole run.

A run never deletes an earlier run's results silently: an output folder that already holds a run (summary.json
or Locust's CSV) is refused with a ConfigError unless `overwrite` is set, and only then are its files replaced.
Around the run the runner reads the server's statistics (server_stats.py) and samples each Locust process's CPU,
so a result says where the time went and whether the generator, not the server, was the limit.

Locust runs in its own process (gevent monkey-patching must never reach the caller) and its own process
group. tritonclient's gRPC under gevent has been seen to finish a run and then hang instead of exiting, even
ignoring SIGTERM; so the runner watches Locust's log for its final "Shutting down" line and a hard deadline,
and past either it sends SIGTERM, then SIGKILL, to the whole group. The run always ends within seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tritonforge.errors import ConfigError, ServerError, TritonForgeError
from tritonforge.loadtests.arrivals import ARRIVALS, Arrival
from tritonforge.loadtests.inputs import build_inputs, save_inputs
from tritonforge.loadtests.report import (
    GeneratorLoad,
    LateRequests,
    LoadTestResult,
    ProcessLoad,
    generator_load,
    machine_info,
    read_late_requests,
    read_locust_stats,
    tool_versions,
    write_summary,
)
from tritonforge.loadtests.server_stats import ServerBreakdown, ServerSnapshot, server_breakdown, take_snapshot
from tritonforge.loadtests.slo import Measurement, SLOSpec, evaluate

__all__ = [
    "LOCAL_SAMPLE_ENV",
    "LOCUSTFILE",
    "LoadTestConfig",
    "ProcessOutcome",
    "locust_command",
    "locust_worker_command",
    "run_loadtest",
    "run_locust_worker",
    "run_with_deadline",
    "validate_grpc_host",
]

#: Names a request file on a worker's own machine; preferred over the master's path, which workers also receive.
LOCAL_SAMPLE_ENV = "TRITONFORGE_LOADTEST_LOCAL_SAMPLE"
#: Locust's log line when the load starts; from then to the end marker each process's CPU counts.
_LOAD_START_MARKER = "Ramping to"
_LOAD_END_MARKER = "limit reached"
_OPEN_LOOP_SPAWN_RATE = 100.0

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
        spawn_rate: users started per second; None starts them all in the first second (in the open loop, within
            a tenth of a second for up to 100 users, so the rate holds from the start).
        run_time_s: how long the load is measured, in whole seconds (Locust's resolution), after the warm-up.
        warmup_s: an untimed warm-up before the measured part, in whole seconds (open loop only; 0: none): the
            users start evenly over it and Locust's statistics are reset once all have started.
        overwrite: replace the results of an earlier run in `output_dir` (otherwise such a folder is refused).
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
        arrival: "constant" or "poisson" runs an open loop at `rate_rps` (users are then the in-flight bound);
            None runs the closed loop. Setting only `rate_rps` means "poisson".
        rate_rps: the target arrival rate of the open loop, in requests per second, over all users and processes.
        late_threshold_ms: how far behind its schedule an open-loop request may start before it counts as late.
        pace_rps: a closed loop paced to this many requests/s over all users (Locust's constant-throughput wait):
            each user waits for its answer, skips the slots it missed and times from the actual send, so a stall
            sends less and hides itself (coordinated omission). For comparison with the open loop; None: no pacing.
        metrics_url: Triton's Prometheus endpoint, read as a cross-check of the statistics API; None skips it.
        server_stats: read Triton's statistics around the run for the server breakdown.
        plot: draw the run's history as a PNG (plots.plot_run_history).
        expect_workers: run as the master of a distributed run and wait for this many workers (each started with
            `master_host` pointing here); None runs Locust locally.
        master_bind_host / master_bind_port: where the master listens for workers.
        master_host / master_port: run as a worker of the master at this address (see run_locust_worker).
        workers_wait_s: how long a master waits for its workers, or a worker for its master's run to end.
    """

    host: str
    model: str
    output_dir: Path
    users: int = 4
    spawn_rate: float | None = None
    run_time_s: int = 10
    warmup_s: int = 0
    overwrite: bool = False
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
    arrival: Arrival | None = None
    rate_rps: float | None = None
    late_threshold_ms: float = 2.0
    pace_rps: float | None = None
    metrics_url: str | None = None
    server_stats: bool = True
    plot: bool = True
    expect_workers: int | None = None
    master_bind_host: str = "*"
    master_bind_port: int = 5557
    master_host: str | None = None
    master_port: int = 5557
    workers_wait_s: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", validate_grpc_host(self.host))
        if not self.model:
            raise ConfigError("the model name is empty; pass the name the server serves, e.g. --model digits")
        _at_least("users", self.users, 1)
        _at_least("run_time_s", self.run_time_s, 1)
        _at_least("warmup_s", self.warmup_s, 0)
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
        self._check_open_loop()
        self._check_warmup()
        self._check_distributed()

    def _check_warmup(self) -> None:
        if self.warmup_s == 0:
            return
        if not self.open_loop:
            raise ConfigError(
                f"warmup_s ({self.warmup_s}) applies to the open loop only; add a rate (--rate) or drop the warm-up"
            )
        if self.spawn_rate is not None:
            raise ConfigError("warmup_s sets the spawn rate (users over the warm-up); drop spawn_rate (--spawn-rate)")

    def _check_open_loop(self) -> None:
        if self.pace_rps is not None:
            if self.rate_rps is not None or self.arrival is not None:
                raise ConfigError(
                    "pace_rps paces a closed loop; it cannot be combined with an open loop's rate/arrival"
                )
            if not (math.isfinite(self.pace_rps) and self.pace_rps > 0):
                raise ConfigError(f"pace_rps must be a finite number above 0 requests/s, got {self.pace_rps!r}")
        if self.rate_rps is not None and self.arrival is None:
            object.__setattr__(self, "arrival", "poisson")
        if self.arrival is None:
            return
        if self.arrival not in ARRIVALS:
            raise ConfigError(f"arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if self.rate_rps is None:
            raise ConfigError(f"an arrival schedule ({self.arrival}) needs a rate: pass --rate REQUESTS_PER_SECOND")
        if isinstance(self.rate_rps, bool) or not (math.isfinite(self.rate_rps) and self.rate_rps > 0):
            raise ConfigError(f"rate_rps must be a finite number above 0 requests/s, got {self.rate_rps!r}")
        if not (math.isfinite(self.late_threshold_ms) and self.late_threshold_ms >= 0):
            raise ConfigError(f"late_threshold_ms must be 0 or more, got {self.late_threshold_ms!r}")

    def _check_distributed(self) -> None:
        if self.expect_workers is not None and self.master_host is not None:
            raise ConfigError("a run is either the master (--expect-workers) or a worker (--master-host), not both")
        if self.expect_workers is not None:
            _at_least("expect_workers", self.expect_workers, 1)
        for name in ("master_bind_port", "master_port"):
            port = getattr(self, name)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"{name} must be a TCP port between 1 and 65535, got {port!r}")
        if self.master_host is not None and not self.master_host.strip():
            raise ConfigError("master_host is empty; pass the master's address, e.g. --master-host 10.0.0.5")
        if not self.workers_wait_s > 0:
            raise ConfigError(f"workers_wait_s must be above 0, got {self.workers_wait_s!r}")

    @property
    def deadline_s(self) -> float:
        """Longest Locust may live: start-up allowance + run time + in-flight grace + exit grace (+ workers' wait)."""
        wait = self.workers_wait_s if self.expect_workers is not None else 0.0
        return self.startup_allowance_s + self.locust_run_time_s + self.stop_timeout_s + self.exit_grace_s + wait

    @property
    def locust_run_time_s(self) -> int:
        """Locust's `--run-time`: the warm-up plus the measured part."""
        return self.warmup_s + self.run_time_s

    @property
    def open_loop(self) -> bool:
        """True when requests follow an arrival schedule (rate_rps) rather than the users' speed."""
        return self.arrival is not None


@dataclass(frozen=True, kw_only=True)
class ProcessOutcome:
    """How a supervised process ended.

    Attributes:
        returncode: its exit status (negative: the signal that killed it).
        killed: True when it did not exit by itself and was terminated.
        wall_s: seconds from start to exit.
        cpu_percent: its average CPU use (its children's included), 100 = one core; None if unknown.
        pid: its process id.
        process_cpu: mean CPU use of it and each of its children (by pid, in the order first seen) while the load
            ran: between the log's load-start and load-end markers when both were seen, else over its life.
    """

    returncode: int
    killed: bool
    wall_s: float
    cpu_percent: float | None
    pid: int = 0
    process_cpu: Mapping[int, float] = field(default_factory=dict)


def run_loadtest(config: LoadTestConfig) -> LoadTestResult:
    """Load a model with Locust, write the reports and summary.json, and check the SLO.

    The model is checked (ready, inputs buildable) before Locust starts, so a wrong name or a server that is
    down fails at once with a clear error instead of a run of failures. The request is saved to
    `<output_dir>/request.npz` and every Locust user sends it. The server's statistics are read just before
    and just after Locust runs (server breakdown); a server that refuses them only loses the breakdown.

    Args:
        config: the test (a worker's config goes to `run_locust_worker` instead).

    Returns:
        The result; `result.passed` says whether every objective was met. Missing an SLO is not an exception
        here, so that callers get the numbers either way (the CLI turns it into exit code 1).

    Raises:
        ConfigError: bad inputs (sample file, batch size) for this model, or a worker's config.
        ClientError: the server or the model is not there (ServerUnavailableError, ModelNotReadyError).
        TritonForgeError: Locust ended without writing its statistics (its log is named in the message).
    """
    if config.master_host is not None:
        raise ConfigError("this config runs a worker (master_host is set); call run_locust_worker, not run_loadtest")
    out = config.output_dir.resolve()  # Locust runs with cwd=out: every path it gets must be absolute
    files = _fresh_output_dir(out, overwrite=config.overwrite)
    _prepare_request(config, files["inputs"])
    command = locust_command(config, csv_prefix=out / "locust", html_path=files["html"], request_path=files["inputs"])
    before = _snapshot(config)
    started_at = _now()
    _LOGGER.info(
        "load-testing %s at %s: %s for %d s", config.model, config.host, _describe_load(config), config.run_time_s
    )
    outcome = run_with_deadline(
        command, log_path=files["log"], deadline_s=config.deadline_s, exit_grace_s=config.exit_grace_s, cwd=out
    )
    ended_at = _now()
    if outcome.killed:
        _LOGGER.warning("Locust did not exit by itself; killed it after %.1f s (log: %s)", outcome.wall_s, files["log"])
    try:
        measurement = read_locust_stats(files["stats_csv"], name=config.model)
        late = read_late_requests(files["late"]) if config.open_loop else None
    except TritonForgeError as exc:
        last = _last_line(files["log"])
        raise TritonForgeError(f"{exc}; Locust exit code {outcome.returncode}, last log line: {last}") from exc
    server = _breakdown(config, before, _whole_run(measurement, late, warmup_s=config.warmup_s))
    generator = _generator_load(outcome, distributed=config.processes is not None or config.expect_workers is not None)
    if generator.saturated:
        _LOGGER.warning("%s", generator.advice)
    result = LoadTestResult(
        model=config.model,
        host=config.host,
        users=config.users,
        spawn_rate=_spawn_rate(config),
        run_time_s=config.run_time_s,
        warmup_s=config.warmup_s,
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
        files=_existing(files),
        arrival=config.arrival,
        rate_rps=config.rate_rps,
        late=late,
        server=server,
        generator=generator,
        machine=machine_info(),
        versions=_versions(before),
    )
    if config.plot:
        result = _with_plot(result, files, title=f"{config.model} @ {config.host}: {_describe_load(config)}")
    write_summary(result, out / "summary.json")
    return result


def run_locust_worker(config: LoadTestConfig) -> ProcessOutcome:
    """Run Locust as a worker of the master at `config.master_host` (a multi-machine run) until the master ends.

    The worker prepares its own copy of the request (the master's path means nothing on this machine) and
    loads `config.host` as the master tells it; the master collects the statistics and writes every report.

    Args:
        config: the test; `master_host` must be set.

    Returns:
        How the worker process ended.

    Raises:
        ConfigError: `master_host` is not set.
        ClientError: the server or the model is not there.
    """
    if config.master_host is None:
        raise ConfigError("run_locust_worker needs master_host (the --master-host of the Locust master)")
    out = config.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    request = out / "request.npz"
    _prepare_request(config, request)
    log = out / "locust_worker.log"
    deadline = config.workers_wait_s + config.deadline_s
    _LOGGER.info("Locust worker for %s:%d (log: %s)", config.master_host, config.master_port, log)
    env = {**os.environ, LOCAL_SAMPLE_ENV: str(request)}
    return run_with_deadline(
        locust_worker_command(config, request_path=request),
        log_path=log,
        deadline_s=deadline,
        exit_grace_s=config.exit_grace_s,
        cwd=out,
        env=env,
    )


def locust_command(config: LoadTestConfig, *, csv_prefix: Path, html_path: Path, request_path: Path) -> list[str]:
    """The headless Locust command line for `config` (run with the current interpreter).

    Args:
        config: the test.
        csv_prefix: Locust's `--csv` prefix (with `--csv-full-history`, `<prefix>_stats_history.csv` too).
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
        "--run-time", f"{config.locust_run_time_s}s",
        "--stop-timeout", str(config.stop_timeout_s),
        "--csv", str(csv_prefix),
        "--csv-full-history",
        "--html", str(html_path),
        # Failed requests are judged by the SLO's error ratio, not by Locust's exit code.
        "--exit-code-on-error", "0",
        *_triton_options(config, request_path),
    ]  # fmt: skip
    if config.warmup_s > 0:
        command.append("--reset-stats")
    if config.processes is not None:
        command += ["--processes", str(config.processes)]
    if config.expect_workers is not None:
        command += [
            "--master",
            "--expect-workers", str(config.expect_workers),
            "--expect-workers-max-wait", f"{config.workers_wait_s:g}",
            "--master-bind-host", config.master_bind_host,
            "--master-bind-port", str(config.master_bind_port),
        ]  # fmt: skip
    return command


def locust_worker_command(config: LoadTestConfig, *, request_path: Path) -> list[str]:
    """The Locust command line of a worker that joins the master at `config.master_host`.

    The master sends its users, run time, host and `--triton-*` options; the worker only needs the locustfile,
    the master's address and (for its first start) the same Triton options.

    Args:
        config: the test; `master_host` must be set.
        request_path: this machine's copy of the request.

    Returns:
        The argument list.

    Raises:
        ConfigError: `master_host` is not set.
    """
    if config.master_host is None:
        raise ConfigError("a worker needs the master's address: pass --master-host")
    command = [
        sys.executable, "-m", "locust",
        "-f", str(LOCUSTFILE),
        "--worker",
        "--master-host", config.master_host,
        "--master-port", str(config.master_port),
        *_triton_options(config, request_path),
    ]  # fmt: skip
    if config.processes is not None:
        command += ["--processes", str(config.processes)]
    return command


def _triton_options(config: LoadTestConfig, request_path: Path) -> list[str]:
    options = [
        "--triton-model", config.model,
        "--triton-sample", str(request_path),
        "--triton-timeout-s", f"{config.request_timeout_s:g}",
    ]  # fmt: skip
    if config.model_version is not None:
        options += ["--triton-model-version", config.model_version]
    if config.pace_rps is not None:
        options += ["--triton-pace-rps", repr(float(config.pace_rps)), "--triton-total-users", str(config.users)]
    if config.arrival is not None and config.rate_rps is not None:
        options += [
            "--triton-arrival", config.arrival,
            "--triton-rate", repr(float(config.rate_rps)),
            "--triton-total-users", str(config.users),
            "--triton-late-threshold-ms", f"{config.late_threshold_ms:g}",
            "--triton-seed", str(config.seed),
        ]  # fmt: skip
    return options


def run_with_deadline(
    command: Sequence[str],
    *,
    log_path: Path,
    deadline_s: float,
    exit_grace_s: float = 5.0,
    term_grace_s: float = 3.0,
    done_marker: str = _SHUTDOWN_MARKER,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessOutcome:
    """Run a command in its own process group, its output to `log_path`, and make sure it ends.

    The process is terminated when it outlives `deadline_s`, or `exit_grace_s` after `done_marker` appears in
    its output (it has said it is done but has not exited). Termination is SIGTERM to the group, then SIGKILL
    after `term_grace_s`, so a process that ignores SIGTERM, or its children, cannot linger. Meanwhile the CPU
    time of the process and each child is sampled, and the log's load-start and load-end lines (Locust's
    "Ramping to" and "limit reached") mark the window in which each one's CPU use is measured.

    Args:
        command: the program and its arguments.
        log_path: file that receives stdout and stderr.
        deadline_s: the longest the process may run.
        exit_grace_s: how long the process may take to exit once `done_marker` was logged.
        term_grace_s: time between SIGTERM and SIGKILL.
        done_marker: text the process logs when only exiting is left.
        cwd: working directory.
        env: its environment (default: this process's).

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
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    cpu = _CpuMeter(process.pid)
    watcher = _LogWatcher(log_path, (done_marker, _LOAD_START_MARKER, _LOAD_END_MARKER))
    deadline = start + deadline_s
    marker_seen = False
    killed = False
    while process.poll() is None:
        now = time.monotonic()
        cpu.sample()
        seen = watcher.seen()
        if _LOAD_START_MARKER in seen:
            cpu.mark_start()
        if _LOAD_END_MARKER in seen:
            cpu.mark_end()
        if not marker_seen and done_marker in seen:
            marker_seen = True
            cpu.mark_end()
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
    return ProcessOutcome(
        returncode=process.wait(),
        killed=killed,
        wall_s=wall_s,
        cpu_percent=cpu.percent(),
        pid=process.pid,
        process_cpu=cpu.per_process(),
    )


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
    """Samples the CPU time of a process tree while it runs, per process.

    Each process keeps its samples, so workers that exit before the main process (Locust's `--processes`)
    still count. `mark_start`/`mark_end` bound the window in which each process's mean CPU use is measured
    (the load itself, without Locust's start-up imports and its exit).
    """

    _INTERVAL_S = 0.5

    def __init__(self, pid: int) -> None:
        import psutil  # a dependency of Locust itself

        self._root: psutil.Process | None = None
        with contextlib.suppress(psutil.Error):  # it may have exited already
            self._root = psutil.Process(pid)
        self._start = time.monotonic()
        self._sampled_at = self._start
        self._samples: dict[int, list[tuple[float, float]]] = {}
        self._window: list[float | None] = [None, None]

    def sample(self, *, force: bool = False) -> None:
        import psutil

        now = time.monotonic()
        if self._root is None or (not force and now - self._sampled_at < self._INTERVAL_S):
            return
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:  # the root exited between two calls
            return
        for process in tree:
            with contextlib.suppress(psutil.Error):
                self._samples.setdefault(process.pid, []).append((now, sum(process.cpu_times()[:2])))
        self._sampled_at = now

    def mark_start(self) -> None:
        if self._window[0] is None:
            self.sample(force=True)
            self._window[0] = self._sampled_at

    def mark_end(self) -> None:
        if self._window[0] is not None and self._window[1] is None:
            self.sample(force=True)
            self._window[1] = self._sampled_at

    def percent(self) -> float | None:
        elapsed = self._sampled_at - self._start
        total = sum(samples[-1][1] for samples in self._samples.values())
        return round(100.0 * total / elapsed, 1) if elapsed > 0 else None

    def per_process(self) -> dict[int, float]:
        begin, end = self._window
        loads = {}
        for pid, samples in self._samples.items():
            inside = [s for s in samples if (begin is None or s[0] >= begin) and (end is None or s[0] <= end)]
            if begin is None or len(inside) < 2:
                inside = samples  # no window (or too short a life in it): the whole life, from its first sample
            if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
                seconds = inside[-1][0] - inside[0][0]
                loads[pid] = round(100.0 * (inside[-1][1] - inside[0][1]) / seconds, 1)
        return loads


class _LogWatcher:
    """Looks for markers in a growing log file, reading only what was appended since the last look."""

    def __init__(self, path: Path, markers: Sequence[str]) -> None:
        self._path = path
        self._markers = [marker.encode() for marker in markers]
        self._keep = max(len(marker) for marker in self._markers)
        self._offset = 0
        self._tail = b""
        self._seen: set[str] = set()

    def seen(self) -> set[str]:
        """The markers seen so far."""
        try:
            with self._path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return set(self._seen)
        self._offset += len(chunk)
        window = self._tail + chunk
        self._tail = window[-self._keep :]
        self._seen.update(marker.decode() for marker in self._markers if marker in window)
        return set(self._seen)


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


def _fresh_output_dir(out: Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Create `out` and return this run's file paths by role; an earlier run's files there need `overwrite`.

    With `overwrite` the earlier run's files are removed first: a failed run must never be read as a fresh one
    from the files a previous run left. Without it, a folder that holds a run is refused (nothing is deleted).

    Raises:
        ConfigError: `out` holds an earlier run and `overwrite` is not set.
    """
    earlier = _earlier_run(out)
    if earlier is not None and not overwrite:
        raise ConfigError(
            f"{out} already holds a load-test run ({earlier.name}); pass --overwrite to replace it, or another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "stats_csv": out / "locust_stats.csv",
        "history_csv": out / "locust_stats_history.csv",
        "html": out / "report.html",
        "log": out / "locust.log",
        "inputs": out / "request.npz",
        "late": out / "locust_late.json",
        "plot": out / "history.png",
    }
    for path in [*files.values(), out / "summary.json", *out.glob("locust_*.csv")]:
        path.unlink(missing_ok=True)
    return files


def _earlier_run(out: Path) -> Path | None:
    """The first file of an earlier run in `out` (its summary or Locust's CSV), or None."""
    if not out.is_dir():
        return None
    found = [out / "summary.json", *sorted(out.glob("locust_*.csv")), out / "locust_late.json"]
    return next((path for path in found if path.is_file()), None)


def _whole_run(measurement: Measurement, late: LateRequests | None, *, warmup_s: int) -> Measurement:
    """The client's figures to set beside the server's counters, which cover the whole run, warm-up included.

    After a warm-up Locust's statistics hold only the measured part, so the request count compared with the
    server's is every request sent (the late-start tally is never reset); without a warm-up it is Locust's count.
    """
    if warmup_s == 0 or late is None:
        return measurement
    return dataclasses.replace(measurement, requests=late.sent)


def _existing(files: Mapping[str, Path]) -> dict[str, str]:
    return {role: str(path) for role, path in files.items() if path.exists()}


def _describe_load(config: LoadTestConfig) -> str:
    if config.open_loop:
        warmup = f" after a {config.warmup_s} s warm-up" if config.warmup_s else ""
        return f"{config.arrival} arrivals at {config.rate_rps:g} req/s, at most {config.users} in flight{warmup}"
    if config.pace_rps is not None:
        return f"{config.users} users paced to {config.pace_rps:g} req/s (closed loop)"
    return f"{config.users} users (closed loop)"


def _snapshot(config: LoadTestConfig) -> ServerSnapshot | None:
    if not config.server_stats:
        return None
    try:
        return take_snapshot(config.host, metrics_url=config.metrics_url, timeout_s=config.request_timeout_s)
    except ServerError as exc:
        _LOGGER.warning("no server breakdown: %s", exc)
        return None


def _breakdown(config: LoadTestConfig, before: ServerSnapshot | None, measured: Measurement) -> ServerBreakdown | None:
    if before is None:
        return None
    after = _snapshot(config)
    if after is None:
        return None
    breakdown = server_breakdown(before, after, model=config.model, client=measured, in_flight=config.users)
    if not breakdown.count_check.agree:
        c = breakdown.count_check
        _LOGGER.warning(
            "the server finished %d requests for %s but the client recorded %d: another client loaded it, or "
            "requests were lost between them",
            c.server_requests,
            config.model,
            c.client_requests,
        )
    return breakdown


def _generator_load(outcome: ProcessOutcome, *, distributed: bool) -> GeneratorLoad:
    loads = []
    for index, (pid, percent) in enumerate(outcome.process_cpu.items()):
        if pid == outcome.pid:
            role = "master" if distributed else "locust"
        else:
            role = f"worker-{index}"
        loads.append(ProcessLoad(role=role, pid=pid, cpu_percent=percent))
    return generator_load(loads, total_percent=outcome.cpu_percent)


def _versions(snapshot: ServerSnapshot | None) -> dict[str, str]:
    server = snapshot.server_version if snapshot is not None and snapshot.server_version else "unknown"
    return {**tool_versions(), "triton_server": server}


def _with_plot(result: LoadTestResult, files: Mapping[str, Path], *, title: str) -> LoadTestResult:
    """Draw the run's history (Locust's full-history CSV) as a PNG; a plot that fails costs only the plot."""
    history = files["history_csv"]
    if not history.is_file():
        return result
    try:
        from tritonforge.loadtests.plots import plot_run_history

        path = plot_run_history(history, files["plot"], title=title)
    except Exception as exc:  # noqa: BLE001 (a report must not be lost to its picture)
        _LOGGER.warning("no history plot: %s", exc)
        return result
    return dataclasses.replace(result, files={**result.files, "plot": str(path)})


def _spawn_rate(config: LoadTestConfig) -> float:
    if config.spawn_rate is not None:
        return config.spawn_rate
    if config.warmup_s > 0:  # the users start evenly over the warm-up: the rate ramps up to its target
        return config.users / config.warmup_s
    # The open loop's rate should hold from the start: its users start within a fraction of a second.
    return max(_OPEN_LOOP_SPAWN_RATE, float(config.users)) if config.open_loop else float(config.users)


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
