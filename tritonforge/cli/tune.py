"""`tritonforge tune`: search a model's batching config on the embedded Triton and write the winner.

    tritonforge tune digits --repository model_repository --slo slo/digits.yaml --concurrency 16 --out runs/tune
    tritonforge tune digits --p99-ms 20 --grid --no-write          # the full grid, nothing written
    tritonforge tune digits --p99-ms 20 --url 10.0.0.5:8001        # a server in explicit model-control mode

Exit code 0 when a config met the p99 SLO (and was written), 1 when none did (nothing is written then).
The config before the first tuning run is kept once as <model>/config.pbtxt.original, the one each run replaced in
its --out as config.pbtxt.previous; an --out holding an earlier run is refused unless --overwrite is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tritonforge.errors import ConfigError, SLOViolationError

if TYPE_CHECKING:
    import numpy.typing as npt

    from tritonforge.loadtests.tuner_search import SearchSpace, Trial


def parse_delays(values: list[str]) -> tuple[int | None, ...]:
    """Queue delays from the command line: whole microseconds, or "off" for no dynamic batching.

    Raises:
        ConfigError: a value is neither.
    """
    delays: list[int | None] = []
    for value in values:
        if value.strip().lower() in {"off", "none"}:
            delays.append(None)
            continue
        try:
            delays.append(int(value))
        except ValueError:
            raise ConfigError(f"--delay-us {value!r} is not whole microseconds or 'off'; e.g. --delay-us 500") from None
    return tuple(delays)


def parse_preferred(values: list[str]) -> tuple[bool, ...]:
    """Preferred batch sizes from the command line: "off" and/or "on" (on = preferred at max_batch_size).

    Raises:
        ConfigError: a value is neither.
    """
    flags = {"off": False, "on": True}
    unknown = [v for v in values if v.strip().lower() not in flags]
    if unknown:
        raise ConfigError(f"--preferred {unknown[0]!r} must be 'off' or 'on'")
    return tuple(flags[v.strip().lower()] for v in values)


def resolve_p99(model: str, slo: Path | None, p99_ms: float | None) -> float:
    """The p99 objective: --p99-ms, or the model's p99_ms in the --slo file.

    Raises:
        ConfigError: neither or both given, or the SLO file sets no p99 for the model.
    """
    from tritonforge.loadtests.slo import load_model_slo

    if (slo is None) == (p99_ms is None):
        raise ConfigError("give the latency objective with exactly one of --slo FILE or --p99-ms MS")
    if p99_ms is not None:
        if p99_ms <= 0:
            raise ConfigError(f"--p99-ms must be above 0, got {p99_ms:g}")
        return p99_ms
    assert slo is not None
    spec = load_model_slo(slo, model)
    if spec.p99_ms is None:
        raise ConfigError(f"SLO file {slo} sets no p99_ms for '{model}'; add one or pass --p99-ms")
    return spec.p99_ms


def build_space(
    max_batch_sizes: list[int] | None,
    delays_us: list[str] | None,
    preferred: list[str] | None,
    instances: list[int] | None,
) -> SearchSpace:
    """The search space: the defaults, with each knob given on the command line replaced."""
    from tritonforge.loadtests.tuner_search import SearchSpace

    overrides: dict[str, Any] = {}
    if max_batch_sizes:
        overrides["max_batch_sizes"] = tuple(max_batch_sizes)
    if delays_us:
        overrides["delays_us"] = parse_delays(delays_us)
    if preferred:
        overrides["preferred"] = parse_preferred(preferred)
    if instances:
        overrides["instances"] = tuple(instances)
    return SearchSpace(**overrides)


def _load_inputs(path: Path) -> dict[str, npt.NDArray[Any]]:
    from tritonforge.cli.compare import _load_samples

    return _load_samples(path)


def _progress(trial: Trial) -> None:
    figures = trial.figures
    status = "pass" if trial.meets_slo else ("error" if trial.error else "fail")
    if figures is None:
        typer.echo(f"  trial {trial.index:>3}  {trial.candidate.label:<24} {status}: {trial.error}", err=True)
        return
    typer.echo(
        f"  trial {trial.index:>3}  {trial.candidate.label:<24} {figures.items_per_s:>8.0f} items/s  "
        f"p99 {figures.p99_ms:6.2f} ms  {status}",
        err=True,
    )


def tune(
    model: Annotated[str, typer.Argument(help="The model to tune (not an ensemble).")],
    repository: Annotated[Path, typer.Option("--repository", "-r", help="Triton model repository.")] = Path(
        "model_repository"
    ),
    slo: Annotated[Path | None, typer.Option("--slo", help="SLO YAML file; its p99_ms for MODEL is the bar.")] = None,
    p99_ms: Annotated[float | None, typer.Option("--p99-ms", help="p99 latency objective in ms.")] = None,
    concurrency: Annotated[int, typer.Option(help="Closed-loop client threads per trial.")] = 16,
    seconds: Annotated[float, typer.Option(help="Length of each measurement (after the warm-up).")] = 3.0,
    warmup_s: Annotated[float, typer.Option("--warmup-s", help="Untimed load after each config change.")] = 0.5,
    request_batch_size: Annotated[int, typer.Option(help="Items per request.")] = 1,
    grid: Annotated[bool, typer.Option("--grid", help="Measure the whole grid instead of the descent.")] = False,
    max_trials: Annotated[
        int | None, typer.Option(help="Most measurements, confirmations included (default: a third of the grid).")
    ] = None,
    confirm: Annotated[int, typer.Option(help="Best configs re-measured once before the winner is declared.")] = 2,
    max_batch_sizes: Annotated[
        list[int] | None, typer.Option("--max-batch-size", help="max_batch_size values (repeat; default 8 16 32 64).")
    ] = None,
    delays_us: Annotated[
        list[str] | None,
        typer.Option("--delay-us", help="Queue delays in µs, or 'off' (repeat; default off 0 100 500 1000 2000 5000)."),
    ] = None,
    preferred: Annotated[
        list[str] | None, typer.Option("--preferred", help="Preferred batch size at the max: off/on (repeat).")
    ] = None,
    instances: Annotated[
        list[int] | None, typer.Option("--instances", help="Instance counts (repeat; default 1 2).")
    ] = None,
    inputs: Annotated[
        Path | None, typer.Option("--inputs", help=".npz of request rows by input name (default: held-out or random).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("runs/tune"),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier run's results in --out (otherwise refused).")
    ] = False,
    no_write: Annotated[
        bool, typer.Option("--no-write", "--dry-run", help="Do not write the winner into the repository.")
    ] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="HOST:PORT of a running server with explicit model control.")
    ] = None,
) -> None:
    """Find the batching config with the highest throughput that meets the p99 SLO; write it as the model's config."""
    from tritonforge.loadtests.tuner import format_trials, tune_model

    objective = resolve_p99(model, slo, p99_ms)
    space = build_space(max_batch_sizes, delays_us, preferred, instances)
    samples = _load_inputs(inputs) if inputs is not None else None
    typer.echo(
        f"tuning {model}: {'grid' if grid else 'coordinate descent'} over {space.size} configs, "
        f"concurrency {concurrency}, {seconds:g} s per trial, p99 SLO {objective:g} ms",
        err=True,
    )
    report = tune_model(
        model=model, repository=repository, p99_ms=objective, out_dir=out, space=space, concurrency=concurrency,
        seconds=seconds, warmup_s=warmup_s, request_batch_size=request_batch_size, samples=samples, grid=grid,
        max_trials=max_trials, confirm=confirm, write=not no_write, url=url, progress=_progress,
        overwrite=overwrite,
    )  # fmt: skip
    typer.echo(format_trials(report))
    typer.echo(f"outputs: {out}/ (trials.csv, summary.json{', pareto.png' if 'pareto_png' in report.files else ''})")
    if report.search.best is None:
        raise SLOViolationError(
            f"no config of '{model}' met p99 <= {objective:g} ms at concurrency {concurrency}; the config is "
            "unchanged; relax the SLO, lower --concurrency or widen the search"
        )
    if report.written_config is not None:
        typer.echo(
            f"wrote {report.written_config} (previous config: {report.files.get('previous_config')}; "
            f"the first original: {report.files.get('original_config')})"
        )
    elif "tuned_config" in report.files:
        typer.echo(f"not written (--no-write); the winning config is in {report.files['tuned_config']}")
