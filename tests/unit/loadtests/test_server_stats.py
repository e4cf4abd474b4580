"""The server breakdown from two snapshots of Triton's statistics (and metrics), without a server."""

from __future__ import annotations

from typing import Any

import pytest

from tritonforge.loadtests.server_stats import (
    ModelCounters,
    ServerSnapshot,
    count_check,
    format_breakdown,
    parse_metrics,
    parse_statistics,
    server_breakdown,
)
from tritonforge.loadtests.slo import Measurement


def _entry(
    name: str, version: str, *, success: int, inferences: int, executions: int, scale: int = 1
) -> dict[str, Any]:
    """One model_stats entry as get_inference_statistics(as_json=True) returns it (numbers as strings)."""

    def phase(us_per_request: int) -> dict[str, str]:
        return {"count": str(success), "ns": str(success * us_per_request * 1000 * scale)}

    return {
        "name": name,
        "version": version,
        "inference_count": str(inferences),
        "execution_count": str(executions),
        "inference_stats": {
            "success": phase(1000),
            "fail": {"count": "1"} if success else {},
            "queue": phase(300),
            "compute_input": phase(20),
            "compute_infer": phase(500),
            "compute_output": phase(80),
        },
    }


def _statistics(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"model_stats": list(entries)}


CLIENT = Measurement(requests=1000, failures=0, rps=200.0, p50_ms=1.5, p95_ms=3.0, p99_ms=5.0, mean_ms=1.8)


def test_parse_statistics_sums_a_models_versions() -> None:
    models = parse_statistics(
        _statistics(
            _entry("digits", "1", success=10, inferences=40, executions=5),
            _entry("digits", "2", success=5, inferences=5, executions=5),
        )
    )

    assert models["digits"].success == 15
    assert models["digits"].fail == 2
    assert models["digits"].inferences == 45
    assert models["digits"].queue_ns == 15 * 300_000


def test_breakdown_reports_per_request_times_and_average_batch_from_the_delta() -> None:
    before = ServerSnapshot(
        models=parse_statistics(_statistics(_entry("digits", "1", success=0, inferences=0, executions=0)))
    )
    after = ServerSnapshot(
        models=parse_statistics(_statistics(_entry("digits", "1", success=1000, inferences=1000, executions=250))),
        server_version="2.51.0",
    )

    b = server_breakdown(before, after, model="digits", client=CLIENT, in_flight=8)

    assert (b.model.success, b.model.fail, b.model.executions) == (1000, 1, 250)
    assert b.model.avg_batch == 4.0
    assert (b.model.queue_us, b.model.compute_input_us, b.model.compute_infer_us, b.model.compute_output_us) == (
        300.0,
        20.0,
        500.0,
        80.0,
    )
    assert b.model.request_us == 1000.0
    assert b.overhead_p50_ms == pytest.approx(0.5)  # client p50 1.5 ms - server 1.0 ms
    assert b.overhead_mean_ms == pytest.approx(0.8)
    assert b.count_check.server_requests == 1001 and b.count_check.agree
    assert b.server_version == "2.51.0"
    assert b.metrics is None


def test_breakdown_uses_only_what_happened_between_the_snapshots() -> None:
    before = ServerSnapshot(
        models=parse_statistics(_statistics(_entry("digits", "1", success=500, inferences=500, executions=500)))
    )
    after = ServerSnapshot(
        models=parse_statistics(
            _statistics(_entry("digits", "1", success=1500, inferences=2500, executions=1000, scale=1))
        )
    )

    b = server_breakdown(before, after, model="digits", client=CLIENT, in_flight=4)

    assert b.model.success == 1000
    assert b.model.avg_batch == 4.0  # (2500 - 500) / (1000 - 500)
    assert b.model.queue_us == 300.0


def test_breakdown_lists_the_other_models_that_moved_when_the_target_is_an_ensemble() -> None:
    idle = _entry("unused", "1", success=3, inferences=3, executions=3)
    before = ServerSnapshot(models=parse_statistics(_statistics(idle)))
    after = ServerSnapshot(
        models=parse_statistics(
            _statistics(
                _entry("minilm", "1", success=100, inferences=100, executions=100),
                _entry("minilm_tokenizer", "1", success=100, inferences=100, executions=20),
                idle,
            )
        )
    )
    client = Measurement(requests=101, failures=0, rps=10.0, p50_ms=30.0, p95_ms=40.0, p99_ms=50.0)

    b = server_breakdown(before, after, model="minilm", client=client, in_flight=4)

    assert [o.model for o in b.others] == ["minilm_tokenizer"]
    assert b.others[0].avg_batch == 5.0
    assert "minilm_tokenizer" in format_breakdown(b)


def test_breakdown_has_no_per_request_figures_when_the_model_got_no_request() -> None:
    snapshot = ServerSnapshot(models={})

    b = server_breakdown(snapshot, snapshot, model="digits", client=CLIENT, in_flight=4)

    assert (b.model.success, b.model.avg_batch, b.model.queue_us, b.overhead_p50_ms) == (0, None, None, None)
    assert b.count_check.agree is False
    assert "request counts DISAGREE: client 1000, server 0" in format_breakdown(b)


@pytest.mark.parametrize(
    ("client", "server", "in_flight", "tolerance", "agree"),
    [
        (1000, 1000, 8, 10, True),
        (1000, 992, 8, 10, True),  # requests in flight at the edges
        (1000, 989, 8, 10, False),
        (100_000, 99_200, 8, 1000, True),  # 1 % of a long run
        (10, 40, 16, 16, False),  # someone else loaded the model
    ],
)
def test_count_check_allows_the_requests_in_flight_at_the_edges(
    client: int, server: int, in_flight: int, tolerance: int, agree: bool
) -> None:
    check = count_check(client, server, in_flight=in_flight)

    assert (check.tolerance, check.agree) == (tolerance, agree)


METRICS_TEXT = """\
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="digits",version="1"} 700
nv_inference_request_success{model="digits",version="2"} 300
nv_inference_request_success{model="other",version="1"} 5
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="digits",reason="OTHER",version="1"} 1
nv_inference_request_failure{model="digits",reason="BACKEND",version="1"} 2
# TYPE nv_inference_count counter
nv_inference_count{model="digits",version="1"} 1000
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="digits",version="1"} 250
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="digits",version="1"} 300000
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="digits",version="1"} 500000
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="x"} 0.5
"""


def test_parse_metrics_sums_versions_and_failure_reasons() -> None:
    models = parse_metrics(METRICS_TEXT)

    assert set(models) == {"digits", "other"}
    digits = models["digits"]
    assert (digits.success, digits.fail, digits.inferences, digits.executions) == (1000, 3, 1000, 250)
    assert digits.queue_ns == 300_000_000  # µs on the wire, ns here like the statistics API


def test_breakdown_cross_checks_the_metrics_endpoint_when_it_was_read() -> None:
    stats_before = parse_statistics(_statistics(_entry("digits", "1", success=0, inferences=0, executions=0)))
    stats_after = parse_statistics(_statistics(_entry("digits", "1", success=1000, inferences=1000, executions=250)))
    before = ServerSnapshot(models=stats_before, metrics={"digits": ModelCounters()})
    after = ServerSnapshot(models=stats_after, metrics=parse_metrics(METRICS_TEXT))

    b = server_breakdown(before, after, model="digits", client=CLIENT, in_flight=8)

    assert b.metrics is not None
    assert (b.metrics.success, b.metrics.executions, b.metrics.agree) == (1000, 250, True)
    assert b.metrics.queue_us == 300.0
    assert b.metrics.compute_infer_us == 500.0
    lopsided = ServerSnapshot(models=stats_after, metrics={"digits": ModelCounters(success=10, executions=10)})
    assert server_breakdown(before, lopsided, model="digits", client=CLIENT, in_flight=8).metrics.agree is False  # type: ignore[union-attr]


def test_format_breakdown_shows_each_phase_the_overhead_and_the_verdict() -> None:
    before = ServerSnapshot(models={})
    after = ServerSnapshot(
        models=parse_statistics(_statistics(_entry("digits", "1", success=1000, inferences=1000, executions=500)))
    )

    text = format_breakdown(server_breakdown(before, after, model="digits", client=CLIENT, in_flight=8))

    lines = text.splitlines()
    assert lines[0].split() == [
        "server",
        "requests",
        "fail",
        "avg",
        "batch",
        "queue",
        "us",
        "input",
        "us",
        "infer",
        "us",
        "output",
        "us",
        "total",
        "us",
    ]
    assert lines[1].split() == ["digits", "1000", "1", "2", "300", "20", "500", "80", "1000"]
    assert "client minus server: p50 0.5 ms, mean 0.8 ms" in text
    assert "request counts agree: client 1000, server 1001 (tolerance 10)" in text
