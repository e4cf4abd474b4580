from __future__ import annotations

from pathlib import Path

import pytest

from tritonforge.errors import ConfigError
from tritonforge.monitoring.config import (
    MonitoringConfig,
    QualityMetric,
    load_monitoring_config,
    monitoring_config_path,
)


def _write(repository: Path, text: str) -> Path:
    path = monitoring_config_path(repository, "digits")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_load_monitoring_config_gives_defaults_when_the_model_has_no_file(tmp_path: Path):
    config = load_monitoring_config(tmp_path, "digits")

    assert config == MonitoringConfig()
    assert config.drift.alpha == 0.05
    assert config.quality.confidence_level == 0.95
    assert config.fairness.max_demographic_parity_difference == 0.1
    assert config.prediction_log.sample_rate == 1.0


def test_load_monitoring_config_reads_the_file_and_keeps_defaults_for_what_it_leaves_out(tmp_path: Path):
    _write(
        tmp_path,
        "quality: {alert_metrics: [accuracy], max_drop: 0.02}\n"
        "fairness: {group_attributes: [segment], max_equalized_odds_difference: 0.2}\n",
    )

    config = load_monitoring_config(tmp_path, "digits")

    assert config.quality.alert_metrics == (QualityMetric.ACCURACY,)
    assert config.quality.max_drop == 0.02
    assert config.quality.min_labelled_items == 200
    assert config.fairness.group_attributes == ("segment",)
    assert config.fairness.max_equalized_odds_difference == 0.2
    assert config.drift.alpha == 0.05


def test_load_monitoring_config_accepts_an_empty_file(tmp_path: Path):
    _write(tmp_path, "")

    assert load_monitoring_config(tmp_path, "digits") == MonitoringConfig()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("drift: {alpah: 0.05}\n", "drift.alpah"),
        ("drift: {alpha: 1.5}\n", "drift.alpha"),
        ("quality: {alert_metrics: [auc]}\n", "quality.alert_metrics.0"),
        ("fairness: {min_group_size: 0}\n", "fairness.min_group_size"),
        ("prediction_log: {sample_rate: 2}\n", "prediction_log.sample_rate"),
        ("qualty: {}\n", "qualty"),
    ],
)
def test_load_monitoring_config_names_the_field_in_one_line_when_a_value_is_wrong(tmp_path: Path, text, where):
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError) as info:
        load_monitoring_config(tmp_path, "digits")

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {where}: ")


def test_load_monitoring_config_says_when_the_file_is_not_yaml(tmp_path: Path):
    _write(tmp_path, "drift: {alpha: [\n")

    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_monitoring_config(tmp_path, "digits")
