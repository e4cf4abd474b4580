"""`tritonforge report A.json B.json`: two runs side by side, every metric with B against A.

    tritonforge report runs/before/summary.json runs/after/summary.json
    tritonforge report runs/cap_a/capacity.json runs/cap_b/capacity.json

SREs judge a change (config, version, node) by comparing a run before and after it; this prints both runs'
percentiles, rates, errors, late requests, server breakdown, generator CPU and SLO verdicts in one table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tritonforge.loadtests.run_diff import diff_runs, format_diff


def report(
    a: Annotated[Path, typer.Argument(help="Run A: a summary.json (or capacity.json).", show_default=False)],
    b: Annotated[Path, typer.Argument(help="Run B, compared with A.", show_default=False)],
) -> None:
    """Print two load-test (or capacity) summaries side by side, with B against A."""
    typer.echo(format_diff(diff_runs(a, b)))
