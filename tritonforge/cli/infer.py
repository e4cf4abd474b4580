"""`tritonforge infer`: send input files to a served model and print its outputs.

    tritonforge infer --model digits --input image=batch.npy
    tritonforge infer --model digits --input one_image.json --add-batch-dim --format json

The work is done by `tritonforge.client.io.run_infer_job`; this module only parses options and prints.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tritonforge.client.io import InferJob, InputSpec, OutputFormat, render_outputs, run_infer_job

__all__ = ["infer"]


def infer(
    model: Annotated[str, typer.Option("--model", "-m", help="Name of the served model.")],
    inputs: Annotated[
        list[str],
        typer.Option(
            "--input",
            "-i",
            help="NAME=PATH of a .npy file or a .json nested list; repeat per input. NAME= may be left out "
            "when the model has one input.",
        ),
    ],
    url: Annotated[
        str, typer.Option("--url", envvar="TRITONFORGE_CLIENT_URL", help="gRPC address of the server, host:port.")
    ] = "127.0.0.1:8001",
    version: Annotated[
        str | None, typer.Option("--version", help="Model version; the server's latest when left out.")
    ] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", min=0.001, help="Deadline of the request in seconds.")
    ] = 10.0,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")
    ] = OutputFormat.TABLE,
    add_batch_dim: Annotated[
        bool,
        typer.Option("--add-batch-dim", help="Prepend a batch dimension of 1 (for files that hold one item)."),
    ] = False,
) -> None:
    """Send input files to a model on a Triton server and print its outputs."""
    job = InferJob(
        url=url,
        model=model,
        inputs=tuple(InputSpec.parse(text) for text in inputs),
        version=version,
        timeout_s=timeout_s,
        add_batch_dim=add_batch_dim,
    )
    outputs = run_infer_job(job)
    typer.echo(render_outputs(outputs, fmt=fmt))
