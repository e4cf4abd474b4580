"""`tritonforge serve`: run tritonserver on a repository until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonforge.serving.launcher import ServerOptions
from tritonforge.serving.runner import serve_until_signalled


def serve(
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    server_binary: Annotated[
        Path | None,
        typer.Option(
            "--server-binary",
            envvar="TRITONFORGE_SERVER_BINARY",
            help="A full Triton install's tritonserver (default: the embedded one).",
        ),
    ] = None,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: a free one).")] = 8001,
    http_port: Annotated[int, typer.Option(help="HTTP port (0: a free one).")] = 8000,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (0: a free one).")] = 8002,
    model_control_mode: Annotated[str, typer.Option(help="none, explicit or poll.")] = "none",
    exit_timeout_s: Annotated[int, typer.Option(help="Seconds to drain in-flight requests on shutdown.")] = 30,
    log_path: Annotated[Path | None, typer.Option(help="Server log file (default: a temporary file).")] = None,
    startup_timeout_s: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 120.0,
) -> None:
    """Serve a model repository with the real tritonserver; ONNX models run through the ORT adapter if needed."""
    options = ServerOptions(
        repository=repository,
        server_binary=server_binary,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        model_control_mode=model_control_mode,
        exit_timeout_s=exit_timeout_s,
        log_path=log_path,
        startup_timeout_s=startup_timeout_s,
    )
    serve_until_signalled(
        options,
        on_ready=lambda server: typer.echo(
            f"tritonserver ready: grpc {server.grpc_url}  http {server.http_url}  metrics {server.metrics_url}\n"
            f"log: {server.log_path}   (Ctrl-C to stop)"
        ),
    )
    typer.echo("tritonserver stopped")
