"""`tritonforge monitor serve`: the latest monitoring windows as Prometheus metrics, until Ctrl-C or SIGTERM.

    tritonforge monitor serve --log logs/ --repository model_repository           # every model, :9108 on loopback
    tritonforge monitor serve --log s3://bucket/log --models digits --listen 0.0.0.0 --interval 30s
    tritonforge monitor serve --log logs/ --once                                    # one refresh, printed

Loopback by default, like `tritonforge serve`; the metric names are in the README ("Live monitoring").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from tritonforge.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str, what: str) -> float:
    """`60s`, `1.5m`, `500ms` or a bare number of seconds, as seconds; a ConfigError naming the option otherwise."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a duration; write e.g. 60s, 5m or 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2) or "s"]


def serve(
    log: Annotated[str, typer.Option("--log", help="Prediction log: the sink's folder or URL (s3://...).")],
    repository: Annotated[
        Path, typer.Option("--repository", "-r", help="Model repository with references and monitoring.yaml.")
    ] = Path("model_repository"),
    models: Annotated[
        list[str] | None, typer.Option("--models", "-m", help="Models to watch (repeat; default: every model).")
    ] = None,
    window: Annotated[str, typer.Option(help="How far back each window reaches (30m, 1h, 1d).")] = "1h",
    interval: Annotated[str, typer.Option(help="Time between refreshes (60s, 5m).")] = "60s",
    listen: Annotated[
        str, typer.Option("--listen", help="IPv4 address to bind (0.0.0.0: every interface).", metavar="ADDRESS")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Metrics port (0: a free one).")] = 9108,
    run_for: Annotated[
        str | None, typer.Option(help="Stop after this long (default: until Ctrl-C or SIGTERM).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Refresh once, print the metrics and exit (no server).")] = False,
) -> None:
    """Export drift, quality, estimated accuracy, fairness gaps and log lag of each model as Prometheus metrics."""
    import signal
    import threading

    from tritonforge.monitoring.exporter import MonitorExporter, check_listen, exposition, run_exporter
    from tritonforge.monitoring.figures import WindowFigures

    interval_s = parse_duration_s(interval, "--interval")
    run_for_s = None if run_for is None else parse_duration_s(run_for, "--run-for")
    check_listen(listen)
    watched = models or _repository_models(repository)
    exporter = MonitorExporter(watched, WindowFigures(log=log, repository=repository, window=window))
    if once:
        failed = exporter.refresh()
        typer.echo(exposition(exporter), nl=False)
        if failed:
            raise ConfigError(f"{failed} of {len(watched)} model(s) could not be refreshed; see the log above")
        return

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ready(bound: int) -> None:
        where = "" if listen == "127.0.0.1" else " (reachable from other machines)"
        typer.echo(f"monitor metrics: http://{listen}:{bound}/metrics{where}")
        typer.echo(f"watching {', '.join(exporter.models)}: window {window}, refreshed every {interval}; Ctrl-C stops")

    try:
        run_exporter(
            exporter, listen=listen, port=port, interval_s=interval_s, run_for_s=run_for_s, stop=stop, on_ready=ready
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo("monitor stopped")


def _repository_models(repository: Path) -> list[str]:
    """Every model of the repository (a folder with a config.pbtxt); a ConfigError when there is none."""
    from tritonforge.serving.derived_repository import model_dirs

    if not repository.is_dir():
        raise ConfigError(f"model repository {repository} does not exist; pass --repository or --models")
    names = [folder.name for folder in model_dirs(repository)]
    if not names:
        raise ConfigError(f"no model in {repository} (no folder with a config.pbtxt); pass --repository or --models")
    return names
