"""Quantized variants of a repository model: make each, gate it against FP32, measure it, write those that earn it.

    outcomes = quantize_to_repository(
        repository=Path("model_repository"), model_name="digits",
        settings=[QuantSettings(method=QuantMethod.INT8_DYNAMIC)],
        eval_set=EvalSet.from_npz(Path("eval.npz")), gate=GateSpec(metric=GateMetric.ACCURACY))
    for outcome in outcomes:
        print(outcome.name, outcome.verdict, outcome.written)   # digits_int8_dynamic pass .../1

A variant is written only when it passes the gate, holds what its name says (INT8 ops for int8, float16 weights or
ops for fp16: checked on the graph it is, see merit.py) and is smaller or faster than FP32 on this run's own
measurement (file sizes, and medians of interleaved timing rounds beside FP32), or when the caller forces the last
condition, which the outcome and the manifest then say. Order matters, as in export: every variant is made, gated and
measured in a temporary folder first; the repository is touched only to add the variants that earned it, each
through the atomic `add_version`, so a run in which nothing earns it leaves the repository byte for byte as it was.
Each written version carries a manifest saying what it was made from (source hash), how (settings, exclusions and
what each cost), with which data (calibration and evaluation set hashes), how good it is (the gate's figures), what
its graph holds, and how big and fast it is beside FP32.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.merit import Merit, describe_evidence, judge_merit, precision_evidence
from tritonforge.converters.onnx_graph import read_onnx_signature
from tritonforge.converters.quality_gate import (
    GateMetric,
    GateResult,
    GateSpec,
    check_scores_output,
    evaluate_gate,
    open_session,
    output_name,
    run_model,
    scores_accuracy,
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
from tritonforge.converters.speed import (
    SPEED_LARGE_BATCH,
    SPEED_ROUNDS,
    SPEED_SECONDS,
    Measured,
    SpeedPoint,
    measure_models,
    measure_speed,
    speed_feeds,
)
from tritonforge.converters.triton_config import read_config, validate_model_name
from tritonforge.errors import ConfigError, ConversionError

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

__all__ = [
    "SPEED_LARGE_BATCH",
    "SPEED_SECONDS",
    "Measure",
    "SpeedPoint",
    "VariantOutcome",
    "measure_speed",
    "outcomes_report",
    "quantize_to_repository",
    "speed_feeds",
    "variant_name",
]

_LOGGER = logging.getLogger(__name__)

Measure = Callable[..., Mapping[str, Measured]]
"""How variants and FP32 are measured: (models: name -> file, feeds, *, seconds) -> name -> Measured.

The default is `speed.measure_models`; tests pass figures of their own, since the decision is what they check.
"""


@dataclass(frozen=True, kw_only=True)
class VariantOutcome:
    """What became of one requested variant, beside the FP32 baseline it was measured against.

    Attributes:
        requested: the settings asked for.
        settings: the settings of the variant that was gated last (with any exclusions the search added).
        name: the model name the variant goes (or would go) to.
        passed: whether it passed the gate (written only if it also earns its name, or is forced).
        gate: the gate's figures on the whole evaluation set; None when the variant could not be made.
        shortfall: why it missed the gate: the gate's shortfall or the conversion error; None when it passed.
        search: the accuracy-aware search, when it ran.
        speed: the variant's speed per batch size; None when it could not be made.
        reference_speed: FP32's speed, measured in the same run.
        file_size: the variant file's size in bytes (0 when it could not be made).
        reference_size: FP32's file size in bytes.
        reference_accuracy: FP32's accuracy on the evaluation set (labels and class scores only).
        evidence: what in the variant's graph shows its method (op type -> count; see merit.py); empty: none.
        merit: its size and speed against FP32 and whether that earns it a place; None when it could not be made.
        refusal: why a variant that passed the gate is not written (no quantized op, neither smaller nor faster).
        warnings: what the report must say about a written variant (e.g. forced although not smaller or faster).
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
    reference_size: int = 0
    reference_accuracy: float | None = None
    evidence: dict[str, int] = field(default_factory=dict)
    merit: Merit | None = None
    refusal: str | None = None
    warnings: tuple[str, ...] = ()
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

    @property
    def verdict(self) -> str:
        """One line for a table: "pass", "pass (forced: ...)", "REFUSED: ..." or "FAIL: ..."."""
        if not self.passed:
            return f"FAIL: {self.shortfall}"
        if self.refusal is not None:
            return f"REFUSED: {self.refusal}"
        return "pass" + "".join(f" (WARNING: {w})" for w in self.warnings)

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
            "evidence": self.evidence,
            "merit": None if self.merit is None else self.merit.to_dict(),
            "refusal": self.refusal,
            "warnings": list(self.warnings),
            "written": None if self.written is None else str(self.written),
        }


def baseline_dict(outcome: VariantOutcome) -> dict[str, Any]:
    """FP32's row of a report: accuracy (when labels and class scores), file size and speed from the same run."""
    return {
        "name": "fp32 (source)",
        "accuracy": outcome.reference_accuracy,
        "file_size": outcome.reference_size,
        "speed": [p.to_dict() for p in outcome.reference_speed],
    }


def outcomes_report(model_name: str, outcomes: Sequence[VariantOutcome]) -> dict[str, Any]:
    """The JSON report of a quantize run: the FP32 baseline, then every variant with its figures and verdict."""
    if not outcomes:
        raise ConfigError("no outcomes to report; quantize at least one variant")
    return {
        "model": model_name,
        "fp32": baseline_dict(outcomes[0]),
        "variants": [o.to_dict() for o in outcomes],
        "written": [o.name for o in outcomes if o.written is not None],
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
        "fp32": baseline_dict(outcome),
        "evidence": outcome.evidence,
        "merit": None if outcome.merit is None else outcome.merit.to_dict(),
        "warnings": list(outcome.warnings),
        "tool_versions": versions,
    }


def _no_quantized_op(item: _Made) -> str:
    """Why a variant that holds nothing of its method is refused, and what to do instead."""
    what = "no op was quantized" if item.settings.is_int8 else "no weight or op was converted to float16"
    why = ""
    if item.search is not None and len(item.search.excluded) == len(item.search.candidates):
        why = f" (the accuracy-aware search kept all {len(item.search.candidates)} quantized node(s) in float to pass)"
    elif item.settings.exclude_nodes:
        why = f" ({len(item.settings.exclude_nodes)} node(s) kept in float)"
    return (
        f"{what}{why}, so {item.name} would be the FP32 model under another name; nothing written: loosen the "
        "gate's tolerance, try --per-channel, another --method or fewer --exclude, or keep serving the FP32 model"
    )


def _judge(
    item: _Made, evidence: dict[str, int], merit: Merit | None, force: bool
) -> tuple[str | None, tuple[str, ...]]:
    """Why a variant that passed its gate is not written (None: it is), and the warnings it is written with."""
    if not evidence:
        return _no_quantized_op(item), ()
    if merit is None:
        return "its size and speed were not measured beside FP32, so nothing says it earns its place; not written", ()
    if merit.earned:
        return None, ()
    if force:
        return None, (f"neither smaller nor faster than FP32 ({merit.summary()}); written because it was forced",)
    return (
        f"neither smaller nor faster than FP32 in this run ({merit.summary()}); not written: keep serving the FP32 "
        "model, or force it (--force) to write it anyway",
        (),
    )


def _outcome(
    item: _Made, figures: Mapping[str, Measured], index: int, *, force: bool, reference_accuracy: float | None
) -> VariantOutcome:
    """Turn one made variant and the side-by-side figures into its outcome (not yet written)."""
    reference = figures["fp32"]
    mine = figures.get(str(index))
    passed = item.gate is not None and item.gate.passed
    shortfall = item.error if item.gate is None else item.gate.shortfall
    if item.search is not None and not passed:
        shortfall = f"{shortfall} (accuracy-aware: no passing variant in {len(item.search.attempts)} tries)"
    evidence = precision_evidence(item.path, item.settings.method) if item.path is not None else {}
    merit = None if mine is None else judge_merit(variant=mine, reference=reference)
    refusal, warnings = _judge(item, evidence, merit, force) if passed else (None, ())
    if passed:
        _LOGGER.info("%s holds %s; %s -> %s", item.name, describe_evidence(evidence),
                     merit.summary() if merit is not None else "not measured", refusal or "written")  # fmt: skip
    return VariantOutcome(
        requested=item.requested, settings=item.settings, name=item.name, passed=passed, gate=item.gate,
        shortfall=shortfall, search=item.search, speed=None if mine is None else mine.speed,
        reference_speed=reference.speed, file_size=0 if mine is None else mine.size_bytes,
        reference_size=reference.size_bytes, reference_accuracy=reference_accuracy, evidence=evidence, merit=merit,
        refusal=refusal, warnings=warnings,
    )  # fmt: skip


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
    force: bool = False,
    measure: Measure | None = None,
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
        force: also write a variant that passed the gate but is neither smaller nor faster than FP32 (with a
            warning in its outcome and manifest). A variant that holds no op of its method is never written.
        measure: how sizes and speeds are measured (default `speed.measure_models`, FP32 and every variant side by
            side in one run); tests inject figures here.

    Returns:
        One outcome per setting, in order. Written: passed the gate, holds ops of its method (INT8 ops for int8,
        float16 weights or ops for fp16) and is smaller or faster than FP32 (or forced). The others carry their
        shortfall or refusal.

    Raises:
        ConfigError: a missing or non-ONNX model, a bad name or version, data that does not fit the model, an
            accuracy gate on an output that is not class scores, or static INT8 without a calibration set.
    """
    source = _find_source(repository, model_name, source_version)
    names = _plan_names(model_name, settings, as_version, variant_name, overwrite)
    _check_inputs(source.path, settings, eval_set, calibration, gate)
    session = open_session(source.path)
    resolved_output = output_name(session, gate.output)
    if gate.metric is GateMetric.ACCURACY:
        check_scores_output(session, resolved_output)
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
        feeds = speed_feeds(eval_set, speed_batch)
        figures = (measure or measure_models)({"fp32": source.path, **timed}, feeds, seconds=speed_seconds)
        fp32_accuracy = scores_accuracy(reference, eval_set.labels)
        outcomes = []
        for index, item in enumerate(made):
            outcome = _outcome(item, figures, index, force=force, reference_accuracy=fp32_accuracy)
            if outcome.passed and outcome.refusal is None:
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
