"""`tritonforge monitor reference` and `tritonforge monitor drift`: a version's reference, and a window tested on it.

tritonforge monitor reference digits --repository model_repository --data eval.npz [--labels labels.npy]
tritonforge monitor drift digits --log logs/ --repository model_repository --window 1h --out runs/drift
# exit 1 when the window drifted, 0 when not; drift.json and report.html in --out
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def reference(
    model: Annotated[str, typer.Argument(help="Model name in the repository.")],
    data: Annotated[Path, typer.Option("--data", help=".npz of input arrays keyed by input name (+ 'labels').")],
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    version: Annotated[int | None, typer.Option("--version", help="Version (default: the highest).")] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help=".npy, .npz or .csv of labels, one per item.")] = None,
    max_items: Annotated[int, typer.Option("--max-items", help="Most items kept (reference and holdout).")] = 5000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the reference/holdout split.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing reference.")] = False,
) -> None:
    """Build a reference profile for a model exported elsewhere (its ONNX model run over the data)."""
    from tritonforge.monitoring.reference import build_reference

    folder = build_reference(
        repository=repository, model=model, data=data, version=version, labels=labels, max_items=max_items,
        seed=seed, overwrite=overwrite,
    )  # fmt: skip
    typer.echo(f"wrote {folder}")


def drift(
    model: Annotated[str, typer.Argument(help="Model name.")],
    log: Annotated[str, typer.Option("--log", help="Prediction log root (folder or fsspec URL).")],
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    version: Annotated[
        int | None, typer.Option("--version", help="Reference version, and only its logged requests.")
    ] = None,
    window: Annotated[str | None, typer.Option("--window", help="Duration back from now (1h) or START..END.")] = None,
    last: Annotated[int | None, typer.Option("--last", help="Only the latest N items.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for drift.json, report.html and plots.")] = None,
    all_tests: Annotated[bool, typer.Option("--all", help="Show every test in the table.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of sampling and permutations.")] = 0,
) -> None:
    """Test a window of the prediction log against the reference; exit 1 on drift."""
    from rich.console import Console

    from tritonforge.monitoring.drift_report import drift_from_log, render_table, write_drift_report
    from tritonforge.monitoring.log_reader import parse_window

    bounds = parse_window(window, last)
    result = drift_from_log(log=log, repository=repository, model=model, version=version, seed=seed, **bounds)
    Console().print(render_table(result.report, all_tests=all_tests))
    if result.report.skipped:
        typer.echo("not tested: " + "; ".join(f"{k} ({v})" for k, v in result.report.skipped.items()))
    if out is not None:
        typer.echo(f"wrote {write_drift_report(result, out)}")
    if result.report.drifted:
        raise typer.Exit(1)
