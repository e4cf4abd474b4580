"""`tritonforge capacity`: raise an open-loop request rate until the SLO breaks; print the steps and the knee.

    tritonforge capacity --url 127.0.0.1:8001 --model digits --slo slo/digits.yaml --start-rps 100 --factor 1.5
    tritonforge capacity --embedded model_repository --model digits --slo slo/digits.yaml --step-s 5 --out runs/cap

SREs size a deployment by the highest rate one replica serves within its SLO. The command writes capacity.json,
capacity.png and each step's load-test reports to --out, and exits 1 when even the first rate misses the SLO.
Each step is measured after an untimed warm-up (--warmup-s, default max(1 s, 20 % of --step-s)); an --out that
holds an earlier search is refused unless --overwrite is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonforge.cli.loadtest import server_address
from tritonforge.errors import ConfigError, SLOViolationError
from tritonforge.loadtests.arrivals import ARRIVALS, Arrival
from tritonforge.loadtests.capacity import StepResult, format_capacity, knee_line, run_capacity
from tritonforge.loadtests.runner import LoadTestConfig
from tritonforge.loadtests.slo import load_model_slo


def capacity(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to load.")],
    slo: Annotated[Path, typer.Option("--slo", help="SLO YAML file (objectives per model); every step must meet it.")],
    url: Annotated[
        str | None, typer.Option("--url", help="Server gRPC address host:port (default 127.0.0.1:8001).")
    ] = None,
    embedded: Annotated[
        Path | None,
        typer.Option("--embedded", help="Start the embedded tritonserver on this repository for the run (not --url)."),
    ] = None,
    start_rps: Annotated[float, typer.Option("--start-rps", help="First arrival rate, requests/s.")] = 100.0,
    factor: Annotated[float, typer.Option("--factor", help="Rate growth from one step to the next.")] = 1.5,
    max_rps: Annotated[float, typer.Option("--max-rps", help="Highest rate to try, requests/s.")] = 20000.0,
    step_s: Annotated[
        int, typer.Option("--step-s", help="Measured duration of each step in seconds (after its warm-up).")
    ] = 5,
    warmup_s: Annotated[
        int | None,
        typer.Option("--warmup-s", help="Untimed warm-up before each step (default: max(1 s, 20% of --step-s))."),
    ] = None,
    refine: Annotated[
        int, typer.Option("--refine", help="Bisection steps between the last passing and first failing rate.")
    ] = 2,
    min_achieved: Annotated[
        float, typer.Option("--min-achieved", help="Share of its target rate a step must reach to pass.")
    ] = 0.9,
    arrival: Annotated[str, typer.Option("--arrival", help="Request schedule: constant or poisson.")] = "constant",
    users: Annotated[
        int | None, typer.Option("--users", help="In-flight bound per step (default: sized to each step's rate).")
    ] = None,
    processes: Annotated[
        int | None, typer.Option("--processes", help="Locust worker processes (-1: one per core).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Items per generated request.")] = 1,
    metrics_url: Annotated[
        str | None, typer.Option("--metrics-url", help="Triton's Prometheus URL, read as a cross-check (optional).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/capacity"),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier search's results in --out (otherwise refused).")
    ] = False,
    ready_timeout_s: Annotated[
        float, typer.Option("--ready-timeout-s", help="Seconds to wait for the model to be ready before the run.")
    ] = 30.0,
) -> None:
    """Find the highest request rate that meets the SLO (exit 1 if even --start-rps misses it)."""
    spec = load_model_slo(slo, model)
    with server_address(url, embedded) as (host, embedded_metrics_url):
        template = LoadTestConfig(
            host=host,
            model=model,
            output_dir=out,
            processes=processes,
            batch_size=batch_size,
            ready_timeout_s=ready_timeout_s,
            metrics_url=metrics_url or embedded_metrics_url,
        )
        report = run_capacity(
            template,
            spec,
            start_rps=start_rps,
            factor=factor,
            max_rps=max_rps,
            step_s=step_s,
            refine_steps=refine,
            min_achieved_ratio=min_achieved,
            arrival=_arrival(arrival),
            users=users,
            warmup_s=warmup_s,
            overwrite=overwrite,
            on_step=_progress,
        )
    typer.echo(format_capacity(report))
    typer.echo(f"reports: {out} (capacity.json, capacity.png, step_*/summary.json)")
    if not report.found:
        raise SLOViolationError(f"{knee_line(report)} (see {out / 'capacity.json'})")


def _arrival(name: str) -> Arrival:
    if name not in ARRIVALS:
        raise ConfigError(f"--arrival must be one of {', '.join(ARRIVALS)}, got '{name}'")
    return "poisson" if name == "poisson" else "constant"


def _progress(step: StepResult) -> None:
    verdict = "PASS" if step.passed else "FAIL: " + "; ".join(step.broken)
    typer.echo(
        f"  {step.target_rps:g} req/s: achieved {step.achieved_rps:.1f}, p99 "
        f"{step.p99_ms if step.p99_ms is not None else 'n/a'} ms, {verdict}",
        err=True,
    )
