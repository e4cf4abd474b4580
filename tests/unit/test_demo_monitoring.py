"""The demo's monitoring verdicts and table from given figures (no server): drift must be in the noisy window only,
and every logged item must carry its label."""

from __future__ import annotations

from pathlib import Path

from tritonforge.demo_monitoring import MonitoringOutcome, WindowOutcome, monitoring_checks, quality_table
from tritonforge.monitoring.exporter import DriftFigure, ModelFigures, QualityFigures


def _window(name: str, *, drifted: bool, labelled: int = 225, accuracy: float = 0.98) -> WindowOutcome:
    quality = QualityFigures(
        labelled_items=labelled,
        label_coverage=labelled / 225,
        metrics={"accuracy": accuracy, "f1_macro": accuracy},
        accuracy_interval=(accuracy - 0.03, accuracy + 0.01),
        reference_accuracy=0.975,
        drops={"accuracy": accuracy < 0.9},
    )
    drift = [DriftFigure(group="image", score=1.0, detected=drifted), DriftFigure(group="logits:class_mix", score=0.1,
                                                                                     detected=False)]  # fmt: skip
    return WindowOutcome(name=name, figures=ModelFigures(window_items=225, drift=drift, quality=quality))


def _outcome(clean: WindowOutcome, shifted: WindowOutcome) -> MonitoringOutcome:
    return MonitoringOutcome(log_dir=Path("log"), clean=clean, shifted=shifted, reference_written=True)


def test_checks_pass_only_with_drift_in_the_noisy_window_alone() -> None:
    good = _outcome(_window("clean", drifted=False), _window("shifted", drifted=True, accuracy=0.86))
    assert all(monitoring_checks(good).values())
    false_alarm = _outcome(_window("clean", drifted=True), _window("shifted", drifted=True))
    assert monitoring_checks(false_alarm)["monitor: no drift in the clean window"] is False
    missed = _outcome(_window("clean", drifted=False), _window("shifted", drifted=False))
    assert monitoring_checks(missed)["monitor: drift found in the noisy window"] is False


def test_checks_fail_when_labels_are_missing() -> None:
    partial = _outcome(_window("clean", drifted=False, labelled=200), _window("shifted", drifted=True))
    assert monitoring_checks(partial)["monitor: quality from labels joined to every logged item"] is False


def test_table_shows_drifted_groups_and_the_quality_verdict() -> None:
    table = quality_table(_outcome(_window("clean", drifted=False), _window("shifted", drifted=True, accuracy=0.86)))
    clean, shifted = table.splitlines()[1:]
    assert clean.split()[:3] == ["clean", "225", "225"] and clean.rstrip().endswith("ok      none")
    assert "0.860 [0.830, 0.870]" in shifted and shifted.rstrip().endswith("DROP    image")


def test_the_demo_passes_only_when_its_monitoring_checks_pass() -> None:
    from tritonforge.demo import DemoResult, demo_checks

    result = DemoResult(served_accuracy=0.99, agreement=1.0, max_abs_logit_diff=0.0, loadtest_passed=True)
    result.text = {"fp32_min": 0.9999}
    false_alarm = _outcome(_window("clean", drifted=True), _window("shifted", drifted=True))
    result.monitoring_checks = monitoring_checks(false_alarm)
    result.checks = demo_checks(result)
    assert result.checks["monitor: no drift in the clean window"] is False and not result.passed
