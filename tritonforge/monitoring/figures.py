"""The figures `monitor serve` publishes, computed from one read of a model's latest window of the prediction log.

    compute = WindowFigures(log="logs/", repository=Path("model_repository"), window="1h")
    figures = compute("digits")      # ModelFigures: drift per feature group, quality, estimate, fairness, log lag
    MonitorExporter(["digits"], compute)

Each call reads the window once (sampled to the model's drift.max_items) and reuses the library's own analyses:
drift (drift.detect_drift against the newest reference), quality and its verdict from the labels joined to the window
(quality.window_quality / quality_verdict), accuracy estimated from calibrated confidences fitted on the reference
(calibration), and fairness gaps per group attribute of the model's monitoring.yaml (fairness.window_fairness).
A part that cannot be computed (no reference yet, too few labels, one group too small) is left out and said so in
the log at debug level; the exporter then publishes the rest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tritonforge.errors import ConfigError
from tritonforge.monitoring.exporter import DriftFigure, FairnessGap, LogFigures, ModelFigures, QualityFigures

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from tritonforge.monitoring.calibration import Calibrator
    from tritonforge.monitoring.config import MonitoringConfig
    from tritonforge.monitoring.drift import DriftReport
    from tritonforge.monitoring.log_reader import LabelledItems, PredictionWindow
    from tritonforge.monitoring.reference import Reference

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Known:
    """A loaded reference and what is fitted on it, kept until the reference changes on disk."""

    stamp: tuple[int, float]
    reference: Reference
    scores: str | None
    calibrator: Calibrator | None
    metrics: dict[str, float]


class WindowFigures:
    """`compute(model)` for the exporter: the model's figures over the latest `window` of the log.

    Args:
        log: the prediction log's root (local folder or fsspec URL).
        repository: the model repository (references and monitoring.yaml).
        window: how far back the window reaches (`1h`, `30m`), or a fixed range `START..END` (ISO times; see
            log_reader.parse_window).
        seed: seed of the window's sample and of the tests' resampling (the same window gives the same figures).
        now: the clock (UTC), replaceable in tests.
    """

    def __init__(
        self,
        *,
        log: str,
        repository: Path,
        window: str = "1h",
        seed: int = 0,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        from tritonforge.monitoring.log_reader import parse_window

        parse_window(window)  # a bad window is refused before the first refresh
        self.log, self.repository, self.window, self.seed = log, repository, window, seed
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self._known: dict[str, _Known] = {}

    def __call__(self, model: str) -> ModelFigures:
        """Read the model's latest window and compute every figure it allows."""
        from tritonforge.monitoring.config import load_monitoring_config
        from tritonforge.monitoring.log_reader import parse_window, read_predictions

        config = load_monitoring_config(self.repository, model)
        bounds = parse_window(self.window, now=self._now())
        window = read_predictions(
            self.log, model, start=bounds["start"], end=bounds["end"], max_items=config.drift.max_items, seed=self.seed
        )
        log = LogFigures(items=window.total_items, last_record_time_s=self._last_record_s(model, window))
        if len(window) == 0:
            return ModelFigures(window_items=0, log=log)
        known = self._reference(model)
        scores = _scores(window, known)
        drift = self._drift(window, known, config)
        quality, estimate, predictions = None, None, None
        labelled = None
        if scores is not None:
            from tritonforge.monitoring.log_reader import join_labels, read_labels
            from tritonforge.monitoring.quality import predicted_classes

            predictions = predicted_classes(scores)
            labelled = join_labels(window, read_labels(self.log, model))  # read once: quality and fairness share it
            quality = self._quality(window, predictions, labelled, known, config)
            if known is not None and known.calibrator is not None:
                from tritonforge.monitoring.calibration import estimate_accuracy

                estimate = estimate_accuracy(
                    known.calibrator, scores, confidence_level=config.quality.confidence_level
                ).value
        fairness = (
            [] if predictions is None or labelled is None else self._fairness(window, predictions, labelled, config)
        )
        return ModelFigures(
            window_items=window.total_items,
            drift=drift,
            quality=quality,
            estimated_accuracy=estimate,
            fairness=fairness,
            log=log,
        )

    def _last_record_s(self, model: str, window: PredictionWindow) -> float | None:
        """Time of the newest record: the window's own when it has items, else one look past it."""
        from tritonforge.monitoring.log_reader import read_predictions

        newest = window if len(window) else read_predictions(self.log, model, last=1)
        if len(newest) == 0:
            return None
        latest = np.max(newest.times).astype("datetime64[us]").astype(np.int64)
        return float(latest) / 1e6

    def _reference(self, model: str) -> _Known | None:
        """The newest reference of the model, loaded once per change on disk; None while it has none."""
        from tritonforge.monitoring.drift import TensorKind
        from tritonforge.monitoring.reference import PROFILE_FILE, REFERENCE_DIR, load_reference, reference_version

        try:
            version = reference_version(self.repository / model)
        except ConfigError as exc:
            _LOGGER.debug("%s: no drift, reference quality or estimate: %s", model, exc)
            return None
        profile = self.repository / model / str(version) / REFERENCE_DIR / PROFILE_FILE
        stamp = (version, profile.stat().st_mtime)
        cached = self._known.get(model)
        if cached is not None and cached.stamp == stamp:
            return cached
        reference = load_reference(self.repository, model, version)
        scores = next((name for name, kind in reference.kinds.items() if kind is TensorKind.SCORES), None)
        calibrator, metrics = None, {}
        if scores is not None and reference.labels is not None:
            from tritonforge.monitoring.calibration import fit_calibration
            from tritonforge.monitoring.quality import predicted_classes, reference_metrics

            metrics = reference_metrics(reference.labels, predicted_classes(reference.data[scores]))
            try:
                calibrator = fit_calibration(reference.data[scores], reference.labels)
            except ConfigError as exc:
                _LOGGER.debug("%s: no accuracy estimate: %s", model, exc)
        self._known[model] = _Known(
            stamp=stamp, reference=reference, scores=scores, calibrator=calibrator, metrics=metrics
        )
        return self._known[model]

    def _drift(self, window: PredictionWindow, known: _Known | None, config: MonitoringConfig) -> list[DriftFigure]:
        from tritonforge.monitoring.drift import DriftSettings, detect_drift

        if known is None or len(window) < 2:
            return []
        section = config.drift
        settings = DriftSettings(
            alpha=section.alpha,
            min_effect_size=section.min_effect_size,
            multivariate=section.multivariate,
            max_items=section.max_items,
            seed=self.seed,
        )
        reference = known.reference
        tensors = {**window.inputs, **window.outputs}
        try:
            report = detect_drift(
                reference.data, tensors, holdout=reference.holdout, kinds=reference.kinds, settings=settings
            )
        except ConfigError as exc:
            _LOGGER.debug("%s: no drift figures: %s", window.model, exc)
            return []
        return drift_groups(report)

    def _quality(
        self,
        window: PredictionWindow,
        predictions: NDArray[Any],
        labelled: LabelledItems,
        known: _Known | None,
        config: MonitoringConfig,
    ) -> QualityFigures | None:
        from tritonforge.monitoring.quality import quality_verdict, window_quality

        if len(labelled.labels) == 0:
            return QualityFigures(labelled_items=0, label_coverage=0.0)
        positions = _positions(window, labelled.window)
        quality = window_quality(
            labelled.labels,
            predictions[positions],
            served_items=len(window),
            confidence_level=config.quality.confidence_level,
            seed=self.seed,
        )
        drops: dict[str, bool] = {}
        reference_accuracy = None
        if known is not None and known.metrics:
            reference_accuracy = known.metrics.get("accuracy")
            try:
                verdict = quality_verdict(quality, reference=known.metrics, config=config.quality)
            except ConfigError as exc:
                _LOGGER.debug("%s: no quality verdict: %s", window.model, exc)
            else:
                drops = {check.metric: check.alert for check in verdict.checks}
        accuracy = quality.metrics["accuracy"]
        return QualityFigures(
            labelled_items=quality.labelled_items,
            label_coverage=quality.coverage,
            metrics={name: value.value for name, value in quality.metrics.items()},
            accuracy_interval=(accuracy.low, accuracy.high),
            reference_accuracy=reference_accuracy,
            drops=drops,
        )

    def _fairness(
        self, window: PredictionWindow, predictions: NDArray[Any], labelled: LabelledItems, config: MonitoringConfig
    ) -> list[FairnessGap]:
        from tritonforge.monitoring.fairness import window_fairness

        attributes = [a for a in config.fairness.group_attributes if a in window.attributes]
        if not attributes:
            return []
        labels = np.full(len(window), None, dtype=object)
        labels[_positions(window, labelled.window)] = labelled.labels
        gaps: dict[tuple[str, str], FairnessGap] = {}
        for attribute in attributes:
            try:
                report = window_fairness(
                    predictions,
                    window.attributes[attribute],
                    labels=labels if len(labelled.labels) else None,
                    attribute=attribute,
                    config=config.fairness,
                    confidence_level=config.quality.confidence_level,
                    seed=self.seed,
                )
            except ConfigError as exc:
                _LOGGER.debug("%s: no fairness gaps for %s: %s", window.model, attribute, exc)
                continue
            for gap in report.gaps:  # one per positive class: the largest gap and the largest lower bound count
                key = (attribute, gap.metric)
                seen = gaps.get(key)
                gaps[key] = FairnessGap(
                    attribute=attribute,
                    metric=gap.metric,
                    gap=gap.value if seen is None else max(seen.gap, gap.value),
                    lower=gap.low if seen is None or seen.lower is None else max(seen.lower, gap.low),
                    limit=gap.limit,
                )
        return list(gaps.values())


def drift_groups(report: DriftReport) -> list[DriftFigure]:
    """One figure per feature group: each input tensor's per-element tests as one group, every other test alone.

    A group's score is its largest effect size, its p-value the smallest adjusted one, and it is detected when any
    of its tests is: 64 pixel tests make one `image` series, not 64.
    """
    groups: dict[str, list[Any]] = {}
    for test in report.tests:
        name = test.tensor if test.family == "data" else test.name
        groups.setdefault(name, []).append(test)
    return [
        DriftFigure(
            group=name,
            score=max(t.effect_size for t in tests),
            p_value=min(t.p_adjusted for t in tests),
            detected=any(t.drifted for t in tests),
        )
        for name, tests in groups.items()
    ]


def _scores(window: PredictionWindow, known: _Known | None) -> NDArray[Any] | None:
    """The window's class scores (the reference's scores output), as a [items, classes] array, or None."""
    if known is None or known.scores is None or known.scores not in window.outputs:
        return None
    scores = window.outputs[known.scores]
    if scores.dtype == object:  # some items logged only as summaries: no predictions to take
        return None
    return np.asarray(scores).reshape(len(scores), -1)


def _positions(window: PredictionWindow, subset: PredictionWindow) -> NDArray[np.int64]:
    """Where the items of `subset` (taken from `window`) sit in `window`."""
    index = {key: i for i, key in enumerate(zip(window.request_ids.tolist(), window.item_index.tolist(), strict=True))}
    keys = zip(subset.request_ids.tolist(), subset.item_index.tolist(), strict=True)
    return np.array([index[key] for key in keys], dtype=np.int64)
