"""`tritonforge demo`: the whole path on the embedded server (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonforge.demo import DemoOptions, run_demo


def demo(
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Model repository to build into.")] = Path(
        "model_repository"
    ),
    out_dir: Annotated[Path, typer.Option(help="Load-test reports folder.")] = Path("runs/demo"),
    slo: Annotated[Path, typer.Option(help="SLO file for the load test.")] = Path("slo/digits.yaml"),
    loadtest_seconds: Annotated[int, typer.Option(help="Load-test duration in seconds.")] = 20,
    users: Annotated[int, typer.Option(help="Concurrent load-test users.")] = 4,
) -> None:
    """Build digits and MiniLM with gated INT8 variants, serve and check them, load-test; exit 0 only if all pass."""
    options = DemoOptions(
        repository=repository, out_dir=out_dir, slo_file=slo, loadtest_seconds=loadtest_seconds, users=users
    )
    result = run_demo(options, echo=typer.echo)
    if not result.passed:
        raise typer.Exit(1)
