"""`tritonforge model ...`: look at one model, served or in a repository.

    tritonforge model signature digits                          # as the server at --url serves it
    tritonforge model signature bert --repository model_repository --format json

`signature` prints names, dtypes and shapes (batch axis and symbolic dims such as `seq` included) and the max batch
size: what a client must send. The work is done by `served_signature` and `repository_signature`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.cli.signature import format_model_signature
from tritonforge.client.io import OutputFormat
from tritonforge.errors import ConfigError
from tritonforge.signature import ModelSignature

__all__ = ["signature"]

DEFAULT_URL = "127.0.0.1:8001"


def _read_signature(
    model: str, *, repository: Path | None, url: str | None, version: str | None, timeout_s: float
) -> ModelSignature:
    if repository is not None:  # on disk: --url (perhaps only set in the environment) is not used
        from tritonforge.converters.repo_signature import repository_signature

        if version is not None and not version.isdigit():
            raise ConfigError(f"--version {version!r} must be a version number such as 1")
        return repository_signature(repository, model, version=int(version) if version is not None else None)
    from tritonforge.client.io import served_signature

    return served_signature(url or DEFAULT_URL, model, version=version, timeout_s=timeout_s)


def signature(
    model: Annotated[str, typer.Argument(help="The model's name.", show_default=False)],
    repository: Annotated[
        Path | None,
        typer.Option(
            "--repository",
            "-r",
            help="Read the model from this repository (config.pbtxt and graph) instead of a server.",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", envvar="TRITONFORGE_CLIENT_URL", help=f"gRPC address of the server, host:port [{DEFAULT_URL}]."
        ),
    ] = None,
    version: Annotated[str | None, typer.Option("--version", help="Model version; the latest when left out.")] = None,
    timeout_s: Annotated[float, typer.Option("--timeout-s", min=0.001, help="Deadline of the server calls.")] = 10.0,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")] = (
        OutputFormat.TABLE
    ),
) -> None:
    """Print a model's inputs and outputs (name, dtype, shape with symbolic dims) and its max batch size."""
    found = _read_signature(model, repository=repository, url=url, version=version, timeout_s=timeout_s)
    if fmt is OutputFormat.JSON:
        typer.echo(json.dumps(found.to_dict()))
    else:
        typer.echo(format_model_signature(found), nl=False)
