from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.errors import ConfigError
from tritonforge.monitoring.logger import PredictionLogger
from tritonforge.monitoring.parquet_sink import ParquetSink
from tritonforge.monitoring.quality_report import fairness_from_log, quality_from_log
from tritonforge.monitoring.records import PredictionRecord
from tritonforge.monitoring.reference import write_reference

T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.timezone.utc)


def _classify(n: int, sharpness: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from known three-class probabilities (sharper: more accurate), and logits that overstate them."""
    true_logits = sharpness * rng.normal(0.0, 1.0, (n, 3))
    probabilities = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in probabilities])
    return labels, (2.0 * true_logits).astype(np.float32)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    labels, logits = _classify(600, 4.0, rng)
    (tmp_path / "repo" / "toy" / "1").mkdir(parents=True)
    write_reference(
        tmp_path / "repo" / "toy" / "1",
        inputs={"x": rng.normal(size=(600, 2)).astype(np.float32)},
        outputs={"logits": logits},
        labels=labels,
    )
    return tmp_path / "repo"


def _log(root: Path, *, sharp_a: float, sharp_c: float, labelled: int, seed: int = 1) -> None:
    """400 requests of two items, groups a / b / c, labels for the first `labelled` requests."""
    rng = np.random.default_rng(seed)
    with PredictionLogger(ParquetSink(root)) as logger:
        for i in range(400):
            group = "abc"[i % 3]
            labels, logits = _classify(2, sharp_c if group == "c" else sharp_a, rng)
            request_id = f"r{i:04d}"
            logger.log(
                PredictionRecord.create(
                    model="toy",
                    request_id=request_id,
                    time=T0 + dt.timedelta(seconds=i),
                    items=2,
                    inputs={"x": rng.normal(size=(2, 2)).astype(np.float32)},
                    outputs={"logits": logits},
                    attributes={"group": group},
                )  # fmt: skip
            )
            if i < labelled:
                for item, label in enumerate(labels):
                    logger.feedback(request_id, int(label), item_index=item)


def test_quality_from_log_alerts_on_a_worse_window_and_estimates_it_before_labels(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=1.5, sharp_c=1.5, labelled=200)

    result = quality_from_log(log=str(tmp_path / "log"), repository=repository, model="toy")

    assert result.output == "logits" and result.served_items == 800
    assert result.quality is not None and result.quality.labelled_items == 400
    assert result.quality.coverage == pytest.approx(0.5)
    assert result.verdict.alert
    assert result.reference_metrics["accuracy"] > 0.85
    assert result.estimate is not None and result.estimate.items == 800
    assert result.estimate.value < result.reference_metrics["accuracy"] - 0.1  # the drop shows without labels
    assert abs(result.estimate_error_points) < 6.0


def test_quality_from_log_gives_no_alert_for_a_window_like_the_reference(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=4.0, sharp_c=4.0, labelled=200)

    result = quality_from_log(log=str(tmp_path / "log"), repository=repository, model="toy")

    assert not result.verdict.alert
    assert result.verdict.checks


def test_quality_from_log_stands_on_the_estimate_before_any_label(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=1.5, sharp_c=1.5, labelled=0)

    result = quality_from_log(log=str(tmp_path / "log"), repository=repository, model="toy")

    assert result.quality is None and not result.verdict.alert
    assert "no labels yet" in result.verdict.reason
    assert result.estimate is not None and result.estimate_error_points is None


def test_monitor_quality_cli_writes_quality_json_and_exits_1_on_a_drop(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=1.5, sharp_c=1.5, labelled=200)
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app, ["monitor", "quality", "toy", "--log", str(tmp_path / "log"), "-r", str(repository), "--out", str(out)]
    )

    assert result.exit_code == 1, result.output
    assert "QUALITY DROP" in result.output
    payload = json.loads((out / "quality.json").read_text())
    assert payload["verdict"]["alert"] is True
    assert payload["quality"]["labelled_items"] == 400
    assert payload["calibration"]["method"] == "temperature"


def test_monitor_quality_cli_exits_0_on_a_good_window_and_reads_last_n(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=4.0, sharp_c=4.0, labelled=400)

    result = CliRunner().invoke(
        app, ["monitor", "quality", "toy", "--log", str(tmp_path / "log"), "-r", str(repository), "--last", "500"]
    )

    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output


def test_fairness_from_log_finds_the_group_with_worse_answers(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=4.0, sharp_c=1.0, labelled=400)

    (report,) = fairness_from_log(log=str(tmp_path / "log"), repository=repository, model="toy", attributes=["group"])

    assert report.alert
    worst = min(report.groups, key=lambda row: row.accuracy)
    assert worst.group == "c"


def test_monitor_fairness_cli_reads_the_attribute_from_the_config_and_exits_1_beyond_a_limit(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=4.0, sharp_c=1.0, labelled=400)
    (repository / "toy" / "monitoring.yaml").write_text("fairness: {group_attributes: [group]}\n")
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app, ["monitor", "fairness", "toy", "--log", str(tmp_path / "log"), "-r", str(repository), "--out", str(out)]
    )

    assert result.exit_code == 1, result.output
    payload = json.loads((out / "fairness.json").read_text())
    assert payload["attributes"][0]["attribute"] == "group" and payload["attributes"][0]["alert"] is True


def test_monitor_fairness_cli_exits_0_when_groups_are_alike(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=4.0, sharp_c=4.0, labelled=400)

    result = CliRunner().invoke(
        app, ["monitor", "fairness", "toy", "--log", str(tmp_path / "log"), "-r", str(repository), "-a", "group"]
    )

    assert result.exit_code == 0, result.output


def test_fairness_from_log_names_an_attribute_the_requests_do_not_carry(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=4.0, sharp_c=4.0, labelled=10)

    with pytest.raises(ConfigError, match="carry no attribute 'region'"):
        fairness_from_log(log=str(tmp_path / "log"), repository=repository, model="toy", attributes=["region"])


def test_monitor_fairness_cli_says_in_one_line_when_no_attribute_is_named(repository, tmp_path):
    _log(tmp_path / "log", sharp_a=4.0, sharp_c=4.0, labelled=10)

    result = CliRunner().invoke(
        app, ["monitor", "fairness", "toy", "--log", str(tmp_path / "log"), "-r", str(repository)]
    )

    assert result.exit_code == 1
    assert "ConfigError: no group attribute" in result.output
