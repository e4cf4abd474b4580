"""Quality and fairness from the prediction log: the window, its late labels and the reference, to a verdict.

    result = quality_from_log(log="logs/", repository=Path("model_repository"), model="digits", last=2000)
    print(result.verdict.alert, result.estimate.value)        # labelled verdict; accuracy estimated before labels
    write_json(result.to_dict(), Path("runs/quality/quality.json"))
    fairness = fairness_from_log(log="logs/", repository=Path("model_repository"), model="credit", attributes=["afam"])

Thresholds come from the model's monitoring.yaml (`quality` and `fairness` sections, defaults otherwise). The
reference (the version's evaluation outputs and labels, written at export) gives the metrics a window is compared
with and the data the calibration is fitted on. Labels are joined to items by request id and item index.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge._atomic import atomic_write_text
from tritonforge.errors import ConfigError
from tritonforge.monitoring.calibration import (
    AccuracyEstimate,
    Calibrator,
    estimate_accuracy,
    estimate_error_points,
    fit_calibration,
)
from tritonforge.monitoring.config import load_monitoring_config
from tritonforge.monitoring.drift import TensorKind
from tritonforge.monitoring.fairness import FairnessReport, window_fairness
from tritonforge.monitoring.quality import (
    QualityVerdict,
    WindowQuality,
    predicted_classes,
    quality_verdict,
    reference_quality,
    window_quality,
)
from tritonforge.monitoring.reference import Reference, load_reference


@dataclass(frozen=True, kw_only=True)
class QualityResult:
    """One window's quality: labelled metrics and verdict, and the estimate made without labels."""

    model: str
    reference_version: int
    output: str
    served_items: int
    reference_metrics: dict[str, float]
    quality: WindowQuality | None
    """None while no label has come for the window's items."""
    verdict: QualityVerdict
    estimate: AccuracyEstimate | None
    """Accuracy estimated over every served item of the window (None without reference labels)."""
    estimate_on_labelled: AccuracyEstimate | None
    """The same estimate over the labelled items only, to set beside their actual accuracy."""
    estimate_error_points: float | None
    """estimate_on_labelled - actual accuracy of the labelled items, in accuracy points."""
    calibrator: Calibrator | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (quality.json)."""
        calibration = None
        if self.calibrator is not None:
            calibration = {
                "method": self.calibrator.method.value,
                "temperature": self.calibrator.temperature,
                "reference_items": self.calibrator.reference_items,
            }
        return {
            "model": self.model,
            "reference_version": self.reference_version,
            "output": self.output,
            "served_items": self.served_items,
            "reference_metrics": self.reference_metrics,
            "quality": None if self.quality is None else self.quality.to_dict(),
            "verdict": self.verdict.to_dict(),
            "estimate": None if self.estimate is None else self.estimate.to_dict(),
            "estimate_on_labelled": None if self.estimate_on_labelled is None else self.estimate_on_labelled.to_dict(),
            "estimate_error_points": self.estimate_error_points,
            "calibration": calibration,
        }


def scores_output(reference: Reference, outputs: Sequence[str], output: str | None = None) -> str:
    """The classifier output to judge: `output`, else the one logged output the reference calls class scores.

    Raises:
        ConfigError: the output is not logged, or none (or several) could be chosen.
    """
    if output is not None:
        if output not in outputs:
            raise ConfigError(f"output {output!r} is not in the log (it has {', '.join(outputs) or 'no outputs'})")
        return output
    scores = [name for name in outputs if reference.kinds.get(name) is TensorKind.SCORES]
    if len(scores) == 1:
        return scores[0]
    if len(outputs) == 1:
        return outputs[0]
    raise ConfigError(
        f"cannot tell which output holds the class scores ({', '.join(outputs) or 'none logged'}); pass --output NAME"
    )


def _scores(window_outputs: dict[str, npt.NDArray[Any]], name: str) -> npt.NDArray[np.float64]:
    values = window_outputs[name]
    if values.dtype == object:
        if any(v is None for v in values):
            raise ConfigError(f"output {name!r} was logged as a summary for some items; log outputs in full")
        values = np.stack(list(values))
    return np.asarray(values, dtype=np.float64).reshape(len(values), -1)


def quality_from_log(
    *,
    log: str,
    repository: Path,
    model: str,
    version: int | None = None,
    output: str | None = None,
    start: Any = None,
    end: Any = None,
    last: int | None = None,
    seed: int = 0,
) -> QualityResult:
    """Read a window and its labels, measure its quality, judge it against the reference, and estimate accuracy.

    Args:
        log: the prediction log's root (folder or fsspec URL).
        repository: the model repository (reference and monitoring.yaml).
        model: the model.
        version: the reference's version, and the only version read from the log; default: the highest version
            that has a reference, and every logged version.
        output: the classifier output (default: the one the reference calls class scores).
        start: the window's start (see log_reader.parse_window).
        end: the window's end.
        last: only the latest N items.
        seed: the bootstrap's seed.

    Raises:
        ConfigError: no reference, an empty window, or no classifier output.
    """
    from tritonforge.monitoring.log_reader import join_labels, read_labels, read_predictions

    config = load_monitoring_config(repository, model).quality
    reference = load_reference(repository, model, version)
    window = read_predictions(
        log, model, start=start, end=end, last=last, version=None if version is None else str(version), seed=seed
    )
    if len(window) == 0:
        raise ConfigError(
            f"the window holds no logged predictions of '{model}' in {log}; widen --window or check --log and the model"
        )
    name = scores_output(reference, list(window.outputs), output)
    served = _scores(window.outputs, name)
    labelled = join_labels(window, read_labels(log, model))

    ref_metrics: dict[str, float] = {}
    ref_quality: WindowQuality | None = None
    calibrator = None
    if reference.labels is not None and name in reference.data:
        ref_scores = np.asarray(reference.data[name], dtype=np.float64).reshape(len(reference.labels), -1)
        ref_quality = reference_quality(
            reference.labels, predicted_classes(ref_scores), confidence_level=config.confidence_level, seed=seed
        )
        ref_metrics = {metric: value.value for metric, value in ref_quality.metrics.items()}
        calibrator = fit_calibration(ref_scores, reference.labels)
    estimate = None if calibrator is None else estimate_accuracy(
        calibrator, served, confidence_level=config.confidence_level
    )  # fmt: skip

    quality = on_labelled = error = None
    if len(labelled.labels) == 0:
        verdict = QualityVerdict(alert=False, reason="no labels yet for the window's items: the estimate stands in")
    else:
        labelled_scores = _scores(labelled.window.outputs, name)
        quality = window_quality(
            labelled.labels, predicted_classes(labelled_scores), served_items=len(window),
            confidence_level=config.confidence_level, seed=seed,
        )  # fmt: skip
        if ref_quality is not None:
            verdict = quality_verdict(quality, reference=ref_quality, config=config)
        else:
            verdict = QualityVerdict(
                alert=False, reason="the reference has no labels, so nothing to compare with; rebuild it with labels"
            )
        if calibrator is not None:
            on_labelled = estimate_accuracy(calibrator, labelled_scores, confidence_level=config.confidence_level)
            error = estimate_error_points(on_labelled, quality.metrics["accuracy"].value)
    return QualityResult(
        model=model,
        reference_version=reference.version,
        output=name,
        served_items=len(window),
        reference_metrics=ref_metrics,
        quality=quality,
        verdict=verdict,
        estimate=estimate,
        estimate_on_labelled=on_labelled,
        estimate_error_points=error,
        calibrator=calibrator,
    )


def fairness_from_log(
    *,
    log: str,
    repository: Path,
    model: str,
    attributes: Sequence[str] = (),
    version: int | None = None,
    output: str | None = None,
    start: Any = None,
    end: Any = None,
    last: int | None = None,
    seed: int = 0,
) -> list[FairnessReport]:
    """Per-group metrics and gaps for each attribute (default: the config's fairness.group_attributes).

    Raises:
        ConfigError: no attribute named, an attribute the log does not carry, an empty window.
    """
    import pandas as pd

    from tritonforge.monitoring.log_reader import read_labels, read_predictions

    config = load_monitoring_config(repository, model).fairness
    names = list(attributes) or list(config.group_attributes)
    if not names:
        raise ConfigError(
            f"no group attribute to slice '{model}' by; pass --attribute NAME or set fairness.group_attributes "
            f"in {repository / model / 'monitoring.yaml'}"
        )
    window = read_predictions(
        log, model, start=start, end=end, last=last, version=None if version is None else str(version), seed=seed
    )
    if len(window) == 0:
        raise ConfigError(
            f"the window holds no logged predictions of '{model}' in {log}; widen --window or check --log and the model"
        )
    missing = [name for name in names if name not in window.attributes]
    if missing:
        raise ConfigError(
            f"the logged requests carry no attribute {', '.join(map(repr, missing))} "
            f"(they carry {', '.join(sorted(window.attributes)) or 'none'}); pass it in infer(attributes=...)"
        )
    try:
        reference = load_reference(repository, model, version)
        name = scores_output(reference, list(window.outputs), output)
    except ConfigError:
        if output is None and len(window.outputs) != 1:
            raise
        name = output if output is not None else next(iter(window.outputs))
    predictions = predicted_classes(_scores(window.outputs, name))
    items = pd.DataFrame({"request_id": window.request_ids, "item_index": window.item_index})
    labels = read_labels(log, model)
    aligned = np.full(len(window), None, dtype=object)
    if len(labels):
        labels = labels.astype({"request_id": str, "item_index": np.int64})[["request_id", "item_index", "label"]]
        aligned = items.merge(labels, on=["request_id", "item_index"], how="left")["label"].to_numpy(dtype=object)
    quality = load_monitoring_config(repository, model).quality
    return [
        window_fairness(
            predictions,
            window.attributes[attribute],
            labels=aligned,
            attribute=attribute,
            config=config,
            confidence_level=quality.confidence_level,
            seed=seed,
        )  # fmt: skip
        for attribute in names
    ]


def write_json(payload: dict[str, Any], path: Path) -> Path:
    """Write a report as indented JSON, atomically (the folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, default=_plain) + "\n")
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def render_quality_table(result: QualityResult) -> Any:
    """A rich table: each metric with its interval beside the reference, then coverage and the estimate."""
    from rich.table import Table

    title = f"Quality of {result.model} (reference: version {result.reference_version}, output {result.output})"
    table = Table(title=title)
    for column in ("metric", "window", "interval", "reference", "verdict"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    checks = {check.metric: check for check in result.verdict.checks}
    if result.quality is not None:
        level = f"{100 * result.quality.confidence_level:g}%"
        for metric, value in result.quality.metrics.items():
            reference = result.reference_metrics.get(metric)
            check = checks.get(metric)
            table.add_row(
                metric, f"{value.value:.4f}", f"{level} [{value.low:.4f}, {value.high:.4f}]",
                "-" if reference is None else f"{reference:.4f}",
                "-" if check is None else ("DROP" if check.alert else "ok"),
            )  # fmt: skip
        table.add_row(
            "labelled items", str(result.quality.labelled_items), f"coverage {result.quality.coverage:.1%}", "", ""
        )
    if result.estimate is not None:
        e = result.estimate
        table.add_row(
            "estimated accuracy", f"{e.value:.4f}", f"[{e.low:.4f}, {e.high:.4f}]", "", f"{e.items} served, no labels"
        )
    if result.estimate_error_points is not None:
        table.add_row("estimate error (labelled)", f"{result.estimate_error_points:+.2f} pts", "", "", "")
    return table


def render_fairness_table(report: FairnessReport) -> Any:
    """A rich table of the groups, then the gaps with their intervals and limits."""
    from rich.table import Table

    table = Table(title=f"Fairness by {report.attribute}: {report.status.upper()}")
    for column in ("group / gap", "served", "labelled", "accuracy", "selection", "TPR", "FPR"):
        table.add_column(column, justify="left" if column == "group / gap" else "right")

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for row in report.groups:
        table.add_row(
            row.group + ("" if row.in_gaps else " (too small)"), str(row.served_items), str(row.labelled_items),
            cell(row.accuracy), cell(row.selection_rate), cell(row.true_positive_rate), cell(row.false_positive_rate),
        )  # fmt: skip
    for metric in sorted({gap.metric for gap in report.gaps}):
        gap = report.largest(metric)
        if gap is not None:
            table.add_row(
                f"{metric} (class {gap.positive_class})", f"{gap.value:.3f}", f"[{gap.low:.3f}, {gap.high:.3f}]",
                f"limit {gap.limit:g}", gap.status, "", "",
            )  # fmt: skip
    return table
