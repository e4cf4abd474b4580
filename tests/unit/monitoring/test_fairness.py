from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from tritonforge.errors import ConfigError
from tritonforge.monitoring.config import FairnessConfig
from tritonforge.monitoring.fairness import DEMOGRAPHIC_PARITY, EQUALIZED_ODDS, window_fairness


def _traffic(n: int, *, seed: int, classes: int = 2, error_c: float = 0.1, bias_c: float = 0.0):
    """Three groups; group c gets `error_c` wrong answers (others 10%) and `bias_c` extra positive predictions."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["a", "b", "c"], n)
    labels = rng.integers(0, classes, n)
    wrong = rng.random(n) < np.where(groups == "c", error_c, 0.1)
    predictions = np.where(wrong, (labels + 1) % classes, labels)
    pushed = (groups == "c") & (rng.random(n) < bias_c)
    predictions = np.where(pushed, 1, predictions)
    return labels, predictions, groups


def test_window_fairness_gaps_are_fairlearns_and_within_their_intervals():
    labels, predictions, groups = _traffic(1500, seed=0, error_c=0.3)

    report = window_fairness(predictions, groups, labels=labels, attribute="segment", config=FairnessConfig())

    parity, odds = report.largest(DEMOGRAPHIC_PARITY), report.largest(EQUALIZED_ODDS)
    assert parity.value == pytest.approx(demographic_parity_difference(labels, predictions, sensitive_features=groups))
    assert odds.value == pytest.approx(equalized_odds_difference(labels, predictions, sensitive_features=groups))
    for gap in report.gaps:
        assert gap.low <= gap.value <= gap.high
    assert report.positive_classes == ["1"]
    assert [row.group for row in report.groups] == ["a", "b", "c"]
    worst = report.groups[2]
    assert worst.accuracy == pytest.approx(np.mean(labels[groups == "c"] == predictions[groups == "c"]))
    assert worst.true_positive_rate is not None and worst.false_positive_rate is not None


def test_window_fairness_alerts_when_one_group_gets_worse_answers():
    labels, predictions, groups = _traffic(1500, seed=1, error_c=0.35)

    report = window_fairness(predictions, groups, labels=labels, attribute="segment", config=FairnessConfig())

    assert report.alert
    assert report.largest(EQUALIZED_ODDS).status == "alert"
    assert "equalized_odds_difference" in report.reason


def test_window_fairness_finds_a_parity_gap_without_labels():
    _, predictions, groups = _traffic(1500, seed=2, bias_c=0.4)

    report = window_fairness(predictions, groups, attribute="segment", config=FairnessConfig())

    assert report.alert
    assert report.largest(DEMOGRAPHIC_PARITY).status == "alert"
    assert report.largest(EQUALIZED_ODDS) is None
    assert report.notes


@pytest.mark.parametrize("classes", [2, 10])
def test_window_fairness_does_not_alert_when_groups_are_treated_alike(classes):
    alerts = 0
    for seed in range(10):
        labels, predictions, groups = _traffic(900, seed=10 + seed, classes=classes)
        report = window_fairness(predictions, groups, labels=labels, attribute="segment", config=FairnessConfig())
        alerts += report.alert
    assert alerts <= 1


def test_window_fairness_judges_every_class_of_a_multiclass_model_unless_one_is_named():
    labels, predictions, groups = _traffic(3000, seed=3, classes=4, error_c=0.4)

    per_class = window_fairness(predictions, groups, labels=labels, attribute="segment", config=FairnessConfig())
    one = window_fairness(
        predictions, groups, labels=labels, attribute="segment", config=FairnessConfig(positive_class="2")
    )

    assert per_class.positive_classes == ["0", "1", "2", "3"]
    assert {gap.positive_class for gap in per_class.gaps} == {"0", "1", "2", "3"}
    assert per_class.alert
    assert one.positive_classes == ["2"]
    assert {gap.positive_class for gap in one.gaps} == {"2"}


def test_window_fairness_leaves_small_groups_and_items_without_the_attribute_out_of_the_gaps():
    labels, predictions, groups = _traffic(600, seed=4)
    groups = groups.astype(object)
    groups[:10] = "tiny"
    groups[10:20] = None

    report = window_fairness(predictions, groups, labels=labels, attribute="segment", config=FairnessConfig())

    tiny = next(row for row in report.groups if row.group == "tiny")
    assert not tiny.in_gaps and tiny.served_items == 10
    assert report.items_without_attribute == 10
    kept = np.isin(groups, ["a", "b", "c"])
    expected = demographic_parity_difference(labels[kept], predictions[kept], sensitive_features=groups[kept])
    assert report.largest(DEMOGRAPHIC_PARITY).value == pytest.approx(expected)


def test_window_fairness_refuses_an_attribute_with_one_large_enough_group():
    labels, predictions, _ = _traffic(100, seed=5)
    groups = np.array(["a"] * 95 + ["b"] * 5)

    with pytest.raises(ConfigError, match="1 group"):
        window_fairness(predictions, groups, labels=labels, attribute="segment", config=FairnessConfig())


def test_window_fairness_refuses_a_positive_class_the_model_does_not_have():
    labels, predictions, groups = _traffic(300, seed=6)

    with pytest.raises(ConfigError, match="positive_class 'yes'"):
        window_fairness(
            predictions, groups, labels=labels, attribute="segment", config=FairnessConfig(positive_class="yes")
        )
