"""Where the time goes on the server: Triton's statistics (and Prometheus metrics) before and after a load test.

    before = take_snapshot("127.0.0.1:8001", metrics_url="http://127.0.0.1:8002/metrics")
    ...                                                   # the load test
    after = take_snapshot("127.0.0.1:8001", metrics_url="http://127.0.0.1:8002/metrics")
    breakdown = server_breakdown(before, after, model="digits", client=measurement, in_flight=8)
    print(format_breakdown(breakdown))    # queue / compute per request, average batch, client-minus-server, counts

Why: a client-side p99 alone cannot say whether time goes to the server's queue, the model, or the network and
client; Triton's cumulative counters, read on each side of the run, can. The client's request count is checked
against the server's so that a load test which never reached the model (or reached another) cannot pass unseen.
Counters are summed over the model's versions. For an ensemble the statistics API reports each composing model
apart; every other model whose counters moved during the run is listed beside the target (`others`).
The Prometheus endpoint (when given) is read as an independent cross-check of the statistics API.
"""

from __future__ import annotations

import logging
import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tritonforge.errors import ServerError
from tritonforge.loadtests.slo import Measurement

__all__ = [
    "CountCheck",
    "MetricsCheck",
    "ModelCounters",
    "ModelTimes",
    "ServerBreakdown",
    "ServerSnapshot",
    "count_check",
    "format_breakdown",
    "parse_metrics",
    "parse_statistics",
    "server_breakdown",
    "take_snapshot",
]

_LOGGER = logging.getLogger(__name__)

# Prometheus metric -> ModelCounters field it mirrors (durations in µs there, ns in the statistics API).
_METRICS = {
    "nv_inference_request_success": "success",
    "nv_inference_request_failure": "fail",
    "nv_inference_count": "inferences",
    "nv_inference_exec_count": "executions",
    "nv_inference_request_duration_us": "success_ns",
    "nv_inference_queue_duration_us": "queue_ns",
    "nv_inference_compute_input_duration_us": "compute_input_ns",
    "nv_inference_compute_infer_duration_us": "compute_infer_ns",
    "nv_inference_compute_output_duration_us": "compute_output_ns",
}
_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True, kw_only=True)
class ModelCounters:
    """Triton's cumulative counters for one model (summed over its versions).

    Attributes:
        success / fail: requests that succeeded / failed.
        inferences: inference count (items: a request of batch 8 counts 8).
        executions: model executions (one per batch the scheduler formed).
        success_ns: total request time of the successful requests (Triton's end-to-end, in the server).
        queue_ns / compute_input_ns / compute_infer_ns / compute_output_ns: time per phase, summed over requests.
        queue_count / compute_input_count / compute_infer_count / compute_output_count: requests each phase counted.
    """

    success: int = 0
    fail: int = 0
    inferences: int = 0
    executions: int = 0
    success_ns: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    queue_count: int = 0
    compute_input_count: int = 0
    compute_infer_count: int = 0
    compute_output_count: int = 0

    def __add__(self, other: ModelCounters) -> ModelCounters:
        return ModelCounters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __sub__(self, other: ModelCounters) -> ModelCounters:
        return ModelCounters(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    @property
    def requests(self) -> int:
        """Requests the server finished, successful or not."""
        return self.success + self.fail


@dataclass(frozen=True, kw_only=True)
class ServerSnapshot:
    """The server's counters at one instant.

    Attributes:
        models: statistics-API counters by model name.
        metrics: counters from the Prometheus endpoint by model name (durations converted to ns), or None when
            no metrics URL was given or it could not be read.
        server_version: Triton's version from its server metadata ("" if unknown).
    """

    models: dict[str, ModelCounters]
    metrics: dict[str, ModelCounters] | None = None
    server_version: str = ""


@dataclass(frozen=True, kw_only=True)
class ModelTimes:
    """One model's share of a run, per request.

    Attributes:
        model: the model's name.
        success / fail: requests the server finished during the run.
        inferences / executions: items inferred / model executions during the run.
        avg_batch: average executed batch, inferences over executions (None without executions).
        request_us: mean server-side time of a successful request (queue + compute + the server's own overhead).
        queue_us / compute_input_us / compute_infer_us / compute_output_us: mean time per request in each phase.
    """

    model: str
    success: int
    fail: int
    inferences: int
    executions: int
    avg_batch: float | None
    request_us: float | None
    queue_us: float | None
    compute_input_us: float | None
    compute_infer_us: float | None
    compute_output_us: float | None

    @classmethod
    def from_delta(cls, model: str, delta: ModelCounters) -> ModelTimes:
        """Per-request figures from the counters' change over the run."""
        phases = {f"{p}_us": _per_request_us(getattr(delta, f"{p}_ns"), getattr(delta, f"{p}_count")) for p in _PHASES}
        return cls(
            model=model,
            success=delta.success,
            fail=delta.fail,
            inferences=delta.inferences,
            executions=delta.executions,
            avg_batch=round(delta.inferences / delta.executions, 3) if delta.executions > 0 else None,
            request_us=_per_request_us(delta.success_ns, delta.success),
            **phases,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (summary.json `server.model` / `server.others[]`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class CountCheck:
    """Do the client and the server agree on how many requests the run made?

    Attributes:
        client_requests: requests the load generator recorded (failures included).
        server_requests: requests the server finished for the model (success + fail).
        tolerance: the largest difference still taken as agreement (requests in flight at the run's edges).
        agree: |client - server| <= tolerance.
    """

    client_requests: int
    server_requests: int
    tolerance: int
    agree: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (summary.json `server.count_check`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class MetricsCheck:
    """The Prometheus endpoint's view of the same run, as a cross-check of the statistics API.

    Attributes:
        success / inferences / executions: the counters' change on the metrics endpoint.
        queue_us / compute_infer_us: mean per-request time from the metrics' duration counters.
        agree: the success and execution counts match the statistics API's within the count tolerance.
    """

    success: int
    inferences: int
    executions: int
    queue_us: float | None
    compute_infer_us: float | None
    agree: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (summary.json `server.metrics`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class ServerBreakdown:
    """Where a run's time went on the server, beside the client's view of it.

    Attributes:
        model: the target model's figures.
        others: other models whose counters moved during the run (an ensemble's composing models), by name.
        count_check: the client's request count against the server's.
        overhead_p50_ms: client p50 minus the server's mean request time (network, gRPC, client, generator).
        overhead_mean_ms: client mean minus the server's mean request time.
        metrics: the Prometheus cross-check, or None without a metrics URL.
        server_version: Triton's version.
    """

    model: ModelTimes
    others: tuple[ModelTimes, ...]
    count_check: CountCheck
    overhead_p50_ms: float | None
    overhead_mean_ms: float | None
    metrics: MetricsCheck | None
    server_version: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (summary.json `server`)."""
        return {
            "model": self.model.to_dict(),
            "others": [other.to_dict() for other in self.others],
            "count_check": self.count_check.to_dict(),
            "overhead_p50_ms": self.overhead_p50_ms,
            "overhead_mean_ms": self.overhead_mean_ms,
            "metrics": self.metrics.to_dict() if self.metrics is not None else None,
            "server_version": self.server_version,
        }


def take_snapshot(host: str, *, metrics_url: str | None = None, timeout_s: float = 10.0) -> ServerSnapshot:
    """Read every model's statistics (and, when given, the metrics endpoint) from a running server.

    Args:
        host: the server's gRPC address, host:port.
        metrics_url: the Prometheus endpoint, e.g. http://127.0.0.1:8002/metrics; None skips it.
        timeout_s: deadline of each call.

    Returns:
        The snapshot. An unreadable metrics endpoint gives `metrics=None` and a warning, not an error.

    Raises:
        ServerError: the statistics API could not be read.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(host)
    try:
        statistics = client.get_inference_statistics("", as_json=True, client_timeout=timeout_s)
        metadata = client.get_server_metadata(as_json=True, client_timeout=timeout_s)
    except InferenceServerException as exc:
        raise ServerError(
            f"could not read Triton's statistics at {host}: {exc}; check that the server is up and allows the "
            "statistics extension"
        ) from exc
    finally:
        client.close()
    metrics = None
    if metrics_url:
        try:
            with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:  # noqa: S310 (an http URL)
                metrics = parse_metrics(response.read().decode("utf-8"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            _LOGGER.warning("could not read Triton metrics at %s (%s); skipping the cross-check", metrics_url, exc)
    return ServerSnapshot(
        models=parse_statistics(statistics), metrics=metrics, server_version=str(metadata.get("version", ""))
    )


def parse_statistics(document: Mapping[str, Any]) -> dict[str, ModelCounters]:
    """Turn `get_inference_statistics(as_json=True)` into counters by model name, summed over versions.

    Args:
        document: the statistics API's JSON answer (`{"model_stats": [...]}`; numbers may be strings).

    Returns:
        Counters by model name.
    """
    models: dict[str, ModelCounters] = {}
    for entry in document.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        values = {
            "success": _int(stats.get("success", {}).get("count")),
            "fail": _int(stats.get("fail", {}).get("count")),
            "inferences": _int(entry.get("inference_count")),
            "executions": _int(entry.get("execution_count")),
            "success_ns": _int(stats.get("success", {}).get("ns")),
        }
        for phase in _PHASES:
            values[f"{phase}_ns"] = _int(stats.get(phase, {}).get("ns"))
            values[f"{phase}_count"] = _int(stats.get(phase, {}).get("count"))
        name = str(entry.get("name", ""))
        models[name] = models.get(name, ModelCounters()) + ModelCounters(**values)
    return models


def parse_metrics(text: str) -> dict[str, ModelCounters]:
    """Read Triton's per-model counters from its Prometheus text, summed over versions and failure reasons.

    Args:
        text: the body of the metrics endpoint.

    Returns:
        Counters by model name (durations in ns; the phase counts are the success count, as Triton keeps no
        per-phase count there).
    """
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            field_name = _METRICS.get(sample.name) or _METRICS.get(family.name)
            model = sample.labels.get("model")
            if field_name is None or model is None or sample.name.endswith("_created"):
                continue
            scale = 1000.0 if field_name.endswith("_ns") else 1.0
            per_model = sums.setdefault(model, {})
            per_model[field_name] = per_model.get(field_name, 0.0) + sample.value * scale
    models = {}
    for model, values in sums.items():
        counts = {f"{phase}_count": int(values.get("success", 0)) for phase in _PHASES}
        models[model] = ModelCounters(**{k: int(round(v)) for k, v in values.items()}, **counts)
    return models


def count_check(client_requests: int, server_requests: int, *, in_flight: int) -> CountCheck:
    """Compare the client's and the server's request counts.

    The tolerance is the most requests that can be in flight at either edge of the run (`in_flight`, i.e. the
    users), or 1 % of the client's count when that is larger.

    Args:
        client_requests: requests the generator recorded.
        server_requests: requests the server finished for the model during the run.
        in_flight: the most requests outstanding at once.

    Returns:
        The verdict.
    """
    tolerance = max(in_flight, math.ceil(0.01 * client_requests))
    agree = abs(client_requests - server_requests) <= tolerance
    return CountCheck(
        client_requests=client_requests, server_requests=server_requests, tolerance=tolerance, agree=agree
    )


def server_breakdown(
    before: ServerSnapshot, after: ServerSnapshot, *, model: str, client: Measurement, in_flight: int
) -> ServerBreakdown:
    """The server's side of a run: the counters' change between two snapshots, beside the client's figures.

    Args:
        before: the snapshot taken before the load started.
        after: the snapshot taken after it ended.
        model: the model that was loaded.
        client: the generator's measurement.
        in_flight: the most requests outstanding at once (sets the count tolerance).

    Returns:
        The breakdown.
    """
    delta = after.models.get(model, ModelCounters()) - before.models.get(model, ModelCounters())
    times = ModelTimes.from_delta(model, delta)
    others = tuple(
        ModelTimes.from_delta(name, change)
        for name in sorted(after.models)
        if name != model and (change := after.models[name] - before.models.get(name, ModelCounters())).requests > 0
    )
    check = count_check(client.requests, delta.requests, in_flight=in_flight)
    server_ms = times.request_us / 1000.0 if times.request_us is not None else None
    metrics = None
    if before.metrics is not None and after.metrics is not None:
        moved = after.metrics.get(model, ModelCounters()) - before.metrics.get(model, ModelCounters())
        metrics = MetricsCheck(
            success=moved.success,
            inferences=moved.inferences,
            executions=moved.executions,
            queue_us=_per_request_us(moved.queue_ns, moved.success),
            compute_infer_us=_per_request_us(moved.compute_infer_ns, moved.success),
            agree=abs(moved.success - delta.success) <= check.tolerance
            and abs(moved.executions - delta.executions) <= check.tolerance,
        )
    return ServerBreakdown(
        model=times,
        others=others,
        count_check=check,
        overhead_p50_ms=_minus(client.p50_ms, server_ms),
        overhead_mean_ms=_minus(client.mean_ms, server_ms),
        metrics=metrics,
        server_version=after.server_version,
    )


def format_breakdown(breakdown: ServerBreakdown) -> str:
    """Render the server breakdown as aligned text: one row per model, then the overhead and the count verdict.

    Args:
        breakdown: the breakdown.

    Returns:
        The table and its verdict lines.
    """
    header = ("server", "requests", "fail", "avg batch", "queue us", "input us", "infer us", "output us", "total us")
    rows = [
        (
            t.model,
            str(t.success),
            str(t.fail),
            _fmt(t.avg_batch),
            *(_fmt(getattr(t, f"{phase}_us")) for phase in _PHASES),
            _fmt(t.request_us),
        )
        for t in (breakdown.model, *breakdown.others)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in [header, *rows]
    ]
    lines.append(
        f"client minus server: p50 {_fmt(breakdown.overhead_p50_ms)} ms, mean {_fmt(breakdown.overhead_mean_ms)} ms"
        " (network, gRPC, client and generator time)"
    )
    c = breakdown.count_check
    verdict = "agree" if c.agree else "DISAGREE"
    lines.append(
        f"request counts {verdict}: client {c.client_requests}, server {c.server_requests} (tolerance {c.tolerance})"
    )
    if breakdown.metrics is not None:
        m = breakdown.metrics
        lines.append(
            f"metrics endpoint {'agrees' if m.agree else 'DISAGREES'}: {m.success} requests, {m.executions} executions"
        )
    return "\n".join(lines)


def _per_request_us(total_ns: int, count: int) -> float | None:
    return round(total_ns / count / 1000.0, 1) if count > 0 else None


def _minus(client_ms: float | None, server_ms: float | None) -> float | None:
    return round(client_ms - server_ms, 3) if client_ms is not None and server_ms is not None else None


def _int(value: object) -> int:
    return int(value) if value not in (None, "") else 0  # type: ignore[call-overload]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"
