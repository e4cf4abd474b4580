"""`tritonforge repo check`: one line per problem in a model repository; exit code 1 when there is any.

tritonforge repo check model_repository
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def check(
    repository: Annotated[Path, typer.Argument(help="Triton model repository.")] = Path("model_repository"),
) -> None:
    """Check configs, version folders and ONNX graphs; print each finding, or an OK summary."""
    from tritonforge.converters.repo_check import check_repository

    findings = check_repository(repository)
    for finding in findings:
        typer.echo(str(finding))
    if findings:
        typer.echo(f"{len(findings)} problem(s) in {repository}", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK: {findings.model_count} models, {findings.version_count} versions")
