"""`tritonforge serve`: run tritonserver on a repository until Ctrl-C or SIGTERM.

Defaults chosen for a laptop or a CI machine: listen on 127.0.0.1 only; keep the run (server log, model-control key)
in runs/serve/<UTC time>/; restart a server that crashes (at most 3 times a minute) and say so loudly, because the
embedded Triton 2.51 can die with SIGSEGV under overload with client cancellations (Triton issues #7368 and #8034,
fixed in 24.12 and 25.04); exit non-zero naming the signal when it dies for good.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from tritonforge._runs import new_run_dir
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions
from tritonforge.serving.model_control import HEADER, MODEL_CONTROL_KEY_ENV, ModelControlKey
from tritonforge.serving.runner import serve_until_signalled

KEY_FILE = "model_control.key"
"""The file in the run folder that holds a generated model-control key (mode 0600)."""


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
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="IPv4 address gRPC, HTTP and metrics bind to (0.0.0.0: every interface).",
            metavar="ADDRESS",
        ),
    ] = "127.0.0.1",
    grpc_port: Annotated[int, typer.Option(help="gRPC port (0: a free one).")] = 8001,
    http_port: Annotated[int, typer.Option(help="HTTP port (0: a free one).")] = 8000,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (0: a free one).")] = 8002,
    model_control_mode: Annotated[
        str, typer.Option(help=f"none, explicit or poll (explicit/poll: calls need the {MODEL_CONTROL_KEY_ENV} key).")
    ] = "none",
    allow_remote_model_control: Annotated[
        bool,
        typer.Option(
            "--allow-remote-model-control", help="Permit explicit/poll model control with a non-loopback --listen."
        ),
    ] = False,
    restart_on_crash: Annotated[
        bool,
        typer.Option("--restart-on-crash/--no-restart-on-crash", help="Restart tritonserver when it crashes."),
    ] = True,
    max_restarts_per_minute: Annotated[int, typer.Option(help="Restart budget in any 60 s window.")] = 3,
    exit_timeout_s: Annotated[int, typer.Option(help="Seconds to drain in-flight requests on shutdown.")] = 30,
    run_dir: Annotated[
        Path | None, typer.Option(help="Folder for this run's log and key (default: runs/serve/<UTC time>).")
    ] = None,
    log_path: Annotated[Path | None, typer.Option(help="Server log file (default: RUN_DIR/tritonserver.log).")] = None,
    startup_timeout_s: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 120.0,
) -> None:
    """Serve a model repository with the real tritonserver; ONNX models run through the ORT adapter if needed."""
    options = ServerOptions(  # validated before anything is written
        repository=repository,
        server_binary=server_binary,
        listen=listen,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        model_control_mode=model_control_mode,
        allow_remote_model_control=allow_remote_model_control,
        restart_on_crash=restart_on_crash,
        max_restarts_per_minute=max_restarts_per_minute,
        exit_timeout_s=exit_timeout_s,
        log_path=log_path,
        startup_timeout_s=startup_timeout_s,
    )
    folder: Path | None = None  # created only when something goes in it
    key_note = ""
    if options.model_control:
        options.model_control_key = ModelControlKey.from_env()
        if options.model_control_key is None:
            options.model_control_key = ModelControlKey.generate()
            folder = _run_folder(run_dir)
            key_file = _write_private(folder / KEY_FILE, options.model_control_key.reveal())
            key_note = f"model-control key: {key_file} (export {MODEL_CONTROL_KEY_ENV}=$(cat {key_file}))"
        else:
            key_note = f"model-control key: from ${MODEL_CONTROL_KEY_ENV}"
        key_note += f"; load/unload calls send it as header {HEADER}"
    if options.log_path is None:
        options.log_path = (folder or _run_folder(run_dir)) / "tritonserver.log"
    restart_note = (
        f"restart on crash: ON, at most {max_restarts_per_minute} a minute (--no-restart-on-crash turns it off)"
        if restart_on_crash
        else "restart on crash: off"
    )

    def ready(server: EmbeddedTriton) -> None:
        lines = [
            f"tritonserver ready: grpc {server.grpc_url}  http {server.http_url}  metrics {server.metrics_url}",
            f"listening on {listen}" + ("" if listen == "127.0.0.1" else " (reachable from other machines)"),
            f"log: {server.log_path}   (Ctrl-C to stop)",
            restart_note,
        ]
        typer.echo("\n".join([*lines, key_note] if key_note else lines))

    def failed(server: EmbeddedTriton) -> None:
        tail = server.log_tail()
        if tail:
            typer.echo(f"last {len(tail)} lines of {server.log_path}:", err=True)
            typer.echo("\n".join(f"    {line}" for line in tail), err=True)

    serve_until_signalled(options, on_ready=ready, on_failure=failed)
    typer.echo("tritonserver stopped")


def _run_folder(run_dir: Path | None) -> Path:
    """The given folder, or a new runs/serve/<UTC time>[-n] folder."""
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    return new_run_dir(Path("runs") / "serve")


def _write_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read (0600), replacing any old one."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return path
