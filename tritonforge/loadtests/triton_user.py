"""The Locust plumbing for Triton over gRPC: one abstract user that times every call in one place.

    import locust  # first, in every locustfile: it gevent-patches the standard library
    from tritonforge.loadtests.triton_user import TritonUser

    class DigitsUser(TritonUser):
        @locust.task
        def classify(self) -> None:
            self.infer()

Run with `locust -f tritonforge/loadtests/locustfile.py --host 127.0.0.1:8001 --triton-model digits`, or through
`tritonforge loadtest`. With `--triton-arrival poisson --triton-rate 200 --triton-total-users 16` each user follows
its own arrival schedule at 200/16 requests/s (`send_next`): it sleeps until the next scheduled start, sends, and
reports the latency from the *scheduled* start (no coordinated omission). Requests that start more than
`--triton-late-threshold-ms` behind schedule, and scheduled requests never sent before the run ended, go into a
`LateTally`; workers send theirs to the master with their statistics (Locust's report_to_master / worker_report
events) and the master writes the total to `<csv prefix>_late.json`. They are kept out of Locust's request
statistics so that its CSV, HTML and history count only real requests.

Calls go through tritonforge's own `TritonClient` (made cooperative by `grpc.experimental.gevent.init_gevent()`,
run here before any channel opens). Each user closes its client in `on_stop`: an open tritonclient channel under
gevent keeps the Locust process alive after the run.

Only a Locust process may import this module (importing locust monkey-patches the interpreter).
"""

from __future__ import annotations

import locust

# isort: split
import contextlib
import csv
import itertools
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import grpc.experimental.gevent
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from numpy.typing import NDArray

from tritonforge._atomic import atomic_output, atomic_write_text
from tritonforge.client import TritonClient
from tritonforge.errors import ClientError, ConfigError
from tritonforge.loadtests.arrivals import ARRIVALS, arrival_schedule
from tritonforge.loadtests.inputs import build_inputs
from tritonforge.loadtests.report import LateTally
from tritonforge.loadtests.runner import LOCAL_SAMPLE_ENV, validate_grpc_host

__all__ = ["TritonUser", "late_tally"]

grpc.experimental.gevent.init_gevent()

#: Key of the late-start tally in a worker's report to the master.
_REPORT_KEY = "tritonforge_late"
#: This process's tally of late starts (open loop only); on the master, the sum of its workers'.
_TALLY: dict[str, LateTally] = {}
#: Numbers the users of this process, so each one's schedule has its own seed.
_USER_NUMBERS = itertools.count()


def late_tally() -> LateTally | None:
    """This process's tally of late starts, or None outside an open-loop run."""
    return _TALLY.get("late")


def _add_triton_arguments(parser: Any, **_kwargs: Any) -> None:
    group = parser.add_argument_group("Triton (tritonforge)")
    group.add_argument("--triton-model", default="", env_var="TRITONFORGE_LOADTEST_MODEL", help="Model to call.")
    group.add_argument(
        "--triton-model-version", default="", env_var="TRITONFORGE_LOADTEST_MODEL_VERSION", help="Version to call."
    )
    group.add_argument(
        "--triton-batch-size", type=int, default=1, env_var="TRITONFORGE_LOADTEST_BATCH_SIZE", help="Items per request."
    )
    group.add_argument(
        "--triton-sample", default="", env_var="TRITONFORGE_LOADTEST_SAMPLE", help="Request to send (.npy/.npz)."
    )
    group.add_argument("--triton-seed", type=int, default=0, env_var="TRITONFORGE_LOADTEST_SEED", help="Input seed.")
    group.add_argument(
        "--triton-timeout-s", type=float, default=10.0, env_var="TRITONFORGE_LOADTEST_TIMEOUT_S", help="Call deadline."
    )
    group.add_argument(
        "--triton-arrival", default="", choices=["", *ARRIVALS], help="Open loop: arrival schedule ('' = closed loop)."
    )
    group.add_argument("--triton-rate", type=float, default=0.0, help="Open loop: arrivals/s over all users.")
    group.add_argument(
        "--triton-total-users", type=int, default=0, help="Open loop: users of all processes (they share the rate)."
    )
    group.add_argument(
        "--triton-pace-rps", type=float, default=0.0, help="Closed loop paced to this rate over all users (0: none)."
    )
    group.add_argument(
        "--triton-late-threshold-ms", type=float, default=2.0, help="Open loop: a start this far behind is late."
    )


def _start_tally(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is not None and vars(options).get("triton_arrival"):
        _TALLY["late"] = LateTally(options.triton_late_threshold_ms)


def _report_tally(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    """On a worker: hand what was counted since the last report to the master."""
    tally = late_tally()
    if tally is not None:
        data[_REPORT_KEY] = tally.to_message()
        tally.reset()


def _merge_tally(client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
    """On the master: add a worker's report."""
    message = data.get(_REPORT_KEY)
    if message is not None:
        _TALLY.setdefault("late", LateTally(float(message["threshold_ms"]))).merge(message)


def _write_tally(environment: Environment, **_kwargs: Any) -> None:
    """On the master (or a single process): write the total to `<csv prefix>_late.json`."""
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None) if options is not None else None
    tally = late_tally()
    if not prefix or tally is None or isinstance(environment.runner, WorkerRunner):
        return
    atomic_write_text(Path(f"{prefix}_late.json"), json.dumps(tally.to_message()) + "\n")


def _write_final_stats(environment: Environment, **_kwargs: Any) -> None:
    """Rewrite `<csv prefix>_stats.csv` from the final statistics.

    WAR: Locust (2.47) refreshes that file once a second and does not write it again on exit, so it lacks up to
    the last second of the run. Writing a new file and renaming it over the old one leaves Locust's open handle
    on the unlinked file, so its last flush cannot clobber these numbers.
    """
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None) if options is not None else None
    if not prefix or isinstance(environment.runner, WorkerRunner):
        return
    with atomic_output(Path(f"{prefix}_stats.csv")) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(handle))


events.init_command_line_parser.add_listener(_add_triton_arguments)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_write_final_stats)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_start_tally)  # type: ignore[no-untyped-call]
events.report_to_master.add_listener(_report_tally)  # type: ignore[no-untyped-call]
events.worker_report.add_listener(_merge_tally)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_write_tally)  # type: ignore[no-untyped-call]


class TritonUser(locust.User):
    """A Locust user that sends inference requests to one Triton model through `TritonClient`.

    Subclasses add tasks that call `infer()`. Options come from Locust's command line (`--triton-*`) or, when
    there is none (a test building an Environment by hand), from these class attributes.

    Attributes:
        model: the model to call.
        model_version: the version to call; "" lets the server choose.
        batch_size: items per generated request.
        sample_path: a request file to send as it is; "" generates random inputs from the model's metadata.
        seed: seed of generated inputs and of the arrival schedule.
        request_timeout_s: deadline of one call; a slower call counts as a failure.
        arrival: "constant" or "poisson" for the open loop; "" for the closed loop.
        rate_rps: the open loop's arrival rate over all users.
        total_users: the users of all processes that share `rate_rps`.
    """

    abstract = True
    model: str = ""
    model_version: str = ""
    batch_size: int = 1
    sample_path: str = ""
    seed: int = 0
    request_timeout_s: float = 10.0
    arrival: str = ""
    rate_rps: float = 0.0
    pace_rps: float = 0.0
    total_users: int = 0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.host = validate_grpc_host(self.host or "")
        options = environment.parsed_options
        if options is not None:
            self.model = options.triton_model or self.model
            self.model_version = options.triton_model_version or self.model_version
            self.batch_size = options.triton_batch_size
            self.sample_path = options.triton_sample or self.sample_path
            self.seed = options.triton_seed
            self.request_timeout_s = options.triton_timeout_s
            self.arrival = getattr(options, "triton_arrival", "") or self.arrival
            self.rate_rps = getattr(options, "triton_rate", 0.0) or self.rate_rps
            self.total_users = getattr(options, "triton_total_users", 0) or self.total_users
            self.pace_rps = getattr(options, "triton_pace_rps", 0.0) or self.pace_rps
        # A worker on another machine gets the master's request path; its own copy is named here.
        self.sample_path = os.environ.get(LOCAL_SAMPLE_ENV) or self.sample_path
        if self.arrival and not self.rate_rps > 0:
            raise ConfigError(f"the {self.arrival} arrival schedule needs a rate above 0; pass --triton-rate")
        if not self.model:
            raise ConfigError("no model to load-test; pass --triton-model NAME (or set TritonUser.model)")
        self.client: TritonClient | None = None
        self.inputs: dict[str, NDArray[Any]] = {}
        self._schedule: Iterator[float] | None = None
        self._next_due = 0.0

    def on_start(self) -> None:
        """Open this user's client and build its request from the model's metadata (or the sample file)."""
        # retries=0: a load test must count an unavailable server as failures, not hide it behind retries.
        self.client = TritonClient(self.host, timeout_s=self.request_timeout_s, retries=0)
        try:
            version = self.model_version or None
            tensors = self.client.model_inputs(self.model, version)
            self.inputs = build_inputs(
                tensors,
                max_batch_size=self.client.max_batch_size(self.model, version),
                batch_size=self.batch_size,
                seed=self.seed,
                sample_path=Path(self.sample_path) if self.sample_path else None,
            )
        except BaseException:
            self.on_stop()
            raise
        if self.arrival:
            self._start_schedule(self.arrival, self.rate_rps)
        elif self.pace_rps > 0:
            self._start_schedule("constant", self.pace_rps)

    def _start_schedule(self, arrival: str, rate_rps: float) -> None:
        runner = self.environment.runner
        worker = getattr(runner, "worker_index", 0) if isinstance(runner, WorkerRunner) else 0
        share = rate_rps / max(1, self.total_users)
        seed = f"{self.seed}-{worker}-{next(_USER_NUMBERS)}"
        self._schedule = arrival_schedule(arrival, share, start=time.perf_counter(), seed=seed)  # type: ignore[arg-type]
        self._next_due = next(self._schedule)

    def on_stop(self) -> None:
        """Count scheduled requests that were never sent, then close the client.

        An open gRPC channel under gevent would keep Locust from exiting.
        """
        tally = late_tally()
        if self._schedule is not None and tally is not None and self.arrival:
            now, unsent = time.perf_counter(), 0
            while self._next_due <= now:
                unsent += 1
                self._next_due = next(self._schedule)
            tally.record_unsent(unsent)
            self._schedule = None
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None

    def send_next(self) -> None:
        """One request: at once in the closed loop; in the open loop at the next time on this user's schedule.

        Open loop: sleep until the scheduled start, send, and report the latency from the schedule. A user still
        busy with its last request when the next one falls due sends it as soon as it can (catching up, never
        skipping), and the start counts as late when it slipped more than the threshold.
        """
        if self._schedule is None:
            self.infer()
            return
        if not self.arrival:  # paced closed loop: wait for the slot, skip the ones missed, time from the send
            now = time.perf_counter()
            while self._next_due < now:
                self._next_due = next(self._schedule)
            gevent.sleep(self._next_due - now)
            self._next_due = next(self._schedule)
            self.infer()
            return
        due = self._next_due
        self._next_due = next(self._schedule)
        delay = due - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        tally = late_tally()
        if tally is not None:
            tally.record(max(0.0, (time.perf_counter() - due) * 1000.0), was_idle=delay > 0)
        self.infer(started_at=due)

    def infer(self, *, started_at: float | None = None) -> None:
        """Send the request once, timing it and reporting it to Locust as a "grpc" request named after the model.

        Client errors (timeouts, server errors, unavailable) are reported as failures, not raised, so the run
        goes on and the SLO's error ratio judges them.

        Args:
            started_at: the `time.perf_counter()` reading the latency runs from (the scheduled start in the open
                loop); None times from now.
        """
        if self.client is None:
            raise ConfigError("TritonUser.infer() ran before on_start(); call it from a @task")
        exception: Exception | None = None
        response_length = 0
        start = time.perf_counter() if started_at is None else started_at
        try:
            outputs = self.client.infer(
                self.model, self.inputs, version=self.model_version or None, timeout_s=self.request_timeout_s
            )
            response_length = sum(int(array.nbytes) for array in outputs.values())
        except ClientError as exc:
            exception = exc
        response_time_ms = (time.perf_counter() - start) * 1000.0
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.model,
            response_time=response_time_ms,
            response_length=response_length,
            exception=exception,
            context={},
        )
