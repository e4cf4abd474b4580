"""Quality of a window from late labels: metrics with intervals, label coverage, and a verdict against the reference.

    quality = window_quality(labels, predictions, served_items=len(window_predictions))
    reference = reference_quality(eval_labels, eval_predictions)       # the evaluation data, with intervals
    verdict = quality_verdict(quality, reference=reference, config=QualityConfig())
    if verdict.alert: ...

Point metrics come from scikit-learn (accuracy, precision / recall / F1 macro and per class, the confusion matrix).
Accuracy's interval is Wilson's (scipy `binomtest(...).proportion_ci`); the macro metrics' intervals are percentile
bootstraps over items (scipy `bootstrap`, fixed seed), computed from per-resample confusion counts so a thousand
resamples of a 20,000-item window take a fraction of a second. A window alerts when a watched metric lies below the
reference minus the allowed drop by more than chance explains: by more than the window's interval, combined with the
reference's own when the reference comes with intervals (`reference_quality`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tritonforge.errors import ConfigError
from tritonforge.monitoring.config import QualityConfig, QualityMetric

MACRO_METRICS = (QualityMetric.PRECISION_MACRO, QualityMetric.RECALL_MACRO, QualityMetric.F1_MACRO)
N_BOOTSTRAP = 1000
"""Resamples behind each bootstrap interval (the percentile ends move by well under a point beyond this)."""


@dataclass(frozen=True, kw_only=True)
class MetricValue:
    """A window metric and its interval at the window's confidence level."""

    value: float
    low: float
    high: float


@dataclass(frozen=True, kw_only=True)
class WindowQuality:
    """What the labelled items of one window say about the model's quality."""

    served_items: int
    labelled_items: int
    coverage: float
    """Labelled items / served items (labels arrive late: coverage grows as they come)."""
    confidence_level: float
    metrics: dict[str, MetricValue]
    """accuracy, precision_macro, recall_macro, f1_macro."""
    classes: list[str]
    per_class: dict[str, dict[str, float]]
    """Per class: precision, recall, f1 and support (labelled items of that class)."""
    confusion: list[list[int]]
    """Rows: true class, columns: predicted class, in the order of `classes`."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (quality.json)."""
        return {
            "served_items": self.served_items,
            "labelled_items": self.labelled_items,
            "coverage": self.coverage,
            "confidence_level": self.confidence_level,
            "metrics": {name: vars(value) for name, value in self.metrics.items()},
            "classes": self.classes,
            "per_class": self.per_class,
            "confusion": self.confusion,
        }


@dataclass(frozen=True, kw_only=True)
class MetricCheck:
    """One watched metric of a window against the reference."""

    metric: str
    reference: float
    value: float
    high: float
    """The window's value plus the margin of the comparison: its interval's upper half-width, combined in quadrature
    with the reference's lower half-width when the reference comes with intervals (both are samples)."""
    threshold: float
    """reference - allowed drop: the alert fires when `high` is below it."""
    alert: bool


@dataclass(frozen=True, kw_only=True)
class QualityVerdict:
    """Whether a window's quality dropped below the reference beyond its interval."""

    alert: bool
    reason: str
    checks: list[MetricCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"alert": self.alert, "reason": self.reason, "checks": [vars(check) for check in self.checks]}


def predicted_classes(scores: ArrayLike) -> NDArray[np.str_]:
    """The predicted class of each item (its highest-scoring column, as a string) from a [items, classes] output.

    Raises:
        ConfigError: the output is not two-dimensional with at least two columns.
    """
    array = np.asarray(scores)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ConfigError(
            f"a classifier output of shape [items, classes] is needed, got shape {list(array.shape)}; "
            "pick the model's logits or probabilities output with --output"
        )
    classes: NDArray[np.str_] = np.argmax(array, axis=1).astype(str)
    return classes


def as_labels(values: ArrayLike) -> NDArray[np.str_]:
    """Labels as strings, so feedback given as 3, 3.0 or "3" names the same class as the predicted column 3."""
    array = np.asarray(values)
    if array.dtype.kind in "OUS":
        try:
            array = array.astype(np.float64)
        except ValueError:  # class names, not numbers
            return array.astype(str)
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)
    return array.astype(str)


def window_quality(
    labels: ArrayLike,
    predictions: ArrayLike,
    *,
    served_items: int,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> WindowQuality:
    """Metrics with intervals for one window's labelled items.

    Args:
        labels: the true class of each labelled item.
        predictions: the predicted class of the same items (see `predicted_classes`).
        served_items: items the window served, labelled or not (for the coverage).
        confidence_level: level of the intervals.
        seed: seed of the bootstrap, so the same window gives the same intervals.

    Raises:
        ConfigError: no labelled items, or labels and predictions of different lengths.
    """
    from scipy import stats
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = as_labels(labels), as_labels(predictions)
    if len(y_true) != len(y_pred):
        raise ConfigError(f"{len(y_true)} labels for {len(y_pred)} predictions; join labels to items by request id")
    if len(y_true) == 0:
        raise ConfigError("no labelled items in the window; store labels (monitor labels FILE) or widen the window")
    classes = sorted(set(y_true) | set(y_pred), key=class_order)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0.0)
    p_macro, r_macro, f1_macro, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, average="macro", zero_division=0.0
    )
    correct = int(np.sum(y_true == y_pred))
    wilson = stats.binomtest(correct, len(y_true)).proportion_ci(confidence_level=confidence_level, method="wilson")
    metrics = {
        QualityMetric.ACCURACY.value: MetricValue(
            value=float(accuracy_score(y_true, y_pred)), low=float(wilson.low), high=float(wilson.high)
        )
    }
    lows, highs = _macro_intervals(y_true, y_pred, classes, confidence_level=confidence_level, seed=seed)
    for i, (name, value) in enumerate(zip(MACRO_METRICS, (p_macro, r_macro, f1_macro), strict=True)):
        metrics[name.value] = MetricValue(
            value=float(value), low=float(min(lows[i], value)), high=float(max(highs[i], value))
        )
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }
    return WindowQuality(
        served_items=served_items,
        labelled_items=len(y_true),
        coverage=len(y_true) / served_items if served_items else 0.0,
        confidence_level=confidence_level,
        metrics=metrics,
        classes=classes,
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    )


def quality_verdict(
    quality: WindowQuality, *, reference: Mapping[str, float] | WindowQuality, config: QualityConfig
) -> QualityVerdict:
    """Alert when a watched metric is below the reference minus `config.max_drop` by more than chance explains.

    With plain reference metrics, "more than chance" is the window's interval: its upper bound lies below the
    threshold. With a reference that has its own intervals (a WindowQuality of the evaluation data, see
    `reference_quality`), the reference's sampling error counts too: the two half-widths are combined in quadrature,
    which keeps a few hundred reference items from turning their own noise into false alarms.
    A window with fewer labelled items than `config.min_labelled_items` gets no verdict (no alert): its interval is too
    wide to tell a drop from chance.

    Raises:
        ConfigError: the reference lacks a watched metric.
    """
    if quality.labelled_items < config.min_labelled_items:
        return QualityVerdict(
            alert=False,
            reason=(
                f"{quality.labelled_items} labelled items, below the {config.min_labelled_items} needed for a verdict"
            ),
        )
    known = reference.metrics if isinstance(reference, WindowQuality) else reference
    checks = []
    for metric in config.alert_metrics:
        if metric.value not in known:
            raise ConfigError(
                f"the reference has no {metric.value} (it has {', '.join(sorted(known)) or 'no metrics'}); "
                "rebuild the reference with labels or drop it from quality.alert_metrics"
            )
        value = quality.metrics[metric.value]
        entry = known[metric.value]
        ref_value = entry.value if isinstance(entry, MetricValue) else float(entry)
        ref_margin = entry.value - entry.low if isinstance(entry, MetricValue) else 0.0
        high = value.value + float(np.hypot(value.high - value.value, ref_margin))
        threshold = ref_value - config.max_drop
        checks.append(
            MetricCheck(
                metric=metric.value,
                reference=ref_value,
                value=value.value,
                high=high,
                threshold=threshold,
                alert=high < threshold,
            )
        )
    dropped = [check for check in checks if check.alert]
    if dropped:
        reason = "; ".join(
            f"{c.metric} {c.value:.3f} (+ margin {c.high - c.value:.3f}) below the reference {c.reference:.3f}"
            + (f" - {config.max_drop:g}" if config.max_drop else "")
            for c in dropped
        )
    else:
        reason = "every watched metric is within chance of the reference"
    return QualityVerdict(alert=bool(dropped), reason=reason, checks=checks)


def reference_quality(
    labels: ArrayLike, predictions: ArrayLike, *, confidence_level: float = 0.95, seed: int = 0
) -> WindowQuality:
    """The reference's metrics with their intervals (evaluation labels and the model's predictions on them)."""
    return window_quality(
        labels, predictions, served_items=len(np.asarray(labels)), confidence_level=confidence_level, seed=seed
    )


def reference_metrics(labels: ArrayLike, predictions: ArrayLike) -> dict[str, float]:
    """The reference's metrics (evaluation labels and the model's predictions on them), in the window's terms."""
    return {name: value.value for name, value in reference_quality(labels, predictions).metrics.items()}


def class_order(name: str) -> tuple[int, float, str]:
    """Sort key for class names: numbers in numeric order (2 before 10), then other names alphabetically."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _macro_intervals(
    y_true: NDArray[np.str_], y_pred: NDArray[np.str_], classes: Sequence[str], *, confidence_level: float, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Percentile-bootstrap bounds of macro precision, recall and F1 (over items, paired labels and predictions)."""
    from scipy import stats

    index = {name: i for i, name in enumerate(classes)}
    t = np.array([index[v] for v in y_true], dtype=np.int64)
    p = np.array([index[v] for v in y_pred], dtype=np.int64)
    n_classes = len(classes)

    def macro(t_: NDArray[np.int64], p_: NDArray[np.int64], axis: int = -1) -> NDArray[np.float64]:
        t2, p2 = np.atleast_2d(t_), np.atleast_2d(p_)
        batch = t2.shape[0]
        rows = np.arange(batch)[:, None]
        size = (batch, n_classes + 1)
        true_count = np.bincount((rows * (n_classes + 1) + t2).ravel(), minlength=size[0] * size[1]).reshape(size)
        pred_count = np.bincount((rows * (n_classes + 1) + p2).ravel(), minlength=size[0] * size[1]).reshape(size)
        hits = np.where(t2 == p2, t2, n_classes)  # a miss lands in the extra last column, dropped below
        tp = np.bincount((rows * (n_classes + 1) + hits).ravel(), minlength=size[0] * size[1]).reshape(size)
        tp, true_count, pred_count = tp[:, :n_classes], true_count[:, :n_classes], pred_count[:, :n_classes]
        # zero_division=0 as in the point metrics; a class absent from a resample is left out of its mean
        precision = np.divide(tp, pred_count, out=np.zeros(tp.shape), where=pred_count > 0)
        recall = np.divide(tp, true_count, out=np.zeros(tp.shape), where=true_count > 0)
        both = pred_count + true_count
        f1 = np.divide(2 * tp, both, out=np.zeros(tp.shape), where=both > 0)
        present = np.maximum((both > 0).sum(axis=1), 1)
        out: NDArray[np.float64] = np.stack([m.sum(axis=1) / present for m in (precision, recall, f1)])
        return out if np.ndim(t_) > 1 else out[:, 0]

    if len(t) < 2:
        point = macro(t, p)
        return point, point
    result = stats.bootstrap(
        (t, p),
        macro,
        paired=True,
        vectorized=True,
        n_resamples=N_BOOTSTRAP,
        batch=max(1, min(N_BOOTSTRAP, 2_000_000 // max(len(t), 1))),
        confidence_level=confidence_level,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)
