"""Fairness slices: per-group metrics and the demographic-parity and equalized-odds gaps of one group attribute.

    report = window_fairness(predictions, groups, labels=labels, attribute="segment", config=FairnessConfig())
    if report.alert: ...                      # a gap's lower bound is above the limit in the model's config

The figures are fairlearn's: `MetricFrame` for the per-group table, `demographic_parity_difference` (gap in the rate
of the positive prediction, over every served item that carries the attribute: it needs no label) and
`equalized_odds_difference` (the larger of the true- and false-positive-rate gaps, over the labelled items).
Multiclass models are judged one-vs-rest: for `positive_class` when the config names one, else for every class,
and the largest gap counts. Groups smaller than `min_group_size` are shown but left out of the gaps.

Each gap has a basic-bootstrap interval over items (scipy `bootstrap`, fixed seed; per-resample group rates from
counts, so a thousand resamples cost little). A gap between group rates is a max minus a min, which resampling
inflates; the basic interval reflects that bias back, where a percentile one would keep it and cry wolf on small
groups. With several judged classes the intervals are Bonferroni-widened (one family per attribute). The verdict:
`alert` when a gap's lower bound is above its limit (beyond it by more than chance), `above_limit` when the gap is
above the limit but its interval reaches below it (collect more traffic before acting), `ok` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tritonforge.errors import ConfigError
from tritonforge.monitoring.config import FairnessConfig
from tritonforge.monitoring.quality import as_labels, class_order

N_BOOTSTRAP = 1000
DEMOGRAPHIC_PARITY = "demographic_parity_difference"
EQUALIZED_ODDS = "equalized_odds_difference"
Status = Literal["ok", "above_limit", "alert"]


@dataclass(frozen=True, kw_only=True)
class GroupRow:
    """One group's figures (the positive-class rates only for a binary or one-positive-class judgement)."""

    group: str
    served_items: int
    labelled_items: int
    in_gaps: bool
    """False when the group has fewer labelled items than the config's min_group_size."""
    accuracy: float | None
    selection_rate: float | None
    true_positive_rate: float | None
    false_positive_rate: float | None


@dataclass(frozen=True, kw_only=True)
class FairnessGap:
    """One gap between groups for one positive class, with its interval and limit."""

    metric: str
    positive_class: str
    value: float
    low: float
    high: float
    limit: float
    status: Status


@dataclass(frozen=True, kw_only=True)
class FairnessReport:
    """Per-group figures and gaps of one attribute over one window."""

    attribute: str
    confidence_level: float
    positive_classes: list[str]
    groups: list[GroupRow]
    gaps: list[FairnessGap]
    status: Status
    reason: str
    items_without_attribute: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def alert(self) -> bool:
        """A gap is beyond its limit by more than chance."""
        return self.status == "alert"

    def largest(self, metric: str) -> FairnessGap | None:
        """The largest gap of `metric` over the judged classes (the one the verdict and the exporter use)."""
        gaps = [gap for gap in self.gaps if gap.metric == metric]
        return max(gaps, key=lambda gap: gap.value) if gaps else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (fairness.json)."""
        return {**asdict(self), "alert": self.alert}


def window_fairness(
    predictions: ArrayLike,
    groups: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    attribute: str,
    config: FairnessConfig,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> FairnessReport:
    """Per-group metrics, gaps and a verdict for one attribute.

    Args:
        predictions: the predicted class of every served item.
        groups: the item's value of the attribute ("" or None: the item did not carry it).
        labels: the true class of each item, None (or NaN) where no label came yet; None: no labels at all
            (demographic parity only).
        attribute: the attribute's name (for the report).
        config: limits, the minimum group size and the positive class.
        confidence_level: level of the gaps' intervals.
        seed: seed of the bootstrap.

    Raises:
        ConfigError: lengths differ, the positive class is not a class of the model, or fewer than two groups are
            large enough to compare.
    """
    import pandas as pd

    y_pred = as_labels(predictions)
    group_values = np.asarray(groups, dtype=object)
    label_values = np.full(len(y_pred), None, dtype=object) if labels is None else np.asarray(labels, dtype=object)
    if not len(y_pred) == len(group_values) == len(label_values):
        raise ConfigError(
            f"{len(y_pred)} predictions, {len(group_values)} group values and {len(label_values)} labels; "
            "each served item needs one of each (None for a missing label)"
        )
    carried = ~pd.isna(group_values) & (group_values.astype(str) != "")
    y_pred, group_values, label_values = y_pred[carried], group_values[carried].astype(str), label_values[carried]
    labelled = ~pd.isna(label_values)
    y_true = np.full(len(y_pred), "", dtype=object)
    if labelled.any():
        y_true[labelled] = as_labels(label_values[labelled])
    classes = sorted(set(y_pred) | set(y_true[labelled]), key=class_order)
    positives = _positive_classes(classes, config.positive_class)

    names, served_counts = np.unique(group_values, return_counts=True)
    labelled_counts = {name: int(np.sum(labelled & (group_values == name))) for name in names}
    size = {
        name: (labelled_counts[name] if labelled.any() else int(count))
        for name, count in zip(names, served_counts, strict=True)
    }
    kept = [name for name in names if size[name] >= config.min_group_size]
    if len(kept) < 2:
        raise ConfigError(
            f"attribute {attribute!r}: {len(kept)} group(s) of {config.min_group_size}+ "
            f"{'labelled ' if labelled.any() else ''}items ({', '.join(f'{n}: {size[n]}' for n in names) or 'none'}); "
            "widen the window or lower fairness.min_group_size"
        )
    keep = np.isin(group_values, kept)
    gaps: list[FairnessGap] = []
    # one family of tests per attribute: with several judged classes, each interval is widened (Bonferroni)
    level = 1.0 - (1.0 - confidence_level) / len(positives)
    for positive in positives:
        gaps.append(_parity_gap(y_pred[keep], group_values[keep], positive, config, confidence_level=level, seed=seed))
        both = keep & labelled
        if both.any():
            gaps.append(
                _odds_gap(
                    y_true[both].astype(str),
                    y_pred[both],
                    group_values[both],
                    positive,
                    config,
                    confidence_level=level,
                    seed=seed,
                )
            )
    rows = _group_rows(
        y_true,
        y_pred,
        group_values,
        labelled,
        names,
        served_counts,
        set(kept),
        positives if len(positives) == 1 else [],
    )
    status, reason = _verdict(gaps)
    notes = []
    if not labelled.any():
        notes.append("no labels in the window: equalized odds and accuracy need labels, demographic parity does not")
    return FairnessReport(
        attribute=attribute,
        confidence_level=confidence_level,
        positive_classes=positives,
        groups=rows,
        gaps=gaps,
        status=status,
        reason=reason,
        items_without_attribute=int(np.sum(~carried)),
        notes=notes,
    )


def _positive_classes(classes: list[str], configured: str | None) -> list[str]:
    """The classes judged one-vs-rest: the configured one, "1" (or the second) of two, else every class."""
    if configured is not None:
        if configured not in classes:
            raise ConfigError(
                f"fairness.positive_class {configured!r} is not among the window's classes ({', '.join(classes)}); "
                "set it to one of them"
            )
        return [configured]
    if len(classes) <= 2:
        return ["1"] if "1" in classes else classes[-1:]
    return classes


def _parity_gap(
    y_pred: NDArray[Any],
    groups: NDArray[Any],
    positive: str,
    config: FairnessConfig,
    *,
    confidence_level: float,
    seed: int,
) -> FairnessGap:
    from fairlearn.metrics import demographic_parity_difference

    selected = (y_pred == positive).astype(np.int64)
    value = float(demographic_parity_difference(selected, selected, sensitive_features=groups))
    group_index = np.unique(groups, return_inverse=True)[1]

    def statistic(g: NDArray[np.int64], s: NDArray[np.int64]) -> NDArray[np.float64]:
        count, chosen = _group_sums(g, [s])
        return _spread(chosen[0], count)

    low, high = _bootstrap(statistic, (group_index, selected), value, confidence_level=confidence_level, seed=seed)
    return _gap(DEMOGRAPHIC_PARITY, positive, value, low, high, config.max_demographic_parity_difference)


def _odds_gap(
    y_true: NDArray[Any],
    y_pred: NDArray[Any],
    groups: NDArray[Any],
    positive: str,
    config: FairnessConfig,
    *,
    confidence_level: float,
    seed: int,
) -> FairnessGap:
    from fairlearn.metrics import equalized_odds_difference

    truth = (y_true == positive).astype(np.int64)
    selected = (y_pred == positive).astype(np.int64)
    value = float(equalized_odds_difference(truth, selected, sensitive_features=groups))
    group_index = np.unique(groups, return_inverse=True)[1]

    def statistic(g: NDArray[np.int64], t: NDArray[np.int64], s: NDArray[np.int64]) -> NDArray[np.float64]:
        _, (positives, negatives, true_pos, false_pos) = _group_sums(g, [t, 1 - t, t * s, (1 - t) * s])
        return np.maximum(_spread(true_pos, positives), _spread(false_pos, negatives))

    low, high = _bootstrap(
        statistic, (group_index, truth, selected), value, confidence_level=confidence_level, seed=seed
    )
    return _gap(EQUALIZED_ODDS, positive, value, low, high, config.max_equalized_odds_difference)


def _gap(metric: str, positive: str, value: float, low: float, high: float, limit: float) -> FairnessGap:
    if math.isnan(value):  # fairlearn: no group has a positive (or a negative) item, so no rate to compare
        value, low, high = 0.0, 0.0, 0.0
    status: Status = "alert" if low > limit else "above_limit" if value > limit else "ok"
    return FairnessGap(
        metric=metric, positive_class=positive, value=value, low=low, high=high, limit=limit, status=status
    )


def _group_sums(
    g: NDArray[np.int64], values: list[NDArray[np.int64]]
) -> tuple[NDArray[np.float64], list[NDArray[np.float64]]]:
    """Per resample (rows) and group (columns): the item count and the sum of each of `values`."""
    g2 = np.atleast_2d(g)
    batch, n_groups = g2.shape[0], int(g2.max()) + 1
    flat = (np.arange(batch)[:, None] * n_groups + g2).ravel()
    shape = (batch, n_groups)
    count = np.bincount(flat, minlength=batch * n_groups).reshape(shape).astype(np.float64)
    sums: list[NDArray[np.float64]] = [
        np.bincount(flat, weights=np.atleast_2d(v).ravel(), minlength=batch * n_groups)
        .reshape(shape)
        .astype(np.float64)
        for v in values
    ]
    return count, sums


def _spread(numerator: NDArray[np.float64], denominator: NDArray[np.float64]) -> NDArray[np.float64]:
    """Max minus min over groups of numerator / denominator, over the groups where it is defined."""
    defined = denominator > 0
    rate = np.divide(numerator, denominator, out=np.zeros(numerator.shape), where=defined)
    high = np.where(defined, rate, -np.inf).max(axis=1)
    low = np.where(defined, rate, np.inf).min(axis=1)
    spread: NDArray[np.float64] = np.where(defined.sum(axis=1) >= 2, high - low, 0.0)
    return spread


def _bootstrap(
    statistic: Any, data: tuple[NDArray[np.int64], ...], value: float, *, confidence_level: float, seed: int
) -> tuple[float, float]:
    """Basic-bootstrap bounds of a gap over items, widened to include the point value, within [0, 1]."""
    from scipy import stats

    if len(data[0]) < 2 or math.isnan(value):
        return value, value

    def batched(*samples: NDArray[np.int64], axis: int = -1) -> NDArray[np.float64]:
        out: NDArray[np.float64] = statistic(*samples)
        return out if np.ndim(samples[0]) > 1 else out[0]  # one sample in, one value out

    result = stats.bootstrap(
        data,
        batched,
        paired=True,
        vectorized=True,
        n_resamples=N_BOOTSTRAP,
        batch=max(1, min(N_BOOTSTRAP, 2_000_000 // len(data[0]))),
        confidence_level=confidence_level,
        method="basic",
        random_state=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return max(0.0, min(low, value)), min(1.0, max(high, value))


def _group_rows(
    y_true: NDArray[Any],
    y_pred: NDArray[Any],
    groups: NDArray[Any],
    labelled: NDArray[np.bool_],
    names: NDArray[Any],
    served_counts: NDArray[np.int64],
    kept: set[str],
    positives: list[str],
) -> list[GroupRow]:
    """The per-group table, from fairlearn's MetricFrame (rates of the one positive class, when there is one)."""
    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    by_group: dict[str, dict[str, float]] = {str(name): {} for name in names}
    positive = positives[0] if positives else None
    if positive is not None:
        selected = (y_pred == positive).astype(np.int64)
        rates = MetricFrame(
            metrics={"selection_rate": selection_rate}, y_true=selected, y_pred=selected, sensitive_features=groups
        ).by_group
        for name, row in rates.iterrows():
            by_group[str(name)].update(row.to_dict())
    if labelled.any():
        metrics: dict[str, Any] = {"accuracy": accuracy_score}
        truth, pred = y_true[labelled].astype(str), y_pred[labelled]
        if positive is not None:
            truth, pred = (truth == positive).astype(np.int64), (pred == positive).astype(np.int64)
            metrics = {"true_positive_rate": true_positive_rate, "false_positive_rate": false_positive_rate}
            accuracy = MetricFrame(
                metrics=accuracy_score,
                y_true=y_true[labelled].astype(str),
                y_pred=y_pred[labelled],
                sensitive_features=groups[labelled],
            ).by_group
            for name, value in accuracy.items():
                by_group[str(name)]["accuracy"] = float(value)
        frame = MetricFrame(metrics=metrics, y_true=truth, y_pred=pred, sensitive_features=groups[labelled]).by_group
        for name, row in frame.iterrows():
            by_group[str(name)].update(row.to_dict())

    def figure(name: str, key: str) -> float | None:
        value = by_group[name].get(key)
        return None if value is None or math.isnan(value) else float(value)

    return [
        GroupRow(
            group=str(name),
            served_items=int(count),
            labelled_items=int(np.sum(labelled & (groups == name))),
            in_gaps=str(name) in kept,
            accuracy=figure(str(name), "accuracy"),
            selection_rate=figure(str(name), "selection_rate"),
            true_positive_rate=figure(str(name), "true_positive_rate"),
            false_positive_rate=figure(str(name), "false_positive_rate"),
        )
        for name, count in zip(names, served_counts, strict=True)
    ]


def _verdict(gaps: list[FairnessGap]) -> tuple[Status, str]:
    alerts = [gap for gap in gaps if gap.status == "alert"]
    above = [gap for gap in gaps if gap.status == "above_limit"]

    def name(gap: FairnessGap) -> str:
        return f"{gap.metric} {gap.value:.3f} [{gap.low:.3f}, {gap.high:.3f}] (class {gap.positive_class})"

    if alerts:
        worst = max(alerts, key=lambda gap: gap.low - gap.limit)
        return "alert", f"{name(worst)} is beyond the limit {worst.limit:g}" + (
            f", and {len(alerts) - 1} more gap(s)" if len(alerts) > 1 else ""
        )
    if above:
        worst = max(above, key=lambda gap: gap.value - gap.limit)
        return "above_limit", f"{name(worst)} is above the limit {worst.limit:g} but within chance of it"
    return "ok", "every gap is within its limit"
