from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tritonforge.errors import ConfigError
from tritonforge.monitoring.config import QualityConfig, QualityMetric
from tritonforge.monitoring.quality import (
    as_labels,
    predicted_classes,
    quality_verdict,
    reference_metrics,
    window_quality,
)


def _predictions(n: int, error_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten-class labels and predictions wrong (a random other class) on about `error_rate` of the items."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    wrong = rng.random(n) < error_rate
    predictions = np.where(wrong, (labels + rng.integers(1, 10, n)) % 10, labels)
    return labels, predictions


def test_window_quality_matches_sklearn_and_brackets_each_metric_with_its_interval():
    labels, predictions = _predictions(600, 0.1, seed=1)

    quality = window_quality(labels, predictions, served_items=1200)

    assert quality.labelled_items == 600
    assert quality.coverage == pytest.approx(0.5)
    assert quality.metrics["accuracy"].value == pytest.approx(np.mean(labels == predictions))
    assert quality.metrics["f1_macro"].value == pytest.approx(f1_score(labels, predictions, average="macro"))
    for value in quality.metrics.values():
        assert value.low < value.value < value.high
        assert value.high - value.low < 0.1
    assert quality.classes == [str(i) for i in range(10)]
    assert np.sum(quality.confusion) == 600
    assert np.trace(quality.confusion) == np.sum(labels == predictions)
    assert sum(c["support"] for c in quality.per_class.values()) == 600


def test_window_quality_gives_the_same_intervals_for_the_same_window():
    labels, predictions = _predictions(300, 0.2, seed=2)

    first = window_quality(labels, predictions, served_items=300)
    second = window_quality(labels, predictions, served_items=300)

    assert first.metrics == second.metrics


def test_window_quality_intervals_cover_the_true_accuracy_in_most_windows():
    covered = 0
    for seed in range(40):
        labels, predictions = _predictions(400, 0.1, seed=100 + seed)
        accuracy = window_quality(labels, predictions, served_items=400).metrics["accuracy"]
        covered += accuracy.low <= 0.9 <= accuracy.high
    assert covered >= 34  # 95% intervals: about 38 of 40


def test_window_quality_reads_labels_given_as_numbers_or_strings_alike():
    assert list(as_labels([3, 3.0, "3"])) == ["3", "3", "3"]
    quality = window_quality(["1", "2", "2"], [1.0, 2.0, 1.0], served_items=3)
    assert quality.metrics["accuracy"].value == pytest.approx(2 / 3)


def test_window_quality_refuses_an_empty_window_in_one_line():
    with pytest.raises(ConfigError, match="no labelled items"):
        window_quality([], [], served_items=10)


def test_predicted_classes_takes_the_highest_column_and_refuses_a_flat_output():
    assert list(predicted_classes([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])) == ["1", "0"]
    with pytest.raises(ConfigError, match=r"shape \[items, classes\]"):
        predicted_classes([0.1, 0.2])


def test_quality_verdict_alerts_when_the_window_is_worse_than_the_reference_beyond_its_interval():
    reference = reference_metrics(*_predictions(450, 0.02, seed=3))
    labels, predictions = _predictions(400, 0.12, seed=4)

    verdict = quality_verdict(
        window_quality(labels, predictions, served_items=400), reference=reference, config=QualityConfig()
    )

    assert verdict.alert
    assert {check.metric for check in verdict.checks} == {"accuracy", "f1_macro"}
    assert "below the reference" in verdict.reason


def test_quality_verdict_does_not_alert_on_a_window_as_good_as_the_reference():
    reference = reference_metrics(*_predictions(450, 0.05, seed=5))
    labels, predictions = _predictions(400, 0.05, seed=6)

    verdict = quality_verdict(
        window_quality(labels, predictions, served_items=400), reference=reference, config=QualityConfig()
    )

    assert not verdict.alert


def test_quality_verdict_tolerates_the_allowed_drop():
    reference = {"accuracy": 0.98}
    labels, predictions = _predictions(2000, 0.05, seed=7)
    quality = window_quality(labels, predictions, served_items=2000)
    watch_accuracy = (QualityMetric.ACCURACY,)

    strict = quality_verdict(quality, reference=reference, config=QualityConfig(alert_metrics=watch_accuracy))
    lenient = quality_verdict(
        quality, reference=reference, config=QualityConfig(alert_metrics=watch_accuracy, max_drop=0.05)
    )

    assert strict.alert
    assert not lenient.alert


def test_quality_verdict_gives_no_verdict_below_the_minimum_of_labelled_items():
    labels, predictions = _predictions(50, 0.5, seed=8)

    verdict = quality_verdict(
        window_quality(labels, predictions, served_items=50), reference={"accuracy": 0.99}, config=QualityConfig()
    )

    assert not verdict.alert
    assert "below the 200 needed" in verdict.reason


def test_quality_verdict_names_a_metric_the_reference_lacks():
    labels, predictions = _predictions(300, 0.1, seed=9)
    quality = window_quality(labels, predictions, served_items=300)

    with pytest.raises(ConfigError, match="the reference has no f1_macro"):
        quality_verdict(quality, reference={"accuracy": 0.9}, config=QualityConfig())
