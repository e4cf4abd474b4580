"""Accuracy before the labels arrive: the mean calibrated confidence of a window, and its error once they come.

    calibrator = fit_calibration(reference_logits, reference_labels)            # on the reference's outputs
    estimate = estimate_accuracy(calibrator, window_logits)                     # no labels needed
    estimate_error_points(estimate, actual_accuracy)                            # e.g. -0.8 (points)

A calibrated model's top-class probability is the chance that its prediction is right, so a window's mean calibrated
confidence estimates its accuracy (NannyML's CBPE idea, for accuracy). Raw softmax confidences of a trained network
are usually overconfident, so a calibration is fitted on the reference (outputs and labels of evaluation data):
temperature scaling (one parameter, scipy `minimize_scalar` on the log loss; keeps the predicted class) by default,
or isotonic regression of correctness on the top-class confidence (scikit-learn). The interval is the spread of the
accuracy that items with those confidences would show (a Poisson-binomial, normal approximation). It holds while the
calibration does: under covariate shift the estimate tends to stay optimistic, which the error reported once labels
come measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tritonforge.errors import ConfigError
from tritonforge.monitoring.quality import as_labels


class CalibrationMethod(str, Enum):
    """How raw classifier outputs are turned into calibrated confidences."""

    TEMPERATURE = "temperature"
    """Divide the logits by one fitted temperature (keeps the predicted class and the ranking of items)."""
    ISOTONIC = "isotonic"
    """Map the top-class probability to the observed accuracy by isotonic regression (no assumption on the shape)."""


@dataclass(frozen=True, kw_only=True)
class Calibrator:
    """A fitted calibration; `confidences` applies it."""

    method: CalibrationMethod
    temperature: float = 1.0
    isotonic: Any = None
    """The fitted sklearn IsotonicRegression (method isotonic only)."""
    reference_items: int = 0

    def confidences(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Calibrated top-class probability of each item of a [items, classes] logits or probabilities output."""
        from scipy.special import softmax

        logits = as_logits(scores)
        if self.method is CalibrationMethod.TEMPERATURE:
            top: NDArray[np.float64] = softmax(logits / self.temperature, axis=1).max(axis=1)
            return top
        raw = softmax(logits, axis=1).max(axis=1)
        mapped: NDArray[np.float64] = np.asarray(self.isotonic.predict(raw), dtype=np.float64)
        return mapped


@dataclass(frozen=True, kw_only=True)
class AccuracyEstimate:
    """A window's accuracy estimated from calibrated confidences, before labels."""

    value: float
    low: float
    high: float
    items: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return dict(vars(self))


def as_logits(scores: ArrayLike) -> NDArray[np.float64]:
    """Logits of a [items, classes] output: rows of probabilities (non-negative, summing to 1) go through log.

    Raises:
        ConfigError: the output is not [items, classes].
    """
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ConfigError(
            f"a classifier output of shape [items, classes] is needed, got shape {list(array.shape)}; "
            "pick the model's logits or probabilities output with --output"
        )
    if np.all(array >= 0.0) and np.allclose(array.sum(axis=1), 1.0, atol=1e-3):
        return np.log(np.clip(array, 1e-12, None))
    return array


def fit_calibration(
    scores: ArrayLike, labels: ArrayLike, *, method: CalibrationMethod = CalibrationMethod.TEMPERATURE
) -> Calibrator:
    """Fit a calibration on the reference's outputs and labels (labels are class indices, as numbers or strings).

    Raises:
        ConfigError: too few items, lengths differ, or a label is not a column of the output.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax, softmax

    logits = as_logits(scores)
    names = as_labels(labels)
    if len(names) != len(logits):
        raise ConfigError(f"{len(names)} reference labels for {len(logits)} reference outputs; they must pair up")
    if len(names) < 20:
        raise ConfigError(f"{len(names)} labelled reference items cannot fit a calibration; 20 or more are needed")
    try:
        index = names.astype(np.int64)
    except ValueError as exc:
        raise ConfigError("reference labels must be class indices (the output's columns) to fit a calibration") from exc
    if index.min() < 0 or index.max() >= logits.shape[1]:
        raise ConfigError(
            f"reference labels run {index.min()}..{index.max()}, the output has {logits.shape[1]} columns"
        )
    if method is CalibrationMethod.TEMPERATURE:

        def log_loss(log_t: float) -> float:
            return float(-np.mean(log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(index)), index]))

        fitted = minimize_scalar(log_loss, bounds=(-5.0, 5.0), method="bounded")
        return Calibrator(method=method, temperature=float(np.exp(fitted.x)), reference_items=len(index))
    from sklearn.isotonic import IsotonicRegression

    raw = softmax(logits, axis=1).max(axis=1)
    correct = (logits.argmax(axis=1) == index).astype(np.float64)
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, correct)
    return Calibrator(method=method, isotonic=isotonic, reference_items=len(index))


def estimate_accuracy(calibrator: Calibrator, scores: ArrayLike, *, confidence_level: float = 0.95) -> AccuracyEstimate:
    """The window's expected accuracy (mean calibrated confidence) and the interval its realised accuracy falls in.

    Raises:
        ConfigError: an empty window.
    """
    from scipy.stats import norm

    confidences = calibrator.confidences(scores)
    if len(confidences) == 0:
        raise ConfigError("no served items in the window to estimate accuracy from; widen the window")
    value = float(np.mean(confidences))
    spread = float(np.sqrt(np.sum(confidences * (1.0 - confidences)))) / len(confidences)
    z = float(norm.ppf(0.5 + confidence_level / 2))
    return AccuracyEstimate(
        value=value,
        low=max(0.0, value - z * spread),
        high=min(1.0, value + z * spread),
        items=len(confidences),
        method=calibrator.method.value,
    )


def estimate_error_points(estimate: AccuracyEstimate, actual_accuracy: float) -> float:
    """Estimate minus the accuracy the labels showed, in accuracy points (+1.0: one point optimistic)."""
    return 100.0 * (estimate.value - actual_accuracy)
