"""Prometheus gauges for the latest monitoring windows: what alerts and dashboards read.

    exporter = MonitorExporter(["digits"], compute=lambda model: ModelFigures(window_items=500, ...))
    exporter.refresh()                                     # one pass over the models
    run_exporter(exporter, port=9108, interval_s=60.0)    # serve /metrics, refresh every minute, until stopped

Each refresh asks `compute(model)` for the model's figures (drift, quality, estimated accuracy, fairness gaps,
prediction-log lag) and replaces the model's whole snapshot, so a feature group or group attribute that left the
window leaves the metrics too (no stale label sets). A compute that fails keeps the previous snapshot, counts the
error and leaves `tritonforge_monitor_last_refresh_timestamp_seconds` behind: the stale-monitor alert sees it.
The metrics live in the exporter's own CollectorRegistry, never the process-global one.

Drops happen in the clients, not in the monitor: `PredictionLogCollector(logger)` exports a PredictionLogger's
counters (logged, written, dropped by reason, pending) from the process that logs, beside its own metrics.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    from tritonforge.monitoring.logger import LoggerStats

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT = 9108
"""The monitor's metrics port (beside Triton's 8002)."""

METRICS: dict[str, str] = {
    "tritonforge_monitor_window_items": "Items (one per batch row) in the model's latest window.",
    "tritonforge_drift_score": "Effect size of the drift test of a feature group (the test's own measure).",
    "tritonforge_drift_p_value": "Corrected p-value of the drift test of a feature group.",
    "tritonforge_drift_detected": "1 when the feature group drifted in the latest window (p-value and effect size).",
    "tritonforge_quality_accuracy": "Accuracy of the latest window's labelled items.",
    "tritonforge_quality_accuracy_lower": "Lower bound of the accuracy's confidence interval.",
    "tritonforge_quality_accuracy_upper": "Upper bound of the accuracy's confidence interval.",
    "tritonforge_reference_accuracy": "Accuracy on the reference (evaluation) data.",
    "tritonforge_quality_metric": "A quality metric (accuracy, precision_macro, recall_macro, f1_macro) of the window.",
    "tritonforge_quality_drop": "1 when the metric is worse than the reference beyond its interval (0: not worse).",
    "tritonforge_quality_labelled_items": "Items of the latest window that have a label.",
    "tritonforge_quality_label_coverage": "Share of the latest window's items that have a label.",
    "tritonforge_estimated_accuracy": "Accuracy estimated from calibrated confidences, before labels arrive.",
    "tritonforge_fairness_gap": "Largest gap between groups of an attribute (demographic parity, equalized odds).",
    "tritonforge_fairness_gap_lower": "Lower bound of the gap's interval (beyond the limit: more than chance).",
    "tritonforge_fairness_gap_limit": "The gap allowed by the model's monitoring config.",
    "tritonforge_prediction_log_items": "Prediction-log records in the latest window.",
    "tritonforge_prediction_log_last_record_timestamp_seconds": "Time of the newest record in the log (Unix s).",
    "tritonforge_prediction_log_lag_seconds": "Age of the newest record in the log at the last refresh.",
    "tritonforge_monitor_last_refresh_timestamp_seconds": "When the model's figures were last computed (Unix s).",
    "tritonforge_monitor_refresh_duration_seconds": "How long the model's last successful refresh took.",
    "tritonforge_monitor_refresh_errors": "Refreshes of the model that failed.",
}
"""Every metric family `monitor serve` writes, with its help text (counters gain `_total` on the wire)."""

LOGGER_METRICS: dict[str, str] = {
    "tritonforge_prediction_log_logged": "Records the prediction logger accepted into its queue.",
    "tritonforge_prediction_log_sampled_out": "Calls not logged because of the model's sample rate.",
    "tritonforge_prediction_log_written": "Records the sink stored.",
    "tritonforge_prediction_log_dropped": "Records dropped, by reason: queue_full (writer behind), sink_error.",
    "tritonforge_prediction_log_labels_dropped": "Labels lost (queue full or sink error).",
    "tritonforge_prediction_log_sink_errors": "Failed sink calls.",
    "tritonforge_prediction_log_pending_records": "Records accepted but not yet stored or dropped.",
    "tritonforge_prediction_log_pending_age_seconds": "Age of the oldest record not yet stored (0 when none).",
}
"""The families a PredictionLogCollector writes in the client's process (where the drops happen)."""

COUNTERS = frozenset(
    {
        "tritonforge_monitor_refresh_errors",
        "tritonforge_prediction_log_logged",
        "tritonforge_prediction_log_sampled_out",
        "tritonforge_prediction_log_written",
        "tritonforge_prediction_log_dropped",
        "tritonforge_prediction_log_labels_dropped",
        "tritonforge_prediction_log_sink_errors",
    }
)
"""The families exported as counters; the rest are gauges."""


@dataclass(frozen=True, kw_only=True)
class DriftFigure:
    """The drift verdict of one feature group (an input, the predictions, the multivariate test)."""

    group: str
    score: float
    detected: bool
    p_value: float | None = None


@dataclass(frozen=True, kw_only=True)
class QualityFigures:
    """Quality of a window from its late labels; `drops` holds a verdict only for metrics with enough labels."""

    labelled_items: int
    label_coverage: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    accuracy_interval: tuple[float, float] | None = None
    reference_accuracy: float | None = None
    drops: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FairnessGap:
    """One gap between the groups of an attribute, the lower bound of its interval, and the gap the config allows."""

    attribute: str
    metric: str
    gap: float
    limit: float
    lower: float | None = None


@dataclass(frozen=True, kw_only=True)
class LogFigures:
    """Health of the prediction log as the monitor reads it: records in the window and the newest record."""

    items: int
    last_record_time_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class ModelFigures:
    """Everything the exporter publishes about one model's latest window; parts not computed are None or empty."""

    window_items: int
    drift: Sequence[DriftFigure] = ()
    quality: QualityFigures | None = None
    estimated_accuracy: float | None = None
    fairness: Sequence[FairnessGap] = ()
    log: LogFigures | None = None


Compute = Callable[[str], ModelFigures]
"""Computes one model's figures from its latest window (the prediction log, reference, labels and config)."""


@dataclass
class _State:
    figures: ModelFigures | None = None
    refreshed_at_s: float | None = None
    lag_s: float | None = None
    duration_s: float | None = None
    errors: int = 0


class MonitorExporter(Collector):
    """A Prometheus collector over the latest figures of each model, refreshed by `refresh()`.

    Args:
        models: the models to watch.
        compute: returns a model's figures (raises on failure: the previous figures stay, an error is counted).
        clock: the time source (Unix seconds), replaceable in tests.
    """

    def __init__(self, models: Sequence[str], compute: Compute, *, clock: Callable[[], float] = time.time) -> None:
        if not models:
            raise ConfigError("no model to monitor; pass --models NAME (or a repository that holds models)")
        self.models = tuple(dict.fromkeys(models))
        self._compute = compute
        self._clock = clock
        self._lock = threading.Lock()
        self._states = {model: _State() for model in self.models}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def refresh(self) -> int:
        """Compute every model's figures once; returns how many models failed (each is logged)."""
        failed = 0
        for model in self.models:
            started = time.perf_counter()
            try:
                figures = self._compute(model)
            except Exception:  # one model's bad window must not stop the others being watched
                _LOGGER.exception("monitor refresh of %s failed; its previous figures stay", model)
                with self._lock:
                    self._states[model].errors += 1
                failed += 1
                continue
            now = self._clock()
            last = figures.log.last_record_time_s if figures.log else None
            with self._lock:
                state = self._states[model]
                state.figures, state.refreshed_at_s = figures, now
                state.duration_s = time.perf_counter() - started
                state.lag_s = None if last is None else max(0.0, now - last)
        return failed

    def collect(self) -> Iterator[Metric]:
        """The metric families from the latest snapshot of every model (called by the registry on each scrape)."""
        families = _Families(METRICS)
        with self._lock:
            states = {model: _State(**vars(state)) for model, state in self._states.items()}
        for model, state in states.items():
            _add_state(families.add, model, state)
        yield from families.values()


class _Families:
    """Metric families being collected, created on their first sample (a family without samples is left out)."""

    def __init__(self, helps: Mapping[str, str]) -> None:
        self._helps = helps
        self._families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

    def add(self, name: str, labels: dict[str, str], value: float | None) -> None:
        if value is None:
            return
        if name not in self._families:
            kind = CounterMetricFamily if name in COUNTERS else GaugeMetricFamily
            self._families[name] = kind(name, self._helps[name], labels=list(labels))
        self._families[name].add_metric(list(labels.values()), float(value))

    def values(self) -> Iterable[Metric]:
        return self._families.values()


class _HasStats(Protocol):
    def stats(self) -> LoggerStats: ...


class PredictionLogCollector(Collector):
    """The prediction logger's counters as Prometheus metrics, in the process that logs (where drops happen).

        registry.register(PredictionLogCollector(logger))   # beside the service's own metrics

    Args:
        logger: a PredictionLogger (anything with `stats() -> LoggerStats`).
    """

    def __init__(self, logger: _HasStats) -> None:
        self._logger = logger

    def collect(self) -> Iterator[Metric]:
        """One family per counter, read from `logger.stats()` at scrape time."""
        stats = self._logger.stats()
        families = _Families(LOGGER_METRICS)
        families.add("tritonforge_prediction_log_logged", {}, stats.logged)
        families.add("tritonforge_prediction_log_sampled_out", {}, stats.sampled_out)
        families.add("tritonforge_prediction_log_written", {}, stats.written)
        families.add("tritonforge_prediction_log_dropped", {"reason": "queue_full"}, stats.dropped_queue_full)
        families.add("tritonforge_prediction_log_dropped", {"reason": "sink_error"}, stats.dropped_sink_error)
        families.add("tritonforge_prediction_log_labels_dropped", {}, stats.labels_dropped)
        families.add("tritonforge_prediction_log_sink_errors", {}, stats.sink_errors)
        families.add("tritonforge_prediction_log_pending_records", {}, stats.lag)
        families.add("tritonforge_prediction_log_pending_age_seconds", {}, stats.lag_s)
        yield from families.values()


def _add_state(add: Callable[[str, dict[str, str], float | None], None], model: str, state: _State) -> None:
    """Add one model's snapshot to the families being collected."""
    on = {"model": model}
    add("tritonforge_monitor_refresh_errors", on, state.errors)
    add("tritonforge_monitor_last_refresh_timestamp_seconds", on, state.refreshed_at_s)
    add("tritonforge_monitor_refresh_duration_seconds", on, state.duration_s)
    figures = state.figures
    if figures is None:
        return
    add("tritonforge_monitor_window_items", on, figures.window_items)
    for drift in figures.drift:
        group = {**on, "group": drift.group}
        add("tritonforge_drift_score", group, drift.score)
        add("tritonforge_drift_p_value", group, drift.p_value)
        add("tritonforge_drift_detected", group, float(drift.detected))
    _add_quality(add, on, figures.quality)
    add("tritonforge_estimated_accuracy", on, figures.estimated_accuracy)
    for gap in figures.fairness:
        labels = {**on, "attribute": gap.attribute, "metric": gap.metric}
        add("tritonforge_fairness_gap", labels, gap.gap)
        add("tritonforge_fairness_gap_lower", labels, gap.lower)
        add("tritonforge_fairness_gap_limit", labels, gap.limit)
    if figures.log is not None:
        add("tritonforge_prediction_log_items", on, figures.log.items)
        add("tritonforge_prediction_log_last_record_timestamp_seconds", on, figures.log.last_record_time_s)
        add("tritonforge_prediction_log_lag_seconds", on, state.lag_s)


def _add_quality(
    add: Callable[[str, dict[str, str], float | None], None], on: dict[str, str], quality: QualityFigures | None
) -> None:
    if quality is None:
        return
    add("tritonforge_quality_labelled_items", on, quality.labelled_items)
    add("tritonforge_quality_label_coverage", on, quality.label_coverage)
    add("tritonforge_quality_accuracy", on, quality.metrics.get("accuracy"))
    if quality.accuracy_interval is not None:
        add("tritonforge_quality_accuracy_lower", on, quality.accuracy_interval[0])
        add("tritonforge_quality_accuracy_upper", on, quality.accuracy_interval[1])
    add("tritonforge_reference_accuracy", on, quality.reference_accuracy)
    for metric, value in sorted(quality.metrics.items()):
        add("tritonforge_quality_metric", {**on, "metric": metric}, value)
    for metric, dropped in sorted(quality.drops.items()):
        add("tritonforge_quality_drop", {**on, "metric": metric}, float(dropped))


def check_listen(listen: str) -> str:
    """The listen address if it is IPv4; a ConfigError naming the fix otherwise."""
    try:
        ipaddress.IPv4Address(listen)
    except ValueError:
        raise ConfigError(
            f"listen address {listen!r} is not an IPv4 address; use 127.0.0.1 (this machine), 0.0.0.0 "
            "(every interface) or one interface's address"
        ) from None
    return listen


def run_exporter(
    exporter: MonitorExporter,
    *,
    listen: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    interval_s: float = 60.0,
    run_for_s: float | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Serve the exporter's metrics over HTTP and refresh them every `interval_s` until stopped.

    The server answers scrapes from the start (a long first refresh does not fail probes); it stops when `stop` is
    set or `run_for_s` has passed, and always closes its socket.

    Args:
        exporter: the collector to serve and refresh.
        listen: IPv4 address to bind (127.0.0.1 by default: this machine only).
        port: TCP port (0: a free one, passed to `on_ready`).
        interval_s: seconds between the starts of two refreshes.
        run_for_s: stop after this many seconds (None: until `stop` is set).
        stop: an event that ends the loop when set (e.g. from a signal handler).
        on_ready: called with the bound port once the server listens.

    Raises:
        ConfigError: a bad listen address, a non-positive interval, or a port that cannot be bound.
    """
    if interval_s <= 0:
        raise ConfigError(f"interval {interval_s} s must be above 0; pass e.g. --interval 60s")
    check_listen(listen)
    stop = stop or threading.Event()
    try:
        server, thread = start_http_server(port, addr=listen, registry=exporter.registry)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}:{port} ({exc.strerror}); pass another --port") from None
    deadline = None if run_for_s is None else time.monotonic() + run_for_s
    try:
        if on_ready is not None:
            on_ready(server.server_port)
        while not stop.is_set():
            started = time.monotonic()
            exporter.refresh()
            wait = max(0.0, interval_s - (time.monotonic() - started))
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            if stop.wait(wait) or (deadline is not None and time.monotonic() >= deadline):
                break
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def exposition(exporter: MonitorExporter) -> str:
    """The metrics as Prometheus's text format (what a scrape returns)."""
    from prometheus_client import generate_latest

    return generate_latest(exporter.registry).decode()


def metric_names(families: Iterable[str] = (*METRICS, *LOGGER_METRICS)) -> set[str]:
    """The names as they appear on the wire (counters with `_total`), e.g. for an allow-list of dashboard names."""
    return {f"{name}_total" if name in COUNTERS else name for name in families}
