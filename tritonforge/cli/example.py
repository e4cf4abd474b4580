"""`tritonforge example digits|minilm`: build an example model into a repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXAMPLES = ("digits", "minilm")


def example(
    name: Annotated[str, typer.Argument(help="The example to build: digits or minilm.")] = "digits",
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    seed: Annotated[int, typer.Option(help="Seed for the split and training (digits).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace version 1 (minilm).")] = False,
) -> None:
    """Build an example model from bundled data: digits (trained here) or minilm (all-MiniLM-L6-v2 ensemble)."""
    if name == "digits":
        from tritonforge.examples.digits import build_digits

        result = build_digits(repository=repository, seed=seed)
        typer.echo(
            f"digits: test accuracy {result.test_accuracy:.4f} (trained in {result.train_seconds:.1f}s); "
            f"version {result.exported.version} written to {result.exported.model_dir}"
        )
    elif name == "minilm":
        from tritonforge.examples.minilm import build_minilm

        build = build_minilm(repository, overwrite=overwrite)
        typer.echo(
            f"minilm: encoder exported in {build.export_seconds:.1f}s ({build.onnx_bytes / 1e6:.1f} MB); "
            f"wrote {build.encoder.model_dir}, {build.tokenizer_dir.parent}, {build.ensemble_dir.parent}"
        )
    else:
        raise typer.BadParameter(f"unknown example '{name}'; available: {', '.join(EXAMPLES)}")
