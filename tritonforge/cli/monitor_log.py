"""`tritonforge monitor labels` and `tritonforge monitor log-stats`: late labels into the log, and what it holds.

tritonforge monitor labels labels.csv --log logs/ [--model digits]   # request_id, [item_index], label[, model]
tritonforge monitor log-stats --log logs/ [--window 1h]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def labels(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet with request_id, [item_index], label[, model].")],
    log: Annotated[str, typer.Option("--log", help="Prediction log root (folder or fsspec URL).")],
    model: Annotated[str | None, typer.Option("--model", help="Model of labels that name none.")] = None,
) -> None:
    """Store late labels beside the prediction log (matched to predictions by request id)."""
    from tritonforge.monitoring.labels import import_labels

    count = import_labels(file, log=log, model=model)
    typer.echo(f"stored {count} labels under {log}")


def log_stats(
    log: Annotated[str, typer.Option("--log", help="Prediction log root (folder or fsspec URL).")],
    window: Annotated[str | None, typer.Option("--window", help="Duration back from now (1h) or START..END.")] = None,
) -> None:
    """Requests, items, failures, latency and time span per model in the prediction log."""
    from rich.console import Console
    from rich.table import Table

    from tritonforge.monitoring.log_reader import log_summary, parse_window

    bounds = parse_window(window)
    rows = log_summary(log, start=bounds["start"], end=bounds["end"])
    table = Table("model", "requests", "items", "failed", "p50 ms", "p99 ms", "labels", "first", "last")
    for row in rows:
        table.add_row(
            row.model, str(row.requests), str(row.items), str(row.failed), f"{row.p50_ms:.2f}", f"{row.p99_ms:.2f}",
            str(row.labels), f"{row.first:%Y-%m-%d %H:%M:%S}", f"{row.last:%Y-%m-%d %H:%M:%S}",
        )  # fmt: skip
    Console().print(table)
    if not rows:
        typer.echo(f"no predictions logged under {log}")
