"""`tritonforge compare`: every variant of a model side by side on the embedded Triton, in one run.

tritonforge compare digits --inputs build/digits_eval.npz --batch-size 1 --batch-size 8 --seconds 3

A --json file that already exists (an earlier run's report) is refused before anything is measured, unless
--overwrite is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer

from tritonforge.errors import ConfigError


def _load_samples(path: Path) -> dict[str, npt.NDArray[Any]]:
    from tritonforge.converters.eval_set import LABELS_KEY

    if not path.is_file():
        raise ConfigError(f"request inputs {path} do not exist; save them with numpy.savez(path, <input>=array)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files if name != LABELS_KEY}
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a readable .npz of input arrays ({exc})") from exc


def compare(
    model: Annotated[str, typer.Argument(help="The FP32 model whose variants to compare.")],
    inputs: Annotated[
        Path, typer.Option("--inputs", help=".npz of whole input arrays keyed by input name (e.g. the eval set).")
    ],
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    batch_sizes: Annotated[
        list[int] | None, typer.Option("--batch-size", "-b", help="Rows per request (repeat; default 1 and 8).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Client threads.")] = 4,
    seconds: Annotated[float, typer.Option(help="Length of each measurement.")] = 3.0,
    rounds: Annotated[int, typer.Option(help="Rounds; figures are medians.")] = 3,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --json report (otherwise refused).")
    ] = False,
) -> None:
    """Serve the FP32 model and every quantized variant of it; table of size, gate metric, speed and speed-up."""
    from tritonforge._atomic import atomic_write_text
    from tritonforge.loadtests.compare import compare_variants, format_compare

    if json_path is not None and json_path.exists() and not overwrite:
        raise ConfigError(
            f"{json_path} already exists (an earlier report); pass --overwrite to replace it, or another --json"
        )
    report = compare_variants(
        repository=repository, model=model, samples=_load_samples(inputs), batch_sizes=batch_sizes or [1, 8],
        concurrency=concurrency, seconds=seconds, rounds=rounds,
    )  # fmt: skip
    typer.echo(
        f"{model}: {len(report.rows)} variant(s), concurrency {concurrency}, medians of {rounds} x {seconds:g} s"
    )
    typer.echo(format_compare(report, markdown=markdown))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
