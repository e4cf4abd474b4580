"""The per-model monitoring config: thresholds for drift, quality and fairness, and the log's sample rate.

    config = load_monitoring_config(Path("model_repository"), "digits")
    config.quality.confidence_level        # 0.95 unless <repository>/digits/monitoring.yaml says otherwise

It lives beside config.pbtxt as `<repository>/<model>/monitoring.yaml` (Triton ignores files it does not know);
every field has a default, so a model without the file is monitored with the defaults below:

    drift:       {alpha: 0.05, min_effect_size: 0.1, multivariate: true, max_items: 50000}
    quality:     {min_labelled_items: 200, confidence_level: 0.95, alert_metrics: [accuracy, f1_macro], max_drop: 0.0}
    fairness:    {group_attributes: [], max_demographic_parity_difference: 0.1, max_equalized_odds_difference: 0.1,
                  min_group_size: 30, positive_class: null}
    prediction_log: {sample_rate: 1.0}

The file is validated (pydantic, unknown keys refused), so a typo is one clear line naming the field.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tritonforge.yaml_models import load_yaml_model

MONITORING_FILE = "monitoring.yaml"
"""The config's file name inside a model's folder of the repository."""


class QualityMetric(str, Enum):
    """A quality metric an alert can watch (each computed per window from the labelled items)."""

    ACCURACY = "accuracy"
    """Share of labelled items predicted right."""
    PRECISION_MACRO = "precision_macro"
    """Precision averaged over classes, each class counting the same."""
    RECALL_MACRO = "recall_macro"
    """Recall averaged over classes (balanced accuracy)."""
    F1_MACRO = "f1_macro"
    """F1 averaged over classes."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DriftConfig(_Section):
    """When a window's inputs or predictions count as drifted."""

    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    """Family-wise false-alarm rate per window, after the multiple-testing correction over features."""
    min_effect_size: float = Field(default=0.1, ge=0.0)
    """A shift whose effect size (the test's own measure) is below this is not called drift, whatever its p-value."""
    multivariate: bool = True
    """Run the multivariate test (images, embeddings) besides the per-feature tests."""
    max_items: int = Field(default=50_000, ge=100)
    """Windows larger than this are sampled uniformly down to it (bounded memory and time)."""


class QualityConfig(_Section):
    """When a window's quality, measured from late labels, counts as dropped."""

    min_labelled_items: int = Field(default=200, ge=1)
    """A window with fewer labelled items gets no verdict (its interval would be too wide to mean anything)."""
    confidence_level: float = Field(default=0.95, gt=0.0, lt=1.0)
    """Level of the intervals around each window metric."""
    alert_metrics: tuple[QualityMetric, ...] = (QualityMetric.ACCURACY, QualityMetric.F1_MACRO)
    """The metrics whose drop raises the alert."""
    max_drop: float = Field(default=0.0, ge=0.0, le=1.0)
    """Drop below the reference tolerated on top of the interval (0.02: two accuracy points are accepted)."""


class FairnessConfig(_Section):
    """Which attributes to slice by and the largest gaps between groups allowed."""

    group_attributes: tuple[str, ...] = ()
    """Request attributes (given to the client's infer) that name a group, e.g. [segment, region]."""
    max_demographic_parity_difference: float = Field(default=0.1, ge=0.0, le=1.0)
    """Largest gap between groups in the rate of the positive prediction."""
    max_equalized_odds_difference: float = Field(default=0.1, ge=0.0, le=1.0)
    """Largest gap between groups in true-positive or false-positive rate."""
    min_group_size: int = Field(default=30, ge=1)
    """Groups with fewer labelled items are reported but left out of the gaps."""
    positive_class: str | None = None
    """The class treated as positive (one-vs-rest for multiclass models); null: the second of two classes, else
    the gaps are computed per class and the largest is reported."""


class PredictionLogConfig(_Section):
    """How much of the traffic the client logs."""

    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of requests written to the prediction log."""


class MonitoringConfig(_Section):
    """One model's monitoring config (see the module docstring)."""

    drift: DriftConfig = DriftConfig()
    quality: QualityConfig = QualityConfig()
    fairness: FairnessConfig = FairnessConfig()
    prediction_log: PredictionLogConfig = PredictionLogConfig()


def monitoring_config_path(repository: Path, model: str) -> Path:
    """Where a model's monitoring config lives in a model repository."""
    return repository / model / MONITORING_FILE


def load_monitoring_config(repository: Path, model: str) -> MonitoringConfig:
    """Read `<repository>/<model>/monitoring.yaml`, or the defaults when the model has none.

    Raises:
        ConfigError: the file is not YAML or a value is wrong (the message names the field).
    """
    path = monitoring_config_path(repository, model)
    if not path.is_file():
        return MonitoringConfig()
    return parse_monitoring_config(path)


def parse_monitoring_config(path: Path) -> MonitoringConfig:
    """Read and validate one monitoring config file.

    Raises:
        ConfigError: the file is missing, not YAML, or a value is wrong (the message names the field).
    """
    return load_yaml_model(
        path,
        MonitoringConfig,
        missing=f"monitoring config {path} does not exist; write one or leave it out for the defaults",
        fields_hint="see tritonforge/monitoring/config.py for the fields",
    )
