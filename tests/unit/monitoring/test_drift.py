import numpy as np
import pytest

from tritonforge.errors import ConfigError
from tritonforge.monitoring.drift import (
    DriftSettings,
    TensorKind,
    categorical_test,
    continuous_test,
    detect_drift,
    mmd_permutation_test,
)


def _gaussian(seed: int, n: int, d: int = 6, shift: float = 0.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, d)) + shift).astype(np.float32)


def test_detect_drift_finds_one_sd_shift_when_500_rows():
    ref, holdout = _gaussian(0, 1000), _gaussian(1, 500)
    window = _gaussian(2, 500)
    window[:, 2] += 1.0
    report = detect_drift({"x": ref}, {"x": window}, holdout={"x": holdout})
    assert report.drifted
    drifted = {t.name for t in report.drifted_tests}
    assert "x[2]" in drifted
    assert not drifted & {"x[0]", "x[1]", "x[3]", "x[4]", "x[5]"}


def test_detect_drift_calls_no_drift_when_same_distribution():
    ref, holdout = _gaussian(0, 1000), _gaussian(1, 500)
    for seed in range(3, 8):
        report = detect_drift(
            {"x": ref}, {"x": _gaussian(seed, 500)}, holdout={"x": holdout}, settings=DriftSettings(seed=seed)
        )
        assert not report.drifted, [t.name for t in report.drifted_tests]


def test_detect_drift_ignores_tiny_effect_when_window_is_huge():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50_000, 1)).astype(np.float32)
    window = (rng.normal(size=(50_000, 1)) + 0.05).astype(np.float32)
    report = detect_drift({"x": ref}, {"x": window}, settings=DriftSettings(multivariate=False))
    (test,) = report.tests
    assert test.p_adjusted < 1e-6  # significant ...
    assert test.effect_size < 0.1  # ... but negligible
    assert not report.drifted


def test_detect_drift_samples_window_to_max_items():
    ref = _gaussian(0, 500)
    report = detect_drift({"x": ref}, {"x": _gaussian(1, 5000)}, settings=DriftSettings(max_items=300))
    assert report.n_window == 300 and report.n_window_total == 5000
    assert all(t.n_window == 300 for t in report.tests if t.test == "ks")


def test_categorical_feature_uses_chi_square_and_finds_mix_change():
    rng = np.random.default_rng(0)
    ref = rng.choice(3, size=(2000, 1), p=[0.5, 0.3, 0.2])
    same = rng.choice(3, size=(1000, 1), p=[0.5, 0.3, 0.2])
    moved = rng.choice(3, size=(1000, 1), p=[0.2, 0.3, 0.5])
    (kept,) = detect_drift({"c": ref}, {"c": same}).tests
    (found,) = detect_drift({"c": ref}, {"c": moved}).tests
    assert kept.test == found.test == "chi2" and kept.effect_name == "cramers_v"
    assert not kept.drifted and found.drifted


def test_categorical_test_pools_rare_and_unseen_categories():
    ref = np.array([0] * 500 + [1] * 500 + [2] * 2)
    window = np.array([0] * 300 + [1] * 300 + [7] * 3)
    statistic, p_value, effect = categorical_test(ref, window)
    assert np.isfinite(statistic) and 0 <= p_value <= 1 and 0 <= effect <= 1


def test_continuous_test_effect_is_in_reference_sds():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 2, 5000)
    _, _, effect = continuous_test(ref, ref + 1.0)
    assert effect == pytest.approx(0.5, abs=0.02)


def test_prediction_drift_finds_class_mix_and_confidence_change():
    rng = np.random.default_rng(0)
    ref_classes = rng.choice(4, 2000)
    ref = np.eye(4)[ref_classes] * 5 + rng.normal(size=(2000, 4))
    window = np.eye(4)[rng.choice(4, 1000, p=[0.7, 0.1, 0.1, 0.1])] * 5 + rng.normal(size=(1000, 4))
    report = detect_drift({"logits": ref}, {"logits": window}, kinds={"logits": TensorKind.SCORES})
    names = {t.name: t for t in report.tests}
    assert set(names) == {"logits:class_mix", "logits:confidence"}
    assert names["logits:class_mix"].drifted


def test_mmd_finds_correlation_change_invisible_per_feature():
    rng = np.random.default_rng(0)
    ref, holdout = rng.normal(size=(800, 4)), rng.normal(size=(400, 4))
    z = rng.normal(size=(500, 1))
    window = np.hstack([z, z, rng.normal(size=(500, 2))]) * np.array([1, 1, 1, 1])
    window[:, :2] = (window[:, :2] + rng.normal(size=(500, 2)) * 0.3) / np.sqrt(1.09)
    report = detect_drift(
        {"e": ref},
        {"e": window},
        holdout={"e": holdout},
        kinds={"e": "embedding"},
        settings=DriftSettings(min_mmd2=0.0),
    )
    (mmd,) = report.tests
    assert mmd.test == "mmd" and mmd.drifted


def test_mmd_permutation_test_is_deterministic_and_uniformish_under_null():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    first = mmd_permutation_test(x, y, permutations=99, rng=np.random.default_rng(5))
    again = mmd_permutation_test(x, y, permutations=99, rng=np.random.default_rng(5))
    assert first == again
    assert first[1] > 0.05
    shifted = mmd_permutation_test(x, y + 1.0, permutations=99, rng=np.random.default_rng(5))
    assert shifted[1] == pytest.approx(0.01) and shifted[0] > first[0]


def test_mmd_is_skipped_without_holdout():
    report = detect_drift({"x": _gaussian(0, 100)}, {"x": _gaussian(1, 100)})
    assert "x:mmd" in report.skipped
    assert all(t.test == "ks" for t in report.tests)


def test_detect_drift_skips_tensors_missing_or_reshaped_in_window():
    reference = {"x": _gaussian(0, 50), "y": _gaussian(1, 50), "z": _gaussian(2, 50)}
    report = detect_drift(reference, {"x": _gaussian(3, 50, d=3), "z": _gaussian(4, 50)})
    assert "differs" in report.skipped["x"] and "not in the window" in report.skipped["y"]
    assert {t.tensor for t in report.tests} == {"z"}


def test_detect_drift_refuses_window_without_common_tensor():
    with pytest.raises(ConfigError, match="nothing to test"):
        detect_drift({"x": _gaussian(0, 50)}, {"other": _gaussian(1, 50)})


def test_detect_drift_refuses_empty_window():
    with pytest.raises(ConfigError, match="at least 2"):
        detect_drift({"x": _gaussian(0, 50)}, {"x": _gaussian(1, 1)})


def test_report_to_dict_is_json_ready():
    import json

    report = detect_drift(
        {"x": _gaussian(0, 100)}, {"x": _gaussian(1, 100, shift=2.0)}, holdout={"x": _gaussian(3, 60)}
    )
    document = json.loads(json.dumps(report.to_dict()))
    assert document["drifted"] is True and document["tests"][0]["name"] == "x[0]"


def test_settings_refuse_bad_alpha():
    with pytest.raises(ConfigError, match="alpha"):
        DriftSettings(alpha=1.5)


def test_categorical_effect_is_the_same_at_every_window_size_when_the_shift_is_the_same():
    """A 500-item reference against 200 or 20,000 items of the same shifted mix reads the same Cramér's V."""
    reference = np.repeat(np.arange(10), 50)  # uniform over 10 classes
    shifted = np.array([0, 1, 2] * 3 + list(range(3, 10)))  # classes 0-2 three times as often
    effects = [categorical_test(reference, np.tile(shifted, n))[2] for n in (13, 125, 1250)]  # 208 .. 20,000 items
    assert effects[0] > 0.2
    assert max(effects) - min(effects) < 1e-3
