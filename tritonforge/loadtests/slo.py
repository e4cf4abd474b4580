"""Service-level objectives for a load test: read them from YAML, check a run's measurements against them.

    specs = load_slo_file(Path("slo/digits.yaml"))      # {"digits": SLOSpec(p99_ms=50.0, ...)}
    checks = evaluate(specs["digits"], measurement)     # one SLOCheck per objective set in the file
    ok = all(check.passed for check in checks)

The file maps each model name to its objectives; every objective is optional, but a model needs at least one:

    digits:
      p50_ms: 10          # median latency at most 10 ms
      p95_ms: 30
      p99_ms: 50
      max_error_ratio: 0.001   # at most 0.1 % of requests may fail
      min_rps: 100        # the run must sustain at least 100 requests/s

Latency percentiles come from Locust's own statistics (see `report.read_locust_stats`); nothing here
computes a percentile.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonforge.errors import ConfigError

__all__ = ["Comparison", "Measurement", "SLOCheck", "SLOSpec", "evaluate", "load_slo_file"]


class Comparison(str, enum.Enum):
    """How a measured value is compared with its objective."""

    AT_MOST = "<="
    """The measured value must not exceed the objective (latencies, error ratio)."""
    AT_LEAST = ">="
    """The measured value must reach the objective (throughput)."""


# name -> (comparison, unit); the order is the order of the printed table.
_OBJECTIVES: dict[str, tuple[Comparison, str]] = {
    "p50_ms": (Comparison.AT_MOST, "ms"),
    "p95_ms": (Comparison.AT_MOST, "ms"),
    "p99_ms": (Comparison.AT_MOST, "ms"),
    "max_error_ratio": (Comparison.AT_MOST, ""),
    "min_rps": (Comparison.AT_LEAST, "req/s"),
}


@dataclass(frozen=True, kw_only=True)
class SLOSpec:
    """The objectives one model must meet under load; unset objectives are not checked.

    Attributes:
        p50_ms: highest acceptable median latency, in milliseconds.
        p95_ms: highest acceptable 95th-percentile latency, in milliseconds.
        p99_ms: highest acceptable 99th-percentile latency, in milliseconds.
        max_error_ratio: highest acceptable share of failed requests, between 0 and 1.
        min_rps: lowest acceptable throughput, in requests per second.
    """

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_ratio: float | None = None
    min_rps: float | None = None

    def __post_init__(self) -> None:
        values = self.objectives()
        if not values:
            raise ConfigError(f"an SLO needs at least one objective; set any of {', '.join(_OBJECTIVES)}")
        for name, value in values.items():
            object.__setattr__(self, name, _check_number(name, value))

    def objectives(self) -> dict[str, float]:
        """The objectives that are set, by name, in table order."""
        return {name: value for name in _OBJECTIVES if (value := getattr(self, name)) is not None}


@dataclass(frozen=True, kw_only=True)
class Measurement:
    """What a load test measured for one model (from Locust's statistics).

    Attributes:
        requests: number of requests sent, failed ones included.
        failures: number of failed requests.
        rps: requests per second over the run, as Locust computes it.
        p50_ms: median latency in ms, or None when no request was made.
        p95_ms: 95th-percentile latency in ms, or None when no request was made.
        p99_ms: 99th-percentile latency in ms, or None when no request was made.
        mean_ms: mean latency in ms, or None when unknown or no request was made (the server breakdown compares
            it with the server's own per-request time).
    """

    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None = None

    @property
    def error_ratio(self) -> float | None:
        """Failed requests over all requests, or None when no request was made (nothing to divide)."""
        return self.failures / self.requests if self.requests else None

    def value(self, objective: str) -> float | None:
        """The measured value an objective is compared with (`max_error_ratio` reads `error_ratio`)."""
        if objective == "max_error_ratio":
            return self.error_ratio
        if objective == "min_rps":
            return self.rps
        return getattr(self, objective)  # type: ignore[no-any-return]


@dataclass(frozen=True, kw_only=True)
class SLOCheck:
    """One objective checked against its measurement.

    Attributes:
        name: the objective's name as written in the SLO file (`p99_ms`, `min_rps`, ...).
        objective: the threshold.
        comparison: whether the measurement must be at most or at least the threshold.
        unit: unit of both numbers ("ms", "req/s", or "" for a ratio).
        measured: the measured value, or None when it could not be measured (no request completed).
        passed: whether the objective was met; an unmeasured objective is never met.
    """

    name: str
    objective: float
    comparison: Comparison
    unit: str
    measured: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written in summary.json."""
        return {
            "name": self.name,
            "objective": self.objective,
            "comparison": self.comparison.value,
            "unit": self.unit,
            "measured": self.measured,
            "passed": self.passed,
        }


def evaluate(spec: SLOSpec, measured: Measurement) -> list[SLOCheck]:
    """Check each objective of `spec` against a run's measurement.

    Args:
        spec: the objectives.
        measured: what the run measured.

    Returns:
        One check per objective that `spec` sets, in the order p50, p95, p99, error ratio, throughput.
    """
    checks = []
    for name, objective in spec.objectives().items():
        comparison, unit = _OBJECTIVES[name]
        value = measured.value(name)
        if value is None:
            passed = False
        elif comparison is Comparison.AT_MOST:
            passed = value <= objective
        else:
            passed = value >= objective
        checks.append(
            SLOCheck(name=name, objective=objective, comparison=comparison, unit=unit, measured=value, passed=passed)
        )
    return checks


def load_slo_file(path: Path) -> dict[str, SLOSpec]:
    """Read an SLO file: a YAML mapping of model name to objectives.

    Args:
        path: the YAML file.

    Returns:
        The objectives of each model in the file.

    Raises:
        ConfigError: the file is missing, is not valid YAML, is empty, or names an unknown objective or a value
            that is not a non-negative number; the message names the file and the key.
    """
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"SLO file {path} does not exist; pass an existing YAML file to --slo") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"SLO file {path} is not valid YAML: {_one_line(exc)}") from exc
    if not document:
        raise ConfigError(f"SLO file {path} is empty; write `<model>: {{p99_ms: 50}}` (one mapping per model)")
    if not isinstance(document, dict):
        raise ConfigError(
            f"SLO file {path} must be a mapping of model name to objectives, not {type(document).__name__}"
        )
    return {str(model): _parse_model(path, str(model), body) for model, body in document.items()}


def _parse_model(path: Path, model: str, body: object) -> SLOSpec:
    if not isinstance(body, dict) or not body:
        raise ConfigError(
            f"SLO file {path}: '{model}' must map objective names to numbers (any of {', '.join(_OBJECTIVES)})"
        )
    values: dict[str, float] = {}
    for key, value in body.items():
        where = f"SLO file {path}: {model}.{key}"
        if key not in _OBJECTIVES:
            raise ConfigError(f"{where} is not a known objective; use one of {', '.join(_OBJECTIVES)}")
        try:
            values[key] = _check_number(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return SLOSpec(**values)


def _check_number(name: str, value: object) -> float:
    """Return `value` as a float, or raise ConfigError if it is not a usable objective for `name`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    if name == "max_error_ratio" and value > 1:
        raise ConfigError(f"max_error_ratio is a ratio between 0 and 1, got {value!r} (0.001 means 0.1 %)")
    if name.endswith("_ms") and value == 0:
        raise ConfigError(f"{name} must be above 0 ms, got {value!r}")
    return float(value)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def load_model_slo(path: Path, model: str) -> SLOSpec:
    """Read an SLO file and return the objectives of one model.

    Raises:
        ConfigError: the file is invalid or has no objectives for `model`.
    """
    specs = load_slo_file(path)
    if model not in specs:
        raise ConfigError(f"SLO file {path} has no objectives for '{model}'; it covers {sorted(specs)}")
    return specs[model]
