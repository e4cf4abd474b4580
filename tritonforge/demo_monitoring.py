"""The demo's monitoring step: log real traffic, then ask the monitor about a clean window and a shifted one.

    outcome = monitor_demo_traffic(server.grpc_url, repository, split=load_split(), reference_logits=logits,
                                   log_dir=run_dir / "predictions")
    outcome.clean.drifted, outcome.shifted.drifted      # False, True

The held-out digits are cut in two: the first half is the served version's reference (written beside it unless the
version already has one), the second half is sent twice through a client that logs every call (Parquet) and gives
every item's label back: once as it is (the clean window), once with Gaussian pixel noise (the shifted window).
Each window is then read back from the log and judged by the same code as `tritonforge monitor serve`
(monitoring.figures): drift per feature group, and quality from the labels joined by request id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tritonforge.errors import ConfigError
from tritonforge.examples.digits import INPUT_NAME, MODEL_NAME, OUTPUT_NAME, DigitsSplit

if TYPE_CHECKING:
    from tritonforge.monitoring.exporter import ModelFigures

NOISE_SD = 0.3
"""Sd of the Gaussian noise added to the shifted window's pixels (which lie in [0, 1]); clipped back to [0, 1]."""
BATCH = 15
"""Items per logged request."""


@dataclass(frozen=True, kw_only=True)
class WindowOutcome:
    """One logged window as the monitor sees it."""

    name: str
    figures: ModelFigures

    @property
    def drifted_groups(self) -> list[str]:
        """The feature groups the drift tests flagged."""
        return [g.group for g in self.figures.drift if g.detected]

    @property
    def drifted(self) -> bool:
        """Whether any feature group drifted."""
        return bool(self.drifted_groups)


@dataclass(frozen=True, kw_only=True)
class MonitoringOutcome:
    """The two windows, where their log lies, and whether the demo wrote the reference."""

    log_dir: Path
    clean: WindowOutcome
    shifted: WindowOutcome
    reference_written: bool


def monitor_demo_traffic(
    url: str,
    repository: Path,
    *,
    split: DigitsSplit,
    reference_logits: NDArray[np.float32],
    log_dir: Path,
    noise_sd: float = NOISE_SD,
    seed: int = 0,
) -> MonitoringOutcome:
    """Log a clean and a noisy window of held-out digits against the served `digits`, and judge both from the log.

    Args:
        url: the server's gRPC address.
        repository: the served repository (the reference is read from, or written beside, the newest digits version).
        split: the digits split; its test half feeds the reference and the windows.
        reference_logits: the model's logits on `split.x_test` (the reference's outputs).
        log_dir: a new folder for the prediction log.
        noise_sd: the shifted window's pixel noise.
        seed: seed of the noise and of the monitor's tests.
    """
    from tritonforge.client import TritonClient
    from tritonforge.monitoring.figures import WindowFigures
    from tritonforge.monitoring.logger import PredictionLogger
    from tritonforge.monitoring.parquet_sink import ParquetSink

    half = len(split.x_test) // 2
    written = _ensure_reference(repository, split.x_test[:half], reference_logits[:half], split.y_test[:half])
    images, labels = split.x_test[half:], split.y_test[half:]
    noisy = np.clip(images + np.random.default_rng(seed).normal(0.0, noise_sd, images.shape), 0.0, 1.0)
    bounds = [_now()]
    with (
        PredictionLogger(ParquetSink(log_dir), flush_interval_s=0.2) as logger,
        TritonClient(url, prediction_log=logger) as client,
    ):
        for name, window in (("clean", images), ("shifted", noisy.astype(np.float32))):
            for i in range(0, len(window), BATCH):
                outputs = client.infer(MODEL_NAME, {INPUT_NAME: window[i : i + BATCH]}, attributes={"window": name})
                client.feedback(outputs.request_id, labels[i : i + BATCH], model=MODEL_NAME)
            bounds.append(_now())
        logger.flush()
    outcomes = [
        WindowOutcome(
            name=name,
            figures=WindowFigures(
                log=str(log_dir), repository=repository, window=f"{start.isoformat()}..{end.isoformat()}", seed=seed
            )(MODEL_NAME),
        )
        for name, start, end in (("clean", bounds[0], bounds[1]), ("shifted", bounds[1], bounds[2]))
    ]
    return MonitoringOutcome(log_dir=log_dir, clean=outcomes[0], shifted=outcomes[1], reference_written=written)


def quality_table(outcome: MonitoringOutcome) -> str:
    """The two windows side by side: drift found, and quality from the labels the demo gave back."""
    rows = [
        f"    {'window':<8} {'items':>5} {'labelled':>8}  {'accuracy [95% interval]':<24} {'f1 macro':>8} "
        f"{'estimated':>9} {'reference':>9}  {'quality':<7} drift",
    ]
    for window in (outcome.clean, outcome.shifted):
        figures = window.figures
        quality = figures.quality
        drift = ", ".join(window.drifted_groups) or "none"
        if quality is None or not quality.metrics or quality.accuracy_interval is None:
            rows.append(f"    {window.name:<8} {figures.window_items:>5} {0:>8}  {'no labels':<24} {'':>8} "
                        f"{_number(figures.estimated_accuracy):>9} {'':>9}  {'-':<7} {drift}")  # fmt: skip
            continue
        low, high = quality.accuracy_interval
        accuracy = f"{quality.metrics['accuracy']:.3f} [{low:.3f}, {high:.3f}]"
        verdict = "-" if not quality.drops else ("DROP" if any(quality.drops.values()) else "ok")
        rows.append(
            f"    {window.name:<8} {figures.window_items:>5} {quality.labelled_items:>8}  {accuracy:<24} "
            f"{quality.metrics.get('f1_macro', float('nan')):>8.3f} {_number(figures.estimated_accuracy):>9} "
            f"{_number(quality.reference_accuracy):>9}  {verdict:<7} {drift}"
        )
    return "\n".join(rows)


def monitoring_checks(outcome: MonitoringOutcome) -> dict[str, bool]:
    """The demo's monitoring verdicts: drift in the shifted window only, and quality from every label given back."""

    def labelled(window: WindowOutcome) -> bool:
        quality = window.figures.quality
        return quality is not None and 0 < window.figures.window_items == quality.labelled_items

    return {
        "monitor: no drift in the clean window": not outcome.clean.drifted,
        "monitor: drift found in the noisy window": outcome.shifted.drifted,
        "monitor: quality from labels joined to every logged item": labelled(outcome.clean)
        and labelled(outcome.shifted),
    }


def _ensure_reference(
    repository: Path, images: NDArray[np.float32], logits: NDArray[np.float32], labels: NDArray[np.int64]
) -> bool:
    """Write the newest digits version's reference from these items unless it has one; True when written."""
    from tritonforge.converters.repository import version_numbers
    from tritonforge.monitoring.reference import reference_version, write_reference

    try:
        reference_version(repository / MODEL_NAME)
        return False
    except ConfigError:
        versions = version_numbers(repository / MODEL_NAME)
        if not versions:
            raise
    write_reference(
        repository / MODEL_NAME / str(versions[-1]),
        inputs={INPUT_NAME: images},
        outputs={OUTPUT_NAME: logits},
        labels=labels,
        source="demo: first half of the held-out digits",
    )
    return True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
