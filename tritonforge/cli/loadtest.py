"""`tritonforge loadtest`: load one model with Locust, print each SLO against its measurement, exit 1 on a miss.

    tritonforge loadtest --url 127.0.0.1:8001 --model digits --users 4 --run-time-s 30 --slo slo/digits.yaml
    tritonforge loadtest --embedded model_repository --model digits --slo slo/digits.yaml --out results/digits
    tritonforge loadtest --url 127.0.0.1:8001 --model digits --rate 200 --arrival poisson   # open loop
    tritonforge loadtest ... --expect-workers 2          # master; on each other machine:
    tritonforge loadtest --url TRITON:8001 --model digits --master-host MASTER_IP           # a worker

An --out folder that already holds a run is refused unless --overwrite is given (nothing is deleted silently).
The run leaves Locust's CSV (with its full history) and HTML, its log, the request sent, a history PNG and
summary.json in --out, and prints the SLO table, the late-request line (open loop), the generator verdict and
the server breakdown (Triton's queue and compute time per request, average batch, client-minus-server).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.errors import ConfigError, SLOViolationError, TritonForgeError
from tritonforge.loadtests.arrivals import open_loop_users
from tritonforge.loadtests.report import format_table
from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest, run_locust_worker
from tritonforge.loadtests.slo import load_model_slo

_DEFAULT_URL = "127.0.0.1:8001"


class Arrival(str, enum.Enum):
    """The open loop's arrival schedules (typer needs an Enum for choices)."""

    constant = "constant"
    poisson = "poisson"


def loadtest(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to load-test.")],
    url: Annotated[
        str | None, typer.Option("--url", help=f"Server gRPC address host:port (default {_DEFAULT_URL}).")
    ] = None,
    embedded: Annotated[
        Path | None,
        typer.Option("--embedded", help="Start the embedded tritonserver on this repository for the run (not --url)."),
    ] = None,
    users: Annotated[
        int | None,
        typer.Option(
            "--users",
            help="Concurrent Locust users (default 4); with --rate, the most requests in flight "
            "(default: enough for 50 ms of latency at the rate).",
        ),
    ] = None,
    spawn_rate: Annotated[
        float | None, typer.Option("--spawn-rate", help="Users started per second (default: all at once).")
    ] = None,
    run_time_s: Annotated[
        int, typer.Option("--run-time-s", help="Duration of the measured load in seconds (after any --warmup-s).")
    ] = 10,
    warmup_s: Annotated[
        int,
        typer.Option(
            "--warmup-s",
            help="Open loop: untimed warm-up before the measured part (users start over it, then stats reset).",
        ),
    ] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Items per generated request.")] = 1,
    slo: Annotated[Path | None, typer.Option("--slo", help="SLO YAML file (objectives per model).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: loadtest_results/<model>).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier run's results in --out (otherwise refused).")
    ] = False,
    sample: Annotated[
        Path | None, typer.Option("--sample", help="Request to send as it is (.npy, or .npz keyed by input name).")
    ] = None,
    processes: Annotated[
        int | None, typer.Option("--processes", help="Locust worker processes (-1: one per core).")
    ] = None,
    model_version: Annotated[str | None, typer.Option("--model-version", help="Model version to call.")] = None,
    ready_timeout_s: Annotated[
        float, typer.Option("--ready-timeout-s", help="Seconds to wait for the model to be ready before the run.")
    ] = 30.0,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Open loop: requests/s started on a schedule, whatever the answers."),
    ] = None,
    arrival: Annotated[
        Arrival | None, typer.Option("--arrival", help="Open loop: arrival schedule (default poisson with --rate).")
    ] = None,
    late_threshold_ms: Annotated[
        float, typer.Option("--late-threshold-ms", help="Open loop: a request starting this far behind is late.")
    ] = 2.0,
    pace: Annotated[
        float | None,
        typer.Option(
            "--pace", help="Closed loop paced to this many requests/s (Locust's constant throughput; hides stalls)."
        ),
    ] = None,
    metrics_url: Annotated[
        str | None,
        typer.Option("--metrics-url", help="Triton's Prometheus endpoint, to cross-check its statistics API."),
    ] = None,
    expect_workers: Annotated[
        int | None, typer.Option("--expect-workers", help="Run as Locust master and wait for this many workers.")
    ] = None,
    master_bind_host: Annotated[str, typer.Option("--master-bind-host", help="Master: interface to listen on.")] = "*",
    master_bind_port: Annotated[int, typer.Option("--master-bind-port", help="Master: port to listen on.")] = 5557,
    master_host: Annotated[
        str | None, typer.Option("--master-host", help="Run as a worker of the Locust master at this address.")
    ] = None,
    master_port: Annotated[int, typer.Option("--master-port", help="Worker: the master's port.")] = 5557,
) -> None:
    """Load-test a model over gRPC with Locust and check it against its SLO (exit 1 if any objective is missed)."""
    spec = load_model_slo(slo, model) if slo is not None else None
    if arrival is not None and rate is None:
        raise ConfigError(f"--arrival {arrival.value} needs a rate: add --rate REQUESTS_PER_SECOND")
    if users is None:
        users = open_loop_users(rate) if rate is not None and rate > 0 else 4
    with server_address(url, embedded) as (host, embedded_metrics_url):
        config = LoadTestConfig(
            host=host,
            model=model,
            output_dir=out if out is not None else Path("loadtest_results") / model,
            users=users,
            spawn_rate=spawn_rate,
            run_time_s=run_time_s,
            warmup_s=warmup_s,
            overwrite=overwrite,
            batch_size=batch_size,
            slo=spec,
            sample_path=sample,
            model_version=model_version,
            processes=processes,
            ready_timeout_s=ready_timeout_s,
            arrival=arrival.value if arrival is not None else None,
            rate_rps=rate,
            late_threshold_ms=late_threshold_ms,
            pace_rps=pace,
            metrics_url=metrics_url or embedded_metrics_url,
            expect_workers=expect_workers,
            master_bind_host=master_bind_host,
            master_bind_port=master_bind_port,
            master_host=master_host,
            master_port=master_port,
        )
        if config.master_host is not None:
            _run_worker(config)
            return
        result = run_loadtest(config)
    typer.echo(format_table(result))
    typer.echo(f"reports: {config.output_dir} (summary.json, report.html, locust_stats.csv, history.png)")
    if not result.passed:
        missed = ", ".join(c.name for c in result.missed) or "no request was made"
        raise SLOViolationError(f"'{model}' missed its SLO: {missed} (see {config.output_dir / 'summary.json'})")


def _run_worker(config: LoadTestConfig) -> None:
    typer.echo(f"Locust worker: joining the master at {config.master_host}:{config.master_port}")
    outcome = run_locust_worker(config)
    if outcome.returncode != 0 or outcome.killed:
        log = config.output_dir / "locust_worker.log"
        raise TritonForgeError(f"the Locust worker ended with exit code {outcome.returncode}; read {log} for why")
    typer.echo(f"worker done after {outcome.wall_s:.0f} s (the master writes the reports)")


@contextlib.contextmanager
def server_address(url: str | None, embedded: Path | None) -> Iterator[tuple[str, str | None]]:
    """Yield the address to load and its metrics URL when known: --url, or an embedded server started for the run."""
    if url is not None and embedded is not None:
        raise ConfigError("give either --url (a running server) or --embedded REPOSITORY (start one), not both")
    if embedded is None:
        yield url or _DEFAULT_URL, None
        return
    try:
        from tritonforge.serving.launcher import EmbeddedTriton
    except ImportError as exc:
        raise ConfigError(f"--embedded needs the serving extra (`pip install tritonforge[serve]`): {exc}") from exc
    with EmbeddedTriton(repository=embedded) as server:
        yield server.grpc_url, server.metrics_url
