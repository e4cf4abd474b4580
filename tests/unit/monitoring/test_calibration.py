from __future__ import annotations

import numpy as np
import pytest

from tritonforge.errors import ConfigError
from tritonforge.monitoring.calibration import (
    CalibrationMethod,
    as_logits,
    estimate_accuracy,
    estimate_error_points,
    fit_calibration,
)


def _overconfident(n: int, seed: int, sharpness: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from known class probabilities, and logits that overstate them by `sharpness`."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 1.5, (n, 5))
    probabilities = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    return sharpness * true_logits, labels


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_estimate_accuracy_is_within_a_few_points_of_the_labels_after_calibration(method):
    reference_logits, reference_labels = _overconfident(3000, seed=0)
    window_logits, window_labels = _overconfident(2000, seed=1)
    actual = float(np.mean(window_logits.argmax(axis=1) == window_labels))

    calibrator = fit_calibration(reference_logits, reference_labels, method=method)
    estimate = estimate_accuracy(calibrator, window_logits)

    assert abs(estimate_error_points(estimate, actual)) < 3.0
    assert estimate.low < actual < estimate.high
    assert estimate.items == 2000


def test_fit_calibration_finds_the_overconfidence_that_raw_softmax_hides():
    reference_logits, reference_labels = _overconfident(3000, seed=2)
    window_logits, window_labels = _overconfident(2000, seed=3)
    actual = float(np.mean(window_logits.argmax(axis=1) == window_labels))
    raw = fit_calibration(reference_logits, reference_labels)

    assert raw.temperature == pytest.approx(3.0, rel=0.15)
    uncalibrated = float(np.mean(np.exp(window_logits).max(axis=1) / np.exp(window_logits).sum(axis=1)))
    assert uncalibrated - actual > 0.1  # the raw confidences are far too high
    assert abs(estimate_accuracy(raw, window_logits).value - actual) < 0.03


def test_as_logits_takes_probabilities_through_log_and_keeps_logits():
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]])
    assert np.allclose(np.exp(as_logits(probabilities)), probabilities)
    logits = np.array([[2.0, -1.0], [0.3, 0.1]])
    assert np.array_equal(as_logits(logits), logits)


def test_fit_calibration_refuses_labels_outside_the_output_columns():
    logits, _ = _overconfident(50, seed=4)
    with pytest.raises(ConfigError, match="the output has 5 columns"):
        fit_calibration(logits, np.full(50, 7))


def test_fit_calibration_refuses_too_few_reference_items():
    logits, labels = _overconfident(5, seed=5)
    with pytest.raises(ConfigError, match="20 or more"):
        fit_calibration(logits, labels)
