"""`tritonforge monitor ...`: keep a served model healthy from its prediction log.

Each command lives in its own module (monitor_log, monitor_drift, monitor_quality, monitor_serve); this module only
groups them under one typer sub-app, registered in tritonforge/cli/main.py.
"""

from __future__ import annotations

import typer

from tritonforge.cli import monitor_drift, monitor_log, monitor_quality, monitor_serve
from tritonforge.cli.one_line_errors import one_line_errors

monitor_app = typer.Typer(
    help="Prediction logs, drift, quality with late labels, fairness slices and live monitoring metrics.",
    no_args_is_help=True,
)

monitor_app.command("reference")(one_line_errors(monitor_drift.reference))
monitor_app.command("drift")(one_line_errors(monitor_drift.drift))
monitor_app.command("labels")(one_line_errors(monitor_log.labels))
monitor_app.command("log-stats")(one_line_errors(monitor_log.log_stats))
monitor_app.command("serve")(one_line_errors(monitor_serve.serve))
monitor_app.command("quality")(one_line_errors(monitor_quality.quality))
monitor_app.command("fairness")(one_line_errors(monitor_quality.fairness))
