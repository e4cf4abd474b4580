"""The monitor's figures from a real prediction log (ParquetSink + DuckDB) and a real reference: drift only in the
shifted window, a quality drop only where labels say the model got worse, an accuracy estimate, fairness gaps."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from tritonforge.monitoring.exporter import MonitorExporter, exposition
from tritonforge.monitoring.figures import WindowFigures
from tritonforge.monitoring.logger import PredictionLogger
from tritonforge.monitoring.parquet_sink import ParquetSink
from tritonforge.monitoring.records import PredictionRecord
from tritonforge.monitoring.reference import write_reference

FEATURES, CLASSES, BATCH = 6, 3, 10


def _model(x: np.ndarray) -> np.ndarray:
    """A fixed linear classifier: logits from the first three features."""
    return (3.0 * x[:, :CLASSES]).astype(np.float32)


def _repository(root: Path, *, fairness: bool = False) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, FEATURES)).astype(np.float32)
    logits = _model(x)
    labels = logits.argmax(axis=1)
    flip = rng.random(len(labels)) < 0.1  # a reference accuracy of about 0.93
    labels[flip] = rng.integers(0, CLASSES, flip.sum())
    model_dir = root / "toy"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text('name: "toy"\n')
    write_reference(model_dir / "1", inputs={"x": x}, outputs={"logits": logits}, labels=labels)
    if fairness:
        (model_dir / "monitoring.yaml").write_text(
            "fairness: {group_attributes: [segment], positive_class: '0', min_group_size: 30}\n"
            "quality: {min_labelled_items: 100}\n"
        )
    else:
        (model_dir / "monitoring.yaml").write_text("quality: {min_labelled_items: 100}\n")
    return root


def _log(
    log: Path,
    *,
    shift: float = 0.0,
    label_noise: float = 0.1,
    items: int = 600,
    seed: int = 1,
    segments: bool = False,
) -> None:
    """Log `items` predictions of the toy model in batches, with a label for each item."""
    rng = np.random.default_rng(seed)
    with PredictionLogger(ParquetSink(log), flush_records=50, flush_interval_s=0.05) as logger:
        for b in range(items // BATCH):
            x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32) + shift
            segment = "b" if segments and b % 2 else "a"
            if segment == "b":
                x[:, 0] -= 2.0  # class 0 predicted far less often for segment b
            logits = _model(x)
            record = PredictionRecord.create(
                model="toy", items=BATCH, inputs={"x": x}, outputs={"logits": logits}, attributes={"segment": segment}
            )
            assert logger.log(record)
            truth = logits.argmax(axis=1)
            noisy = rng.random(BATCH) < label_noise  # as in the reference: a random class
            truth[noisy] = rng.integers(0, CLASSES, noisy.sum())
            for i, label in enumerate(truth):
                logger.feedback(record.request_id, int(label), item_index=i, model="toy")


def _groups(figures) -> dict[str, bool]:
    return {g.group: g.detected for g in figures.drift}


def test_a_clean_window_shows_no_drift_and_no_quality_drop(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    _log(tmp_path / "log")
    figures = WindowFigures(log=str(tmp_path / "log"), repository=repo)("toy")
    assert figures.window_items == 600
    groups = _groups(figures)
    assert "x" in groups and not any(groups.values()), groups
    quality = figures.quality
    assert quality is not None and quality.labelled_items == 600 and quality.label_coverage == pytest.approx(1.0)
    assert quality.drops and not any(quality.drops.values()), quality.drops
    assert quality.reference_accuracy == pytest.approx(0.93, abs=0.03)
    low, high = quality.accuracy_interval
    assert low < quality.metrics["accuracy"] < high
    assert figures.estimated_accuracy is not None and 0.5 < figures.estimated_accuracy <= 1.0
    assert figures.log is not None and figures.log.items == 600
    now_s = dt.datetime.now(dt.timezone.utc).timestamp()
    assert figures.log.last_record_time_s is not None and now_s - 300 < figures.log.last_record_time_s <= now_s + 1


def test_a_shifted_window_drifts_and_worse_labels_drop_quality(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    _log(tmp_path / "log", shift=1.0, label_noise=0.4)
    figures = WindowFigures(log=str(tmp_path / "log"), repository=repo)("toy")
    assert _groups(figures)["x"] is True
    assert figures.quality is not None and figures.quality.drops["accuracy"] is True


def test_fairness_gaps_come_from_the_configured_attribute(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo", fairness=True)
    _log(tmp_path / "log", segments=True)
    figures = WindowFigures(log=str(tmp_path / "log"), repository=repo)("toy")
    gaps = {(g.attribute, g.metric): g for g in figures.fairness}
    parity = next(g for (a, m), g in gaps.items() if a == "segment" and "parity" in m)
    assert parity.gap > parity.limit == pytest.approx(0.1)


def test_a_window_with_no_traffic_exports_only_the_log_figures(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    _log(tmp_path / "log", items=20)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=3)
    figures = WindowFigures(log=str(tmp_path / "log"), repository=repo, now=lambda: later)("toy")
    assert figures.window_items == 0 and not figures.drift and figures.quality is None
    assert figures.log is not None and figures.log.items == 0 and figures.log.last_record_time_s is not None


def test_the_exporter_publishes_the_real_figures(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    _log(tmp_path / "log", shift=1.0)
    exporter = MonitorExporter(["toy"], WindowFigures(log=str(tmp_path / "log"), repository=repo))
    assert exporter.refresh() == 0
    text = exposition(exporter)
    assert 'tritonforge_drift_detected{group="x",model="toy"} 1.0' in text
    assert 'tritonforge_quality_drop{metric="accuracy",model="toy"}' in text


def test_a_fixed_range_window_reads_only_its_own_records(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    _log(tmp_path / "log", items=200)
    middle = dt.datetime.now(dt.timezone.utc)
    _log(tmp_path / "log", shift=1.0, items=300, seed=2)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    clean = WindowFigures(log=str(tmp_path / "log"), repository=repo, window=f"..{middle.isoformat()}")("toy")
    shifted = WindowFigures(
        log=str(tmp_path / "log"), repository=repo, window=f"{middle.isoformat()}..{later.isoformat()}"
    )("toy")
    assert (clean.window_items, shifted.window_items) == (200, 300)
    assert not any(_groups(clean).values()) and _groups(shifted)["x"] is True
