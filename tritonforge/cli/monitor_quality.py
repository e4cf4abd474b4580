"""`tritonforge monitor quality` and `tritonforge monitor fairness`: a window's quality from late labels, and its gaps.

tritonforge monitor quality digits --log logs/ --repository model_repository --last 2000 --out runs/quality
tritonforge monitor fairness credit --log logs/ --attribute afam --window 1d --out runs/fairness
# exit 1 when quality dropped below the reference beyond its interval / a gap is beyond its limit; 0 otherwise
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_Log = Annotated[str, typer.Option("--log", help="Prediction log root (folder or fsspec URL).")]
_Repository = Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")]
_Version = Annotated[int | None, typer.Option("--version", help="Reference version, and only its logged requests.")]
_Window = Annotated[str | None, typer.Option("--window", help="Duration back from now (1h) or START..END.")]
_Last = Annotated[int | None, typer.Option("--last", help="Only the latest N items.")]
_Output = Annotated[str | None, typer.Option("--output", help="Classifier output (default: the class scores).")]
_Seed = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap intervals.")]


def quality(
    model: Annotated[str, typer.Argument(help="Model name.")],
    log: _Log,
    repository: _Repository = Path("model_repository"),
    version: _Version = None,
    window: _Window = None,
    last: _Last = None,
    output: _Output = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for quality.json.")] = None,
    seed: _Seed = 0,
) -> None:
    """Quality of a window from its late labels against the reference, and accuracy estimated before labels."""
    from rich.console import Console

    from tritonforge.monitoring.log_reader import parse_window
    from tritonforge.monitoring.quality_report import quality_from_log, render_quality_table, write_json

    result = quality_from_log(
        log=log, repository=repository, model=model, version=version, output=output, seed=seed,
        **parse_window(window, last),
    )  # fmt: skip
    Console().print(render_quality_table(result))
    typer.echo(("QUALITY DROP: " if result.verdict.alert else "") + result.verdict.reason)
    if out is not None:
        typer.echo(f"wrote {write_json(result.to_dict(), out / 'quality.json')}")
    if result.verdict.alert:
        raise typer.Exit(1)


def fairness(
    model: Annotated[str, typer.Argument(help="Model name.")],
    log: _Log,
    attribute: Annotated[
        list[str] | None,
        typer.Option("--attribute", "-a", help="Group attribute (repeatable; default: the config's list)."),
    ] = None,
    repository: _Repository = Path("model_repository"),
    version: _Version = None,
    window: _Window = None,
    last: _Last = None,
    output: _Output = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for fairness.json.")] = None,
    seed: _Seed = 0,
) -> None:
    """Per-group metrics and demographic-parity / equalized-odds gaps; exit 1 when a gap is beyond its limit."""
    from rich.console import Console

    from tritonforge.monitoring.log_reader import parse_window
    from tritonforge.monitoring.quality_report import fairness_from_log, render_fairness_table, write_json

    reports = fairness_from_log(
        log=log, repository=repository, model=model, attributes=attribute or (), version=version, output=output,
        seed=seed, **parse_window(window, last),
    )  # fmt: skip
    console = Console()
    for report in reports:
        console.print(render_fairness_table(report))
        typer.echo(f"{report.attribute}: {report.reason}")
    if out is not None:
        payload = {"model": model, "attributes": [report.to_dict() for report in reports]}
        typer.echo(f"wrote {write_json(payload, out / 'fairness.json')}")
    if any(report.alert for report in reports):
        raise typer.Exit(1)
