"""`tritonforge example digits`: build an example model into a repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonforge.examples.digits import build_digits


def example(
    name: Annotated[str, typer.Argument(help="The example to build: digits.")] = "digits",
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the split and training.")] = 0,
) -> None:
    """Train an example model on bundled data and export it as the next version in the repository."""
    if name != "digits":
        raise typer.BadParameter(f"unknown example '{name}'; available: digits")
    result = build_digits(repository=repository, seed=seed)
    typer.echo(
        f"digits: test accuracy {result.test_accuracy:.4f} (trained in {result.train_seconds:.1f}s); "
        f"version {result.exported.version} written to {result.exported.model_dir}"
    )
