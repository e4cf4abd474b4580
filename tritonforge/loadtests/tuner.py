"""`tritonforge tune`: find the batching config with the highest throughput that meets a p99 SLO, on a live server.

    report = tune_model(model="digits", repository=Path("model_repository"), p99_ms=50.0, out_dir=Path("runs/tune"))
    print(format_trials(report))          # trials table; runs/tune has trials.csv, summary.json, pareto.png
    report.search.best.candidate          # also written as model_repository/digits/config.pbtxt (unless write=False)

Why on a live server: batching pays off or not depending on the backend, the cores and the request mix, so each
candidate is loaded into a running Triton with explicit model control (`load_model(model, config=json)`, no restart)
and measured with the same closed loop as `tritonforge compare`. The candidate is the SERVED config (read back from
the server, so the embedded server's python-backend adapter settings stay as they are) with only max_batch_size,
dynamic_batching and the instance count changed. The search itself (coordinate descent, memoised, with a confirmation
round against noise) is in `tuner_search`. The winner is written into the canonical repository with the same three
fields changed and everything else (weights, versions, other fields) untouched.

Nothing lost: the config as it was before the first tuning run that wrote to it is kept once beside it as
`config.pbtxt.original` (never overwritten by later runs), and the config each run replaced is kept in that run's
output folder as `config.pbtxt.previous`. An output folder that holds an earlier run (its summary.json,
trials.csv...) is refused with a ConfigError unless `overwrite=True` (`--overwrite`).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tritonforge._atomic import atomic_write_text
from tritonforge.converters.repository import CONFIG_NAME, model_filename, version_numbers
from tritonforge.converters.triton_config import (
    DEFAULT_QUEUE_BATCHES,
    DEFAULT_QUEUE_TIMEOUT_US,
    ENSEMBLE_PLATFORM,
    config_to_text,
    read_config,
    write_config,
)
from tritonforge.errors import ConfigError, ServerError
from tritonforge.loadtests.closed_loop import LoopFigures, request_batches, run_closed_loop
from tritonforge.loadtests.tuner_search import Candidate, SearchResult, SearchSpace, Trial, search

if TYPE_CHECKING:
    from tritonclient.grpc import InferenceServerClient, model_config_pb2

__all__ = [
    "ORIGINAL_CONFIG_NAME",
    "TuneReport",
    "apply_candidate",
    "batch_limit",
    "ensemble_floor",
    "canonical_config",
    "default_samples",
    "format_trials",
    "trials_csv",
    "tune_model",
]

_LOGGER = logging.getLogger(__name__)

_RANDOM_ROWS = 64
#: Beside the canonical config: the config before the first tuning run wrote to it (written once, never replaced).
ORIGINAL_CONFIG_NAME = "config.pbtxt.original"
#: What one run writes in its output folder; any of them there means the folder holds an earlier run.
_RUN_FILES = ("summary.json", "trials.csv", "pareto.png", "config.pbtxt.tuned", "config.pbtxt.previous")


@dataclass(frozen=True, kw_only=True)
class TuneReport:
    """What a tuning run measured and wrote.

    Attributes:
        model: the tuned model.
        url: the server measured ("embedded" plus its address, or the given --url).
        concurrency: closed-loop client threads per trial.
        seconds: length of each measurement (after `warmup_s`).
        warmup_s: untimed load after each config change.
        request_batch_size: items per request.
        search: every trial and the winner.
        seconds_per_measurement: mean wall time of one measurement (load, warm-up, measure).
        wall_s: the whole run's wall time.
        files: name -> path of what was written in the output folder.
        written_config: the canonical config.pbtxt the winner was written to, or None (dry run or no winner).
    """

    model: str
    url: str
    concurrency: int
    seconds: float
    warmup_s: float
    request_batch_size: int
    search: SearchResult
    seconds_per_measurement: float
    wall_s: float
    files: dict[str, str] = field(default_factory=dict)
    written_config: Path | None = None

    @property
    def speedup(self) -> float | None:
        """The winner's throughput over the default config's, when both were measured."""
        best, base = self.search.best, self.search.baseline
        if best is None or base is None or base.figures is None or best.figures is None:
            return None
        return best.figures.items_per_s / max(base.figures.items_per_s, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (summary.json)."""
        return {
            "model": self.model,
            "url": self.url,
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "warmup_s": self.warmup_s,
            "request_batch_size": self.request_batch_size,
            "seconds_per_measurement": self.seconds_per_measurement,
            "wall_s": self.wall_s,
            "speedup_vs_default": self.speedup,
            "written_config": str(self.written_config) if self.written_config else None,
            "files": dict(self.files),
            **self.search.to_dict(),
        }


def apply_candidate(config: Mapping[str, Any], candidate: Candidate) -> dict[str, Any]:
    """Return a served model config (Triton's JSON form) with the candidate's batching fields and nothing else changed.

    Sets max_batch_size, dynamic_batching.max_queue_delay_microseconds and preferred_batch_size (other
    dynamic_batching fields are kept; no dynamic_batching at all for a delay of None), the queue bound (see
    `queue_size`), and the count of every instance group (one group is added if there is none).
    """
    changed = copy.deepcopy(dict(config))
    old_batch_size = int(changed.get("max_batch_size", 0))
    changed["max_batch_size"] = candidate.max_batch_size
    if candidate.max_queue_delay_us is None:
        changed.pop("dynamic_batching", None)
    else:
        changed["dynamic_batching"] = _batching_json(changed.get("dynamic_batching"), candidate, old_batch_size)
    groups = [dict(group) for group in changed.get("instance_group") or []] or [{}]
    for group in groups:
        group["count"] = candidate.instances
    changed["instance_group"] = groups
    return changed


def queue_size(current: int | None, *, old_batch_size: int, new_batch_size: int) -> int:
    """The max_queue_size a tuned config gets: the default bound follows max_batch_size, a chosen one is kept.

    A config without a queue policy (batching added by the tuner) gets the generator's default of
    DEFAULT_QUEUE_BATCHES full batches, and so does one whose bound was that default for the old max_batch_size;
    any other bound was set on purpose and stays.
    """
    if current is None or current == DEFAULT_QUEUE_BATCHES * old_batch_size:
        return DEFAULT_QUEUE_BATCHES * new_batch_size
    return current


def _batching_json(current: Mapping[str, Any] | None, candidate: Candidate, old_batch_size: int) -> dict[str, Any]:
    batching = dict(current or {})
    policy = dict(batching.get("default_queue_policy") or {})
    size = int(policy["max_queue_size"]) if "max_queue_size" in policy else None
    if not policy:  # the generator's policy for a model the tuner turns batching on for
        policy = {"default_timeout_microseconds": str(DEFAULT_QUEUE_TIMEOUT_US), "allow_timeout_override": True}
    policy["max_queue_size"] = queue_size(size, old_batch_size=old_batch_size, new_batch_size=candidate.max_batch_size)
    batching["default_queue_policy"] = policy
    batching["max_queue_delay_microseconds"] = str(candidate.max_queue_delay_us)  # uint64: a string in proto JSON
    if candidate.preferred:
        batching["preferred_batch_size"] = list(candidate.preferred_batch_sizes)
    else:
        batching.pop("preferred_batch_size", None)
    return batching


def canonical_config(config: model_config_pb2.ModelConfig, candidate: Candidate) -> model_config_pb2.ModelConfig:
    """Return a copy of a canonical config with the candidate's batching fields; every other field is kept as it is."""
    from tritonclient.grpc import model_config_pb2

    tuned = model_config_pb2.ModelConfig()
    tuned.CopyFrom(config)
    tuned.max_batch_size = candidate.max_batch_size
    if candidate.max_queue_delay_us is None:
        tuned.ClearField("dynamic_batching")
    else:
        had_policy = tuned.dynamic_batching.HasField("default_queue_policy")
        tuned.dynamic_batching.SetInParent()  # present even at delay 0: the message's presence enables batching
        tuned.dynamic_batching.max_queue_delay_microseconds = candidate.max_queue_delay_us
        policy = tuned.dynamic_batching.default_queue_policy
        if not had_policy:
            policy.default_timeout_microseconds = DEFAULT_QUEUE_TIMEOUT_US
            policy.allow_timeout_override = True
        policy.max_queue_size = queue_size(
            policy.max_queue_size if had_policy else None,
            old_batch_size=config.max_batch_size,
            new_batch_size=candidate.max_batch_size,
        )
        del tuned.dynamic_batching.preferred_batch_size[:]
        tuned.dynamic_batching.preferred_batch_size.extend(candidate.preferred_batch_sizes)
    if not tuned.instance_group:
        tuned.instance_group.add()
    for group in tuned.instance_group:
        group.count = candidate.instances
    return tuned


def batch_limit(model_dir: Path, config: model_config_pb2.ModelConfig) -> int | None:
    """The largest max_batch_size the model's newest ONNX file allows: its fixed batch size, or None when dynamic.

    Returns None too for non-ONNX models (nothing to read); Triton then rejects a bad value at load time and the
    trial is recorded as failed.
    """
    from tritonforge.converters.onnx_graph import read_onnx_signature

    filename = model_filename(config)
    versions = version_numbers(model_dir)
    if filename is None or not filename.endswith(".onnx") or not versions:
        return None
    path = model_dir / str(versions[-1]) / filename
    if not path.is_file():
        return None
    fixed = {t.dims[0] for t in read_onnx_signature(path).inputs if t.dims and t.dims[0] > 0}
    return min(fixed) if fixed else None


def ensemble_floor(repository: Path, model: str) -> int | None:
    """The largest max_batch_size among the ensembles that call `model`: a smaller one would make them fail to load."""
    from tritonforge.serving.derived_repository import model_dirs

    floors = [
        int(config.max_batch_size)
        for config in (read_config(d / CONFIG_NAME) for d in model_dirs(repository))
        if config.platform == ENSEMBLE_PLATFORM
        and any(step.model_name == model for step in config.ensemble_scheduling.step)
    ]
    return max(floors) if floors else None


def default_samples(model: str, inputs: list[Any], max_batch_size: int) -> dict[str, npt.NDArray[Any]]:
    """Request rows when none are given: the held-out digits images for `digits`, else random data from metadata."""
    from tritonforge.examples import digits
    from tritonforge.loadtests.inputs import random_inputs

    if model == digits.MODEL_NAME and [t.name for t in inputs] == [digits.INPUT_NAME]:
        return {digits.INPUT_NAME: digits.load_split().x_test}
    rows = [
        random_inputs(inputs, max_batch_size=max_batch_size, batch_size=1, seed=seed) for seed in range(_RANDOM_ROWS)
    ]
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


class _ModelControl:
    """Explicit model control of one model on a running server, through tritonclient.grpc."""

    def __init__(self, url: str, model: str) -> None:
        from tritonclient.grpc import InferenceServerClient

        from tritonforge.serving.model_control import grpc_headers_for

        self.url, self.model = url, model
        self.client: InferenceServerClient = InferenceServerClient(url)
        # Model control is restricted to callers holding the server's key: the one this process started it with,
        # else $TRITONFORGE_MODEL_CONTROL_KEY (a server started elsewhere, e.g. `tritonforge serve`).
        self.headers = grpc_headers_for(url)

    def served_config(self) -> dict[str, Any]:
        from tritonclient.utils import InferenceServerException

        try:
            response = self.client.get_model_config(self.model, as_json=True, headers=self.headers)
        except InferenceServerException as exc:
            raise ServerError(
                f"cannot read the config of '{self.model}' from {self.url}: {exc.message()}; "
                "check that the model is loaded and the server runs with --model-control-mode=explicit"
            ) from None
        return dict(response["config"])

    def load(self, config: Mapping[str, Any], *, label: str, timeout_s: float = 120.0) -> None:
        from tritonclient.utils import InferenceServerException

        try:
            self.client.load_model(self.model, config=json.dumps(config), headers=self.headers)
        except InferenceServerException as exc:
            fix = (
                "; set TRITONFORGE_MODEL_CONTROL_KEY to the server's model-control key"
                if "restricted" in str(exc.message())
                else ""
            )
            raise ServerError(f"the server rejected config {label} of '{self.model}': {exc.message()}{fix}") from None
        deadline = time.monotonic() + timeout_s
        while not self.client.is_model_ready(self.model):
            if time.monotonic() > deadline:
                raise ServerError(f"'{self.model}' was not ready {timeout_s:g}s after loading config {label}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.close()


def tune_model(
    *,
    model: str,
    repository: Path,
    p99_ms: float,
    out_dir: Path,
    space: SearchSpace | None = None,
    concurrency: int = 16,
    seconds: float = 3.0,
    warmup_s: float = 0.5,
    request_batch_size: int = 1,
    samples: Mapping[str, npt.NDArray[Any]] | None = None,
    grid: bool = False,
    max_trials: int | None = None,
    confirm: int = 2,
    write: bool = True,
    url: str | None = None,
    progress: Callable[[Trial], None] | None = None,
    overwrite: bool = False,
) -> TuneReport:
    """Tune `model`'s batching on the embedded Triton (or the server at `url`) and write the winner.

    Args:
        model: the model to tune (not an ensemble).
        repository: the canonical model repository; the winner is written to `<repository>/<model>/config.pbtxt`.
        p99_ms: the p99 latency objective every trial must meet.
        out_dir: where the trials table, summary, plot and previous config go (a folder holding an earlier run
            needs `overwrite`).
        space: the values to search (default: `SearchSpace()`, capped at what the ONNX batch axis allows).
        concurrency: closed-loop client threads per measurement.
        seconds: length of each measurement.
        warmup_s: untimed load after each config change.
        request_batch_size: items per request.
        samples: request rows by input name (default: `default_samples`).
        grid: measure the whole grid instead of descending.
        max_trials: most measurements (see `tuner_search.search`).
        confirm: best configs re-measured once before the winner is declared.
        write: write the winner into the canonical repository.
        url: a running server with explicit model control to tune on instead of starting the embedded one; its
            model's original config is loaded back at the end.
        progress: called after each measurement.
        overwrite: replace an earlier run's files in `out_dir` (otherwise such a folder is refused).

    Returns:
        The report; `report.search.best` is None when no config met the SLO (nothing is written then).

    Raises:
        ConfigError: bad arguments, an ensemble, a model that does not batch, or an `out_dir` that holds an
            earlier run without `overwrite`.
        ServerError: the server did not start or the model did not load.
    """
    from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions

    if concurrency < 1 or seconds <= 0 or warmup_s < 0 or request_batch_size < 1 or p99_ms <= 0:
        raise ConfigError("concurrency and request batch size must be >= 1, seconds and p99 > 0, warm-up >= 0")
    model_dir = repository / model
    canonical_path = model_dir / CONFIG_NAME
    canonical = read_config(canonical_path) if canonical_path.is_file() else None
    if canonical is None and (url is None or write):
        raise ConfigError(
            f"{canonical_path} does not exist; pass the repository that holds '{model}' with --repository"
            + (" (or --no-write with --url)" if url else "")
        )
    if canonical is not None:
        if canonical.platform == ENSEMBLE_PLATFORM:
            raise ConfigError(f"'{model}' is an ensemble, which has no batching of its own; tune its member models")
        if canonical.max_batch_size < 1:
            raise ConfigError(
                f"'{model}' does not batch (max_batch_size 0); export it with a dynamic batch axis to tune batching"
            )
    space = (space or SearchSpace()).capped(batch_limit(model_dir, canonical) if canonical is not None else None)
    space = space.floored(ensemble_floor(repository, model) if repository.is_dir() else None)
    if request_batch_size > space.max_batch_sizes[0]:
        raise ConfigError(
            f"request batch size {request_batch_size} exceeds max_batch_size {space.max_batch_sizes[0]} in the "
            "search space; lower --request-batch-size or raise the smallest --max-batch-size"
        )
    _claim_out_dir(out_dir, overwrite=overwrite)
    started = time.perf_counter()
    server = None
    if url is None:
        options = ServerOptions(
            repository=repository,
            model_control_mode="explicit",
            extra_args=(f"--load-model={model}",),
            log_path=(out_dir / "tritonserver.log").resolve(),
        )
        server = EmbeddedTriton(options).start()
    try:
        target = url or (server.grpc_url if server is not None else "")
        result, per_measurement = _run_search(
            target=target, model=model, space=space, p99_ms=p99_ms, concurrency=concurrency, seconds=seconds,
            warmup_s=warmup_s, request_batch_size=request_batch_size, samples=samples, grid=grid,
            max_trials=max_trials, confirm=confirm, restore=url is not None, progress=progress,
            start_batch_size=canonical.max_batch_size if canonical is not None else None,
        )  # fmt: skip
    finally:
        if server is not None:
            server.stop()
    report = TuneReport(
        model=model,
        url=f"embedded ({server.grpc_url})" if server is not None else str(url),
        concurrency=concurrency,
        seconds=seconds,
        warmup_s=warmup_s,
        request_batch_size=request_batch_size,
        search=result,
        seconds_per_measurement=per_measurement,
        wall_s=time.perf_counter() - started,
    )
    return _write_outputs(report, out_dir, canonical_path, canonical, write=write)


def _run_search(
    *,
    target: str,
    model: str,
    space: SearchSpace,
    p99_ms: float,
    concurrency: int,
    seconds: float,
    warmup_s: float,
    request_batch_size: int,
    samples: Mapping[str, npt.NDArray[Any]] | None,
    grid: bool,
    max_trials: int | None,
    confirm: int,
    restore: bool,
    progress: Callable[[Trial], None] | None,
    start_batch_size: int | None,
) -> tuple[SearchResult, float]:
    from tritonforge.client import TritonClient

    control = _ModelControl(target, model)
    original = control.served_config()
    try:
        if samples is None:
            with TritonClient(target) as client:
                samples = default_samples(model, client.model_inputs(model), int(original.get("max_batch_size", 0)))
        requests = request_batches(samples, request_batch_size)
        durations: list[float] = []

        def measure(candidate: Candidate) -> LoopFigures:
            began = time.perf_counter()
            try:
                control.load(apply_candidate(original, candidate), label=candidate.label)
                if warmup_s > 0:
                    run_closed_loop(
                        url=target, model=model, requests=requests, concurrency=concurrency, seconds=warmup_s
                    )
                figures = run_closed_loop(
                    url=target, model=model, requests=requests, concurrency=concurrency, seconds=seconds
                )
            finally:
                durations.append(time.perf_counter() - began)
            _LOGGER.info(
                "%-24s %8.0f items/s  p50 %6.2f ms  p99 %6.2f ms  (%.1fs)",
                candidate.label, figures.items_per_s, figures.p50_ms, figures.p99_ms, durations[-1],
            )  # fmt: skip
            return figures

        result = search(
            space, measure, p99_ms=p99_ms, start=space.start(start_batch_size), grid=grid, max_trials=max_trials,
            confirm=confirm, progress=progress,
        )  # fmt: skip
        return result, float(np.mean(durations)) if durations else 0.0
    finally:
        if restore:
            try:
                control.load(original, label="original")
            except ServerError as exc:
                _LOGGER.warning("could not load the original config of '%s' back: %s", model, exc)
        control.close()


def _write_outputs(
    report: TuneReport,
    out_dir: Path,
    canonical_path: Path,
    canonical: model_config_pb2.ModelConfig | None,
    *,
    write: bool,
) -> TuneReport:
    files: dict[str, str] = {}
    trials_path = out_dir / "trials.csv"
    atomic_write_text(trials_path, trials_csv(report.search))
    files["trials_csv"] = str(trials_path)
    plot = _pareto_plot(report, out_dir / "pareto.png")
    if plot is not None:
        files["pareto_png"] = str(plot)
    written: Path | None = None
    best = report.search.best
    if best is not None and canonical is not None:
        tuned_path = out_dir / "config.pbtxt.tuned"
        atomic_write_text(tuned_path, config_to_text(canonical_config(canonical, best.candidate)))
        files["tuned_config"] = str(tuned_path)
        if write:
            original = canonical_path.with_name(ORIGINAL_CONFIG_NAME)
            if not original.exists():  # the first tuning run's backup; later runs never replace it
                atomic_write_text(original, canonical_path.read_text(encoding="utf-8"))
            files["original_config"] = str(original)
            previous = out_dir / "config.pbtxt.previous"
            shutil.copyfile(canonical_path, previous)
            files["previous_config"] = str(previous)
            written = write_config(canonical_config(read_config(canonical_path), best.candidate), canonical_path)
    summary_path = out_dir / "summary.json"
    files["summary_json"] = str(summary_path)
    final = TuneReport(**{**_fields(report), "files": files, "written_config": written})
    atomic_write_text(summary_path, json.dumps(final.to_dict(), indent=2) + "\n")
    return final


def _claim_out_dir(out_dir: Path, *, overwrite: bool) -> None:
    """Create `out_dir` for a run; one that holds an earlier run is refused, or emptied of it with `overwrite`.

    Raises:
        ConfigError: `out_dir` holds an earlier run and `overwrite` is not set.
    """
    earlier = [out_dir / name for name in _RUN_FILES if (out_dir / name).is_file()]
    if earlier and not overwrite:
        raise ConfigError(
            f"{out_dir} already holds a tuning run ({earlier[0].name}); pass --overwrite to replace it, "
            "or another --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in earlier:
        path.unlink()


def _fields(report: TuneReport) -> dict[str, Any]:
    return {name: getattr(report, name) for name in TuneReport.__dataclass_fields__}


def _pareto_plot(report: TuneReport, path: Path) -> Path | None:
    """Throughput against p99 of every trial, the SLO line and the winner marked."""
    from tritonforge.loadtests.plots import CurvePoint, plot_pareto

    points = []
    for trial in report.search.trials:
        figures = trial.figures
        if figures is None or not figures.requests:
            continue
        points.append(
            CurvePoint(
                label=trial.candidate.label,
                throughput_rps=figures.items_per_s,  # the objective's unit
                p50_ms=figures.p50_ms,
                p95_ms=figures.p95_ms,
                p99_ms=figures.p99_ms,
                passed=trial.meets_slo,
            )
        )
    if not points:
        return None
    best = report.search.best
    return plot_pareto(
        points,
        path,
        title=f"{report.model}: throughput against p99 ({report.search.strategy}, concurrency {report.concurrency})",
        slo_p99_ms=report.search.slo_p99_ms,
        best=best.candidate.label if best is not None else None,
    )


_COLUMNS = ("trial", "max_batch_size", "delay_us", "preferred", "instances", "runs", "req_per_s", "items_per_s",
            "p50_ms", "p99_ms", "meets_slo", "error")  # fmt: skip


def _rows(result: SearchResult) -> list[dict[str, Any]]:
    rows = []
    for trial in result.trials:
        figures, c = trial.figures, trial.candidate
        rows.append(
            {
                "trial": trial.index,
                "max_batch_size": c.max_batch_size,
                "delay_us": "off" if c.max_queue_delay_us is None else c.max_queue_delay_us,
                "preferred": ",".join(map(str, c.preferred_batch_sizes)) or "off",
                "instances": c.instances,
                "runs": len(trial.runs),
                "req_per_s": round(figures.requests_per_s, 1) if figures else "",
                "items_per_s": round(figures.items_per_s, 1) if figures else "",
                "p50_ms": round(figures.p50_ms, 3) if figures else "",
                "p99_ms": round(figures.p99_ms, 3) if figures else "",
                "meets_slo": trial.meets_slo,
                "error": trial.error or "",
            }
        )
    return rows


def trials_csv(result: SearchResult) -> str:
    """The trials as CSV text, one row per config (median figures over its runs)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rows(result))
    return buffer.getvalue()


def format_trials(report: TuneReport) -> str:
    """The trials as an aligned table, the winner marked with '*', then a summary line."""
    result = report.search
    header = ["", "trial", "max_batch", "delay us", "preferred", "inst", "runs", "req/s", "items/s", "p50 ms",
              "p99 ms", "SLO"]  # fmt: skip
    lines = [header]
    for trial, row in zip(result.trials, _rows(result), strict=True):
        best = result.best is not None and trial.candidate == result.best.candidate
        lines.append(
            ["*" if best else "", str(row["trial"]), str(row["max_batch_size"]), str(row["delay_us"]), row["preferred"],
             str(row["instances"]), str(row["runs"]),
             f"{row['req_per_s']:.0f}" if row["req_per_s"] != "" else "-",
             f"{row['items_per_s']:.0f}" if row["items_per_s"] != "" else "-",
             f"{row['p50_ms']:.2f}" if row["p50_ms"] != "" else "-",
             f"{row['p99_ms']:.2f}" if row["p99_ms"] != "" else "-",
             "pass" if trial.meets_slo else ("error" if trial.error else "FAIL")]
        )  # fmt: skip
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(header))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() for cells in lines)
    summary = (
        f"{result.strategy}: {len(result.trials)} configs, {result.measurements} measurements "
        f"(grid: {result.grid_size} configs), p99 SLO {result.slo_p99_ms:g} ms, "
        f"{report.seconds_per_measurement:.1f} s per measurement"
    )
    if result.best is not None and result.best.figures is not None:
        summary += f"\nbest: {result.best.candidate.label}, {result.best.figures.items_per_s:.0f} items/s"
        summary += f", p99 {result.best.figures.p99_ms:.2f} ms"
        if report.speedup is not None:
            summary += f" ({report.speedup:.2f}x the default {result.baseline.candidate.label})"  # type: ignore[union-attr]
    else:
        summary += "\nno config met the SLO"
    return table + "\n" + summary
