"""`tritonforge loadtest`: load one model with Locust, print each SLO against its measurement, exit 1 on a miss.

    tritonforge loadtest --url 127.0.0.1:8001 --model digits --users 4 --run-time-s 30 --slo slo/digits.yaml
    tritonforge loadtest --embedded model_repository --model digits --slo slo/digits.yaml --out results/digits

The run leaves Locust's CSV and HTML, its log, the request sent and summary.json in --out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.errors import ConfigError, SLOViolationError
from tritonforge.loadtests.report import format_table
from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest
from tritonforge.loadtests.slo import load_model_slo

_DEFAULT_URL = "127.0.0.1:8001"


def loadtest(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to load-test.")],
    url: Annotated[
        str | None, typer.Option("--url", help=f"Server gRPC address host:port (default {_DEFAULT_URL}).")
    ] = None,
    embedded: Annotated[
        Path | None,
        typer.Option("--embedded", help="Start the embedded tritonserver on this repository for the run (not --url)."),
    ] = None,
    users: Annotated[int, typer.Option("--users", help="Concurrent Locust users.")] = 4,
    spawn_rate: Annotated[
        float | None, typer.Option("--spawn-rate", help="Users started per second (default: all at once).")
    ] = None,
    run_time_s: Annotated[int, typer.Option("--run-time-s", help="Duration of the load in seconds.")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Items per generated request.")] = 1,
    slo: Annotated[Path | None, typer.Option("--slo", help="SLO YAML file (objectives per model).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: loadtest_results/<model>).")
    ] = None,
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
) -> None:
    """Load-test a model over gRPC with Locust and check it against its SLO (exit 1 if any objective is missed)."""
    spec = load_model_slo(slo, model) if slo is not None else None
    with _server_address(url, embedded) as host:
        config = LoadTestConfig(
            host=host,
            model=model,
            output_dir=out if out is not None else Path("loadtest_results") / model,
            users=users,
            spawn_rate=spawn_rate,
            run_time_s=run_time_s,
            batch_size=batch_size,
            slo=spec,
            sample_path=sample,
            model_version=model_version,
            processes=processes,
            ready_timeout_s=ready_timeout_s,
        )
        result = run_loadtest(config)
    typer.echo(format_table(result))
    typer.echo(f"reports: {config.output_dir} (summary.json, report.html, locust_stats.csv)")
    if not result.passed:
        missed = ", ".join(c.name for c in result.missed) or "no request was made"
        raise SLOViolationError(f"'{model}' missed its SLO: {missed} (see {config.output_dir / 'summary.json'})")


@contextlib.contextmanager
def _server_address(url: str | None, embedded: Path | None) -> Iterator[str]:
    """Yield the address to load: --url, or that of an embedded server started for the run and stopped after."""
    if url is not None and embedded is not None:
        raise ConfigError("give either --url (a running server) or --embedded REPOSITORY (start one), not both")
    if embedded is None:
        yield url or _DEFAULT_URL
        return
    try:
        from tritonforge.serving.launcher import EmbeddedTriton
    except ImportError as exc:
        raise ConfigError(f"--embedded needs the serving extra (`pip install tritonforge[serve]`): {exc}") from exc
    with EmbeddedTriton(repository=embedded) as server:
        yield server.grpc_url
