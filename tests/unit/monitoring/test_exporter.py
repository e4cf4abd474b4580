"""The exporter publishes each model's latest figures as Prometheus metrics, over a real HTTP scrape, and stops."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tritonforge.errors import ConfigError
from tritonforge.monitoring.exporter import (
    LOGGER_METRICS,
    METRICS,
    DriftFigure,
    FairnessGap,
    LogFigures,
    ModelFigures,
    MonitorExporter,
    PredictionLogCollector,
    QualityFigures,
    exposition,
    metric_names,
    run_exporter,
)

NOW = 1_800_000_000.0


def figures(*, drifted: bool = True, groups: tuple[str, ...] = ("image", "prediction")) -> ModelFigures:
    return ModelFigures(
        window_items=500,
        drift=[DriftFigure(group=g, score=0.4 if drifted else 0.01, detected=drifted, p_value=0.001) for g in groups],
        quality=QualityFigures(
            labelled_items=400,
            label_coverage=0.8,
            metrics={"accuracy": 0.91, "f1_macro": 0.9},
            accuracy_interval=(0.88, 0.94),
            reference_accuracy=0.97,
            drops={"accuracy": True, "f1_macro": False},
        ),
        estimated_accuracy=0.93,
        fairness=[
            FairnessGap(attribute="group", metric="demographic_parity_difference", gap=0.2, lower=0.15, limit=0.1)
        ],
        log=LogFigures(items=500, last_record_time_s=NOW - 30.0),
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exporter_for(compute: Callable[[str], ModelFigures], models: tuple[str, ...] = ("digits",)) -> MonitorExporter:
    return MonitorExporter(list(models), compute, clock=lambda: NOW)


def test_exporter_publishes_every_figure_with_model_and_group_labels() -> None:
    exporter = exporter_for(lambda model: figures())
    assert exporter.refresh() == 0
    got = samples(exposition(exporter))
    m = (("model", "digits"),)
    assert got[("tritonforge_drift_detected", (("group", "image"), *m))] == 1.0
    assert got[("tritonforge_drift_score", (("group", "prediction"), *m))] == pytest.approx(0.4)
    assert got[("tritonforge_quality_accuracy", m)] == pytest.approx(0.91)
    assert got[("tritonforge_quality_accuracy_upper", m)] == pytest.approx(0.94)
    assert got[("tritonforge_reference_accuracy", m)] == pytest.approx(0.97)
    assert got[("tritonforge_quality_drop", (("metric", "accuracy"), *m))] == 1.0
    assert got[("tritonforge_quality_drop", (("metric", "f1_macro"), *m))] == 0.0
    assert got[("tritonforge_quality_metric", (("metric", "f1_macro"), *m))] == pytest.approx(0.9)
    assert got[("tritonforge_estimated_accuracy", m)] == pytest.approx(0.93)
    gap = (("attribute", "group"), ("metric", "demographic_parity_difference"), *m)
    assert got[("tritonforge_fairness_gap", gap)] == pytest.approx(0.2)
    assert got[("tritonforge_fairness_gap_limit", gap)] == pytest.approx(0.1)
    assert got[("tritonforge_fairness_gap_lower", gap)] == pytest.approx(0.15)
    assert got[("tritonforge_prediction_log_lag_seconds", m)] == pytest.approx(30.0)
    assert got[("tritonforge_monitor_last_refresh_timestamp_seconds", m)] == NOW
    assert got[("tritonforge_monitor_refresh_errors_total", m)] == 0


def test_every_documented_metric_appears_on_a_full_snapshot() -> None:
    exporter = exporter_for(lambda model: figures())
    exporter.refresh()
    names = {name for name, _ in samples(exposition(exporter))}
    assert metric_names(METRICS) <= names, metric_names(METRICS) - names
    assert all(name.startswith("tritonforge_") for name in METRICS)


def test_exporter_replaces_the_snapshot_so_a_group_that_left_the_window_leaves_the_metrics() -> None:
    windows = iter([figures(groups=("image", "prediction")), figures(drifted=False, groups=("prediction",))])
    exporter = exporter_for(lambda model: next(windows))
    exporter.refresh()
    exporter.refresh()
    got = samples(exposition(exporter))
    detected = {labels: v for (name, labels), v in got.items() if name == "tritonforge_drift_detected"}
    assert detected == {(("group", "prediction"), ("model", "digits")): 0.0}


def test_a_failing_model_keeps_its_last_figures_counts_the_error_and_the_others_refresh() -> None:
    calls = {"digits": 0}

    def compute(model: str) -> ModelFigures:
        if model == "digits":
            calls["digits"] += 1
            if calls["digits"] > 1:
                raise OSError("log unreadable")
        return figures()

    clock = iter([NOW, NOW + 60.0, NOW + 60.0])
    exporter = MonitorExporter(["digits", "credit"], compute, clock=lambda: next(clock))
    assert exporter.refresh() == 0
    assert exporter.refresh() == 1
    got = samples(exposition(exporter))
    assert got[("tritonforge_monitor_refresh_errors_total", (("model", "digits"),))] == 1
    assert got[("tritonforge_monitor_last_refresh_timestamp_seconds", (("model", "digits"),))] == NOW
    assert got[("tritonforge_monitor_last_refresh_timestamp_seconds", (("model", "credit"),))] == NOW + 60.0
    assert got[("tritonforge_drift_detected", (("group", "image"), ("model", "digits")))] == 1.0


def test_a_model_not_yet_refreshed_exports_only_its_error_counter() -> None:
    exporter = exporter_for(lambda model: figures())
    got = samples(exposition(exporter))
    assert got == {("tritonforge_monitor_refresh_errors_total", (("model", "digits"),)): 0.0}


def test_a_window_without_labels_or_log_figures_exports_no_quality_or_lag() -> None:
    exporter = exporter_for(lambda model: ModelFigures(window_items=0))
    exporter.refresh()
    names = {name for name, _ in samples(exposition(exporter))}
    assert "tritonforge_monitor_window_items" in names
    assert not {n for n in names if n.startswith(("tritonforge_quality", "tritonforge_prediction_log"))}


def test_run_exporter_serves_a_real_scrape_on_loopback_and_stops_when_asked() -> None:
    exporter = exporter_for(lambda model: figures())
    stop, ports = threading.Event(), []
    ready = threading.Event()

    def on_ready(port: int) -> None:
        ports.append(port)
        ready.set()

    thread = threading.Thread(
        target=run_exporter,
        args=(exporter,),
        kwargs={"port": 0, "interval_s": 0.05, "stop": stop, "on_ready": on_ready},
    )
    thread.start()
    try:
        assert ready.wait(10)
        url = f"http://127.0.0.1:{ports[0]}/metrics"
        for _ in range(200):  # the first refresh runs after the server is up
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            if "tritonforge_drift_detected" in text:
                break
            stop.wait(0.05)
        got = samples(text)
        assert got[("tritonforge_drift_detected", (("group", "image"), ("model", "digits")))] == 1.0
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", ports[0]), timeout=2):
        pass


def test_run_exporter_stops_by_itself_after_run_for() -> None:
    refreshes: list[str] = []

    def compute(model: str) -> ModelFigures:
        refreshes.append(model)
        return figures()

    run_exporter(exporter_for(compute), port=0, interval_s=0.02, run_for_s=0.3)
    assert len(refreshes) >= 2  # it kept refreshing until its time was up, then returned


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"listen": "localhost"}, "not an IPv4 address"), ({"interval_s": 0.0}, "must be above 0")],
)
def test_run_exporter_refuses_bad_settings_with_one_line(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_exporter(exporter_for(lambda model: figures()), port=0, run_for_s=0.0, **kwargs)  # type: ignore[arg-type]


def test_run_exporter_names_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*another --port"):
            run_exporter(exporter_for(lambda model: figures()), port=port, run_for_s=0.0)


def test_exporter_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="--models"):
        MonitorExporter([], lambda model: figures())


def test_prediction_log_collector_exports_a_real_loggers_drops_when_its_sink_fails(tmp_path: Path) -> None:
    """A sink that cannot write: inference-side log() calls still return, and the drops show as counters."""
    from tritonforge.monitoring.logger import PredictionLogger
    from tritonforge.monitoring.parquet_sink import ParquetSink
    from tritonforge.monitoring.records import PredictionRecord

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    logger = PredictionLogger(ParquetSink(blocker / "log"), flush_records=1, flush_interval_s=0.01)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PredictionLogCollector(logger))
    try:
        for _ in range(5):
            assert logger.log(PredictionRecord.create(model="digits")) is True
        logger.flush(timeout_s=10)
    finally:
        logger.close()
    got = samples(generate_latest(registry).decode())
    assert got[("tritonforge_prediction_log_logged_total", ())] == 5
    assert got[("tritonforge_prediction_log_written_total", ())] == 0
    assert got[("tritonforge_prediction_log_dropped_total", (("reason", "sink_error"),))] == 5
    assert got[("tritonforge_prediction_log_dropped_total", (("reason", "queue_full"),))] == 0
    assert {name for name, _ in got} == metric_names(LOGGER_METRICS)
