"""The Locust plumbing for Triton over gRPC: one abstract user that times every call in one place.

    import locust  # first, in every locustfile: it gevent-patches the standard library
    from tritonforge.loadtests.triton_user import TritonUser

    class DigitsUser(TritonUser):
        @locust.task
        def classify(self) -> None:
            self.infer()

Run with `locust -f tritonforge/loadtests/locustfile.py --host 127.0.0.1:8001 --triton-model digits`, or through
`tritonforge loadtest`. Calls go through tritonforge's own `TritonClient` (made cooperative by
`grpc.experimental.gevent.init_gevent()`, run here before any channel opens). Each user closes its client in
`on_stop`: an open tritonclient channel under gevent keeps the Locust process alive after the run.

Only a Locust process may import this module (importing locust monkey-patches the interpreter).
"""

from __future__ import annotations

import locust

# isort: split
import contextlib
import csv
import time
from pathlib import Path
from typing import Any

import grpc.experimental.gevent
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from numpy.typing import NDArray

from tritonforge._atomic import atomic_output
from tritonforge.client import TritonClient
from tritonforge.errors import ClientError, ConfigError
from tritonforge.loadtests.inputs import build_inputs
from tritonforge.loadtests.runner import validate_grpc_host

__all__ = ["TritonUser"]

grpc.experimental.gevent.init_gevent()


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


class TritonUser(locust.User):
    """A Locust user that sends inference requests to one Triton model through `TritonClient`.

    Subclasses add tasks that call `infer()`. Options come from Locust's command line (`--triton-*`) or, when
    there is none (a test building an Environment by hand), from these class attributes.

    Attributes:
        model: the model to call.
        model_version: the version to call; "" lets the server choose.
        batch_size: items per generated request.
        sample_path: a request file to send as it is; "" generates random inputs from the model's metadata.
        seed: seed of generated inputs.
        request_timeout_s: deadline of one call; a slower call counts as a failure.
    """

    abstract = True
    model: str = ""
    model_version: str = ""
    batch_size: int = 1
    sample_path: str = ""
    seed: int = 0
    request_timeout_s: float = 10.0

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
        if not self.model:
            raise ConfigError("no model to load-test; pass --triton-model NAME (or set TritonUser.model)")
        self.client: TritonClient | None = None
        self.inputs: dict[str, NDArray[Any]] = {}

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

    def on_stop(self) -> None:
        """Close the client: an open gRPC channel under gevent would keep Locust from exiting."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None

    def infer(self) -> None:
        """Send the request once, timing it and reporting it to Locust as a "grpc" request named after the model.

        Client errors (timeouts, server errors, unavailable) are reported as failures, not raised, so the run
        goes on and the SLO's error ratio judges them.
        """
        if self.client is None:
            raise ConfigError("TritonUser.infer() ran before on_start(); call it from a @task")
        exception: Exception | None = None
        response_length = 0
        start = time.perf_counter()
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
