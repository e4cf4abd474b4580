"""Quantized variants of a repository model: make each, gate it against FP32, time it, and write only those that pass.

    outcomes = quantize_to_repository(
        repository=Path("model_repository"), model_name="digits",
        settings=[QuantSettings(method=QuantMethod.INT8_DYNAMIC)],
        eval_set=EvalSet.from_npz(Path("eval.npz")), gate=GateSpec(metric=GateMetric.ACCURACY))
    for outcome in outcomes:
        print(outcome.name, outcome.passed, outcome.shortfall, outcome.written)   # digits_int8_dynamic ... 1

Order matters, as in export: every variant is made, gated and timed in a temporary folder first; the repository is
touched only to add the variants that passed, each through the atomic `add_version`. A variant that misses its gate
is never written, so a run in which nothing passes leaves the repository byte for byte as it was. Each written
version carries a manifest saying what it was made from (source hash), how (settings, exclusions and what each
cost), with which data (calibration and evaluation set hashes), how good it is (the gate's figures) and how fast
(in-process ONNX Runtime, side by side with FP32 in the same run).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.onnx_graph import read_onnx_signature
from tritonforge.converters.quality_gate import (
    GateMetric,
    GateResult,
    GateSpec,
    evaluate_gate,
    open_session,
    output_name,
    run_model,
)
from tritonforge.converters.quantize import QuantMethod, QuantSettings, preprocess_model, quantize_model
from tritonforge.converters.repository import (
    add_version,
    model_filename,
    read_manifest,
    sha256_file,
    tool_versions,
    version_numbers,
)
from tritonforge.converters.sensitivity import DEFAULT_MAX_TRIES, Granularity, SearchResult, search_exclusions
from tritonforge.converters.triton_config import read_config, validate_model_name
from tritonforge.errors import ConfigError, ConversionError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

_LOGGER = logging.getLogger(__name__)

SPEED_LARGE_BATCH = 16
SPEED_ROUNDS = 5
SPEED_SECONDS = 0.5
"""Seconds each model runs each timed batch size, split over SPEED_ROUNDS interleaved rounds."""


@dataclass(frozen=True, kw_only=True)
class SpeedPoint:
    """In-process ONNX Runtime speed at one batch size.

    Attributes:
        batch_size: items per run.
        p50_ms: median latency of one run, milliseconds.
        items_per_s: batch_size / median latency.
        runs: how many runs the median is over.
    """

    batch_size: int
    p50_ms: float
    items_per_s: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        """Return the point for a manifest."""
        return {
            "batch_size": self.batch_size,
            "p50_ms": round(self.p50_ms, 4),
            "items_per_s": round(self.items_per_s, 2),
            "runs": self.runs,
        }


def speed_feeds(eval_set: EvalSet, large_batch: int = SPEED_LARGE_BATCH) -> list[dict[str, npt.NDArray[Any]]]:
    """Real inputs to time: one item alone, and up to `large_batch` items together (when the batch has more than one).

    Both come from the evaluation set's middle batch: text sets are often sorted by length, and their first batch
    would hold the shortest sentences, where fixed per-run overhead hides the variants' differences.
    """
    middle = eval_set.batches[len(eval_set.batches) // 2]
    size = len(next(iter(middle.values())))
    feeds = [{name: array[:1] for name, array in middle.items()}]
    if min(size, large_batch) > 1:
        feeds.append({name: array[:large_batch] for name, array in middle.items()})
    return feeds


def measure_speed(
    models: Mapping[str, Path],
    feeds: Sequence[Mapping[str, npt.NDArray[Any]]],
    *,
    rounds: int = SPEED_ROUNDS,
    seconds: float = SPEED_SECONDS,
) -> dict[str, tuple[SpeedPoint, ...]]:
    """Time several models side by side: rounds interleave the models, so a busy moment slows all of them alike.

    Args:
        models: name -> ONNX file.
        feeds: the inputs to time, one per batch size.
        rounds: how many rounds; in each, every model runs every feed for `seconds / rounds` (at least once).
        seconds: the time each model spends on each feed over all rounds.

    Returns:
        name -> one SpeedPoint per feed (median latency over every run of every round).
    """
    sessions = {name: open_session(path) for name, path in models.items()}
    latencies: dict[str, list[list[float]]] = {name: [[] for _ in feeds] for name in models}
    for session in sessions.values():  # warm-up: first runs allocate and pick kernels
        for feed in feeds:
            for _ in range(2):
                session.run(None, dict(feed))
    for _ in range(rounds):
        for name, session in sessions.items():
            for index, feed in enumerate(feeds):
                inputs = dict(feed)
                deadline = time.perf_counter() + seconds / rounds
                while True:
                    started = time.perf_counter()
                    session.run(None, inputs)
                    ended = time.perf_counter()
                    latencies[name][index].append(ended - started)
                    if ended >= deadline:
                        break
    result = {}
    for name in models:
        points = []
        for index, feed in enumerate(feeds):
            batch = len(next(iter(feed.values())))
            median = statistics.median(latencies[name][index])
            points.append(
                SpeedPoint(
                    batch_size=batch,
                    p50_ms=median * 1e3,
                    items_per_s=batch / median,
                    runs=len(latencies[name][index]),
                )
            )
        result[name] = tuple(points)
    return result


@dataclass(frozen=True, kw_only=True)
class VariantOutcome:
    """What became of one requested variant.

    Attributes:
        requested: the settings asked for.
        settings: the settings of the variant that was gated last (with any exclusions the search added).
        name: the model name the variant goes (or would go) to.
        passed: whether it passed the gate (and was written).
        gate: the gate's figures on the whole evaluation set; None when the variant could not be made.
        shortfall: why it is not written: the gate's shortfall or the conversion error; None when passed.
        search: the accuracy-aware search, when it ran.
        speed: the variant's speed per batch size; None when it could not be made.
        reference_speed: FP32's speed, measured in the same run.
        file_size: the variant file's size in bytes (0 when it could not be made).
        written: the version folder written; None when not written.
    """

    requested: QuantSettings
    settings: QuantSettings
    name: str
    passed: bool
    gate: GateResult | None
    shortfall: str | None
    search: SearchResult | None
    speed: tuple[SpeedPoint, ...] | None
    reference_speed: tuple[SpeedPoint, ...]
    file_size: int
    written: Path | None = None

    @property
    def speedups(self) -> dict[int, float]:
        """Batch size -> variant items/s over FP32 items/s."""
        if self.speed is None:
            return {}
        return {
            mine.batch_size: mine.items_per_s / ref.items_per_s
            for mine, ref in zip(self.speed, self.reference_speed, strict=True)
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome for a report or a manifest."""
        return {
            "name": self.name,
            "requested": self.requested.to_dict(),
            "settings": self.settings.to_dict(),
            "passed": self.passed,
            "shortfall": self.shortfall,
            "gate": None if self.gate is None else self.gate.to_dict(),
            "accuracy_aware": None if self.search is None else self.search.to_dict(),
            "speed": _speed_dict(self.speed, self.reference_speed, self.speedups),
            "file_size": self.file_size,
            "written": None if self.written is None else str(self.written),
        }


def _speed_dict(
    speed: tuple[SpeedPoint, ...] | None, reference: tuple[SpeedPoint, ...], speedups: dict[int, float]
) -> dict[str, Any]:
    return {
        "how": f"in-process ONNX Runtime CPU, median over {SPEED_ROUNDS} interleaved rounds, FP32 in the same run",
        "variant": None if speed is None else [p.to_dict() for p in speed],
        "fp32": [p.to_dict() for p in reference],
        "speedup": {str(batch): round(ratio, 3) for batch, ratio in speedups.items()},
    }


def variant_name(model_name: str, settings: QuantSettings) -> str:
    """The default model name of a variant: "digits" + "int8-dynamic-pc" -> "digits_int8_dynamic_pc"."""
    return f"{model_name}_{settings.label}".replace("-", "_").replace(".", "_").replace("+", "_")


@dataclass(frozen=True, kw_only=True)
class _Source:
    config: model_config_pb2.ModelConfig
    version: int
    path: Path
    sha256: str


def _is_quantized(version_dir: Path) -> bool:
    try:
        return "quantization" in read_manifest(version_dir)
    except ConfigError:
        return False


def _find_source(repository: Path, model_name: str, source_version: int | None) -> _Source:
    validate_model_name(model_name)
    model_dir = repository / model_name
    config = read_config(model_dir / "config.pbtxt")
    filename = model_filename(config)
    if filename != "model.onnx":
        raise ConfigError(
            f"model '{model_name}' is not an ONNX model (platform {config.platform or config.backend!r}); "
            "quantize an exported ONNX model (tritonforge export)"
        )
    versions = version_numbers(model_dir)
    if source_version is None:
        fp32 = [v for v in versions if not _is_quantized(model_dir / str(v))]
        if not fp32:
            raise ConfigError(f"model '{model_name}' has no unquantized version in {model_dir}; export one first")
        source_version = fp32[-1]
    elif source_version not in versions:
        raise ConfigError(f"model '{model_name}' has no version {source_version}; it has {versions}")
    elif _is_quantized(model_dir / str(source_version)):
        raise ConfigError(
            f"version {source_version} of '{model_name}' is itself a quantized variant; "
            "pass the FP32 version as the source"
        )
    path = model_dir / str(source_version) / filename
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; version {source_version} of '{model_name}' has no model file")
    return _Source(config=config, version=source_version, path=path, sha256=sha256_file(path))


def _plan_names(
    model_name: str, settings: Sequence[QuantSettings], as_version: bool, name: str | None, overwrite: bool
) -> list[str]:
    if as_version:
        if name is not None:
            raise ConfigError("give either as_version (--as-version) or a variant name (--name), not both")
        if overwrite:
            raise ConfigError("overwrite replaces a variant model's latest version; with as_version it would "
                              "replace the source model's own latest version, so it is refused")  # fmt: skip
        return [model_name] * len(settings)
    if name is not None and len(settings) > 1:
        raise ConfigError(f"a variant name (--name {name}) fits one setting, got {len(settings)}; drop --name")
    names = [name] if name is not None else [variant_name(model_name, s) for s in settings]
    for candidate in names:
        validate_model_name(candidate)
        if candidate == model_name:
            raise ConfigError(f"variant name '{candidate}' is the source model's; use as_version (--as-version)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"two settings would write the same variant {duplicates}; give them different settings")
    return names


def _check_inputs(
    source: Path, settings: Sequence[QuantSettings], eval_set: EvalSet, calibration: EvalSet | None, spec: GateSpec
) -> None:
    if not settings:
        raise ConfigError("no quantization settings given; ask for at least one method (--method int8-dynamic)")
    inputs = [t.name for t in read_onnx_signature(source).inputs]
    for what, data in (("evaluation", eval_set), ("calibration", calibration)):
        if data is not None and sorted(data.input_names) != sorted(inputs):
            raise ConfigError(f"the {what} set has inputs {sorted(data.input_names)}, the model takes {inputs}; "
                              "name the .npz arrays after the model's inputs")  # fmt: skip
    if spec.metric is GateMetric.ACCURACY and eval_set.labels is None:
        raise ConfigError("the accuracy gate needs labels; add a 'labels' array to the evaluation set's .npz")
    if calibration is None and any(s.method is QuantMethod.INT8_STATIC for s in settings):
        raise ConfigError(
            "int8-static needs a calibration set to choose activation ranges; pass calibration= "
            "(--calibration-set calib.npz: a few hundred real inputs, not the evaluation set)"
        )


@dataclass
class _Made:
    requested: QuantSettings
    name: str
    settings: QuantSettings
    path: Path | None = None
    gate: GateResult | None = None
    error: str | None = None
    search: SearchResult | None = None


def _make_one(
    requested: QuantSettings,
    name: str,
    *,
    source: Path,
    preprocessed: Path | None,
    eval_set: EvalSet,
    calibration: EvalSet | None,
    reference: npt.NDArray[Any],
    spec: GateSpec,
    work: Path,
    accuracy_aware: bool,
    granularity: Granularity,
    sensitivity_items: int | None,
    max_tries: int,
) -> _Made:
    made = _Made(requested=requested, name=name, settings=requested)
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    base = preprocessed if requested.is_int8 and preprocessed is not None else source
    check_inputs = calibration if calibration is not None else eval_set  # FP16's NaN/Inf check runs on real inputs
    try:
        path = quantize_model(
            base, folder / "model.onnx", requested, check_inputs if not requested.is_int8 else calibration,
            preprocessed=requested.is_int8,
        )  # fmt: skip
        gate = evaluate_gate(reference, run_model(path, eval_set, spec.output), spec, eval_set.labels)
        made.path, made.gate = path, gate
        _LOGGER.info("%s: %s -> %s", name, gate.summary(), "pass" if gate.passed else f"FAIL ({gate.shortfall})")
        if not gate.passed and accuracy_aware:
            search = search_exclusions(
                model=base, settings=requested, eval_set=eval_set, reference=reference, spec=spec, workdir=folder,
                calibration=calibration if requested.is_int8 else check_inputs, granularity=granularity,
                sensitivity_items=sensitivity_items, max_tries=max_tries, quantized=path,
            )  # fmt: skip
            made.search, made.settings, made.gate, made.path = search, search.settings, search.gate, search.model_path
    except ConversionError as exc:
        made.error = str(exc)
        _LOGGER.warning("%s could not be made: %s", name, exc)
    return made


def _manifest(
    made: _Made,
    outcome: VariantOutcome,
    *,
    model_name: str,
    source: _Source,
    spec: GateSpec,
    resolved_output: str,
    eval_set: EvalSet,
    calibration: EvalSet | None,
) -> dict[str, Any]:
    assert made.gate is not None  # only passing variants get a manifest
    quantization = made.settings.to_dict()
    if made.search is not None:
        quantization["accuracy_aware"] = made.search.to_dict()
        quantization["excluded"] = [
            {"name": c.name, "nodes": list(c.nodes), "tolerance_used": c.to_dict()["tolerance_used"]}
            for c in made.search.excluded
        ]
    versions: dict[str, str | None] = dict(tool_versions())
    for tool in ("onnxconverter-common", "numpy"):
        try:
            versions[tool] = importlib.metadata.version(tool)
        except importlib.metadata.PackageNotFoundError:
            versions[tool] = None
    return {
        "source": f"{model_name} version {source.version}, quantized ({made.settings.label})",
        "quantized_from": {
            "model": model_name,
            "version": source.version,
            "model_file": source.path.name,
            "sha256": source.sha256,
        },
        "quantization": quantization,
        "calibration": None
        if calibration is None or made.settings.method is not QuantMethod.INT8_STATIC
        else {"sha256": calibration.sha256(), "items": calibration.num_items, "batches": len(calibration.batches)},
        "evaluation": {"sha256": eval_set.sha256(), "items": eval_set.num_items, "batches": len(eval_set.batches)},
        "gate": {"spec": {**spec.to_dict(), "output": resolved_output}, "result": made.gate.to_dict()},
        "speed": _speed_dict(outcome.speed, outcome.reference_speed, outcome.speedups),
        "tool_versions": versions,
    }


def _variant_config(source: _Source, name: str) -> model_config_pb2.ModelConfig:
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    config.CopyFrom(source.config)
    config.name = name
    return config


def quantize_to_repository(
    *,
    repository: Path,
    model_name: str,
    settings: Sequence[QuantSettings],
    eval_set: EvalSet,
    gate: GateSpec,
    calibration: EvalSet | None = None,
    source_version: int | None = None,
    as_version: bool = False,
    variant_name: str | None = None,
    accuracy_aware: bool = False,
    granularity: Granularity = Granularity.NODE,
    sensitivity_items: int | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
    speed_batch: int = SPEED_LARGE_BATCH,
    speed_seconds: float = SPEED_SECONDS,
    overwrite: bool = False,
) -> list[VariantOutcome]:
    """Make, gate and time each requested variant of a repository model; add the ones that pass to the repository.

    Args:
        repository: the model repository root.
        model_name: the FP32 ONNX model to quantize.
        settings: one entry per variant to make.
        eval_set: the gate's evaluation set (real inputs; labels for the accuracy gate).
        gate: the metric and tolerances.
        calibration: static INT8's calibration set (keep it apart from `eval_set`); FP16 checks its outputs on it.
        source_version: the version to quantize; default: the highest version that is not itself quantized.
        as_version: write each passing variant as the next version of `model_name` (Triton then serves it as
            the latest) instead of as a model of its own.
        variant_name: the model name for the (single) variant; default `variant_name(model_name, settings)`,
            e.g. "digits_int8_dynamic" — unique per settings. A variant model that exists gets its next version.
        accuracy_aware: when a variant fails, search for the fewest nodes to leave in float (see sensitivity.py).
        granularity: the search's candidates: single nodes or whole layers.
        sensitivity_items: measure the search's costs on this many evaluation items (None: all).
        max_tries: the search's bound on quantize-and-gate tries.
        speed_batch: the larger batch size timed besides batch 1.
        speed_seconds: how long each model runs each timed batch size (FP32 and every variant, interleaved).
        overwrite: replace a variant model's latest version instead of adding the next one (not with as_version).

    Returns:
        One outcome per setting, in order; failing ones carry their shortfall and are not written.

    Raises:
        ConfigError: a missing or non-ONNX model, a bad name or version, data that does not fit the model, or
            static INT8 without a calibration set.
    """
    source = _find_source(repository, model_name, source_version)
    names = _plan_names(model_name, settings, as_version, variant_name, overwrite)
    _check_inputs(source.path, settings, eval_set, calibration, gate)
    resolved_output = output_name(open_session(source.path), gate.output)
    _LOGGER.info("quantizing '%s' version %d (%d variant(s)) against %d evaluation items", model_name,
                 source.version, len(settings), eval_set.num_items)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tritonforge-variants-") as tmp:
        work = Path(tmp)
        reference = run_model(source.path, eval_set, resolved_output)
        preprocessed = None
        if any(s.is_int8 for s in settings):
            preprocessed = preprocess_model(source.path, work / "preprocessed.onnx")
        spec = GateSpec(
            metric=gate.metric, output=resolved_output, max_accuracy_drop_points=gate.max_accuracy_drop_points,
            min_cosine_mean=gate.min_cosine_mean, min_cosine_min=gate.min_cosine_min, max_abs_error=gate.max_abs_error,
        )  # fmt: skip
        made = [
            _make_one(
                requested,
                name,
                source=source.path,
                preprocessed=preprocessed,
                eval_set=eval_set,
                calibration=calibration,
                reference=reference,
                spec=spec,
                work=work,
                accuracy_aware=accuracy_aware,
                granularity=granularity,
                sensitivity_items=sensitivity_items,
                max_tries=max_tries,
            )  # fmt: skip
            for requested, name in zip(settings, names, strict=True)
        ]
        timed = {str(i): m.path for i, m in enumerate(made) if m.path is not None}
        speeds = measure_speed(
            {"fp32": source.path, **timed}, speed_feeds(eval_set, speed_batch), seconds=speed_seconds
        )
        outcomes = []
        for index, item in enumerate(made):
            passed = item.gate is not None and item.gate.passed
            shortfall = item.error if item.gate is None else item.gate.shortfall
            if item.search is not None and not passed:
                shortfall = f"{shortfall} (accuracy-aware: no passing variant in {len(item.search.attempts)} tries)"
            outcome = VariantOutcome(
                requested=item.requested, settings=item.settings, name=item.name, passed=passed, gate=item.gate,
                shortfall=shortfall, search=item.search, speed=speeds.get(str(index)), reference_speed=speeds["fp32"],
                file_size=item.path.stat().st_size if item.path is not None else 0,
            )  # fmt: skip
            if passed:
                assert item.path is not None
                manifest = _manifest(
                    item, outcome, model_name=model_name, source=source, spec=spec, resolved_output=resolved_output,
                    eval_set=eval_set, calibration=calibration,
                )  # fmt: skip
                existing = version_numbers(repository / item.name)
                replace = overwrite and bool(existing) and not as_version
                written = add_version(
                    repository=repository,
                    config=source.config if as_version else _variant_config(source, item.name),
                    model_file=item.path,
                    manifest=manifest,
                    version=existing[-1] if replace else None,
                    overwrite=replace,
                )
                outcome = dataclasses.replace(outcome, written=written)
            outcomes.append(outcome)
    return outcomes
