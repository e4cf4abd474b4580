"""The `tritonforge` command: one typer app; each command lives in its own module and calls one library function.

    tritonforge demo                 # build `digits`, serve it, classify, load-test, stop
    tritonforge serve --repository model_repository
    tritonforge --help

A TritonForgeError (a user's mistake or a failed gate) prints one line, "ClassName: message", and exits 1;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from tritonforge.cli import (
    capacity,
    compare,
    demo,
    example,
    export,
    gpu,
    infer,
    k8s,
    loadtest,
    model,
    quantize,
    repo,
    report,
    serve,
    tune,
)
from tritonforge.cli.monitor import monitor_app
from tritonforge.cli.one_line_errors import one_line_errors

app = typer.Typer(
    name="tritonforge",
    help="Take a PyTorch model to a latency-validated Triton deployment.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
repo_app = typer.Typer(help="Inspect a Triton model repository.", no_args_is_help=True)
app.add_typer(repo_app, name="repo")
gpu_app = typer.Typer(help="GPU-node repository and TensorRT engines.", no_args_is_help=True)
k8s_app = typer.Typer(help="Kubernetes manifests (k8s/).", no_args_is_help=True)
app.add_typer(k8s_app, name="k8s")
app.add_typer(gpu_app, name="gpu")
model_app = typer.Typer(help="Look at one model, served or in a repository.", no_args_is_help=True)
app.add_typer(model_app, name="model")
app.add_typer(monitor_app, name="monitor")


@app.callback()
def _configure(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug).")
    ] = 0,
) -> None:
    """Take a PyTorch model to a latency-validated Triton deployment."""
    # Progress of long work (export, serve, load test) shows at INFO by default; -v adds detail and timestamps.
    detailed = verbose > 0
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if detailed else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if detailed else "  %(message)s",
    )
    logging.getLogger("tritonforge").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


app.command("demo")(one_line_errors(demo.demo))
app.command("example")(one_line_errors(example.example))
app.command("export")(one_line_errors(export.export))
app.command("serve")(one_line_errors(serve.serve))
app.command("infer")(one_line_errors(infer.infer))
app.command("loadtest")(one_line_errors(loadtest.loadtest))
app.command("capacity")(one_line_errors(capacity.capacity))
app.command("report")(one_line_errors(report.report))
app.command("tune")(one_line_errors(tune.tune))
app.command("quantize")(one_line_errors(quantize.quantize))
app.command("compare")(one_line_errors(compare.compare))
repo_app.command("check")(one_line_errors(repo.check))
model_app.command("signature")(one_line_errors(model.signature))
gpu_app.command("repository")(one_line_errors(gpu.repository))
gpu_app.command("build-engine")(one_line_errors(gpu.build_engine))
k8s_app.command("render")(one_line_errors(k8s.render))


def main() -> None:
    """Console-script entry point."""
    app()
