"""Turn Locust's statistics into a load-test result: summary.json and the tables the CLI prints.

    measurement = read_locust_stats(Path("out/locust_stats.csv"), name="digits")
    result = LoadTestResult(model="digits", ..., measurement=measurement, checks=evaluate(spec, measurement))
    write_summary(result, Path("out/summary.json"))
    print(format_table(result))

summary.json is the record other tools (`tritonforge report`, the capacity search) read, so its shape is stable:
a change that removes or renames a key raises `schema_version`; new keys may be added. Its JSON Schema is
`summary.schema.json` beside this module. Schema version 2, top-level keys:
    schema_version (2), model, host, users, spawn_rate, run_time_s (the measured part: after an open loop's
        warm-up, when the run had one, requests, rates and percentiles exclude the warm-up), warmup_s (the untimed
        warm-up before it, 0 for none), batch_size,
    mode ("closed": fixed users, each sending back to back; "open": requests start on an arrival schedule),
    arrival ("constant" | "poisson" | null), rate_rps (target arrivals/s, null in closed mode),
    requests, failures, error_ratio (null without requests), rps (achieved), mean_ms, p50_ms, p95_ms, p99_ms
        (null without requests; in open mode latencies run from each request's *scheduled* start),
    late: null in closed mode, else {threshold_ms, sent, late, unsent, woke_late, p50_ms, p99_ms, max_ms}
        (requests sent more than threshold_ms after their scheduled time, how late they were, scheduled requests
        never sent, and late ones whose user was idle, i.e. the generator itself woke late; over the whole run,
        warm-up included),
    server: null when not measured, else {model: {model, success, fail, inferences, executions, avg_batch,
        request_us, queue_us, compute_input_us, compute_infer_us, compute_output_us}, others: [same, ...],
        count_check: {client_requests, server_requests, tolerance, agree} (after a warm-up client_requests is
        every request sent, late.sent, as the server's counters cover the warm-up too), overhead_p50_ms,
        overhead_mean_ms,
        metrics: null | {success, inferences, executions, queue_us, compute_infer_us, agree}, server_version},
    generator: {cpu_percent, threshold_percent, saturated, processes: [{role, pid, cpu_percent}]},
    slo: [{name, objective, comparison ("<=" or ">="), unit, measured, passed}, ...],
    passed (every SLO met and at least one request made),
    machine: {platform, machine, python, cpus}, versions: {tritonforge, locust, tritonclient, triton_server},
    locust_version, locust_exit_code, locust_killed (the runner had to kill Locust after its deadline),
    generator_cpu_percent (Locust's average CPU use over the run, all processes, 100 = one core; null if unknown),
    started_at, ended_at (ISO 8601, UTC), wall_s, files {role: path} (stats_csv, history_csv, html, log, inputs,
        late, plot when made).
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import logging
import math
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tritonforge._atomic import atomic_write_text
from tritonforge.errors import TritonForgeError
from tritonforge.loadtests.server_stats import ServerBreakdown, format_breakdown
from tritonforge.loadtests.slo import Measurement, SLOCheck

__all__ = [
    "SATURATION_PERCENT",
    "SCHEMA_PATH",
    "SCHEMA_VERSION",
    "GeneratorLoad",
    "LateRequests",
    "LateTally",
    "LoadTestResult",
    "ProcessLoad",
    "format_table",
    "generator_load",
    "machine_info",
    "read_late_requests",
    "read_locust_stats",
    "tool_versions",
    "write_summary",
]

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: The JSON Schema of summary.json.
SCHEMA_PATH = Path(__file__).with_name("summary.schema.json")
#: A Locust process using this share of one core or more is taken as saturated (gevent runs on one core).
SATURATION_PERCENT = 85.0


class LateTally:
    """Counts requests that started late against their schedule, in a histogram that merges across processes.

    Each Locust process keeps one; workers send theirs to the master with their statistics, the master merges
    them and writes the total. Lateness is kept at Locust's own resolution (0.1 ms under 10 ms, 1 ms under
    100 ms, 10 ms under 1 s, 100 ms above), so the percentiles are as exact as Locust's latency percentiles.
    """

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_ms = threshold_ms
        self.sent = 0
        self.unsent = 0
        self.woke_late = 0
        self._late: dict[float, int] = {}

    def record(self, lateness_ms: float, *, was_idle: bool = False) -> bool:
        """Record one request sent `lateness_ms` after its scheduled time; True when that counts as late.

        `was_idle` says its user was waiting for the scheduled time (not busy with an earlier request): a late
        start then means the generator process itself woke late (its CPU is starved or its event loop overloaded).
        """
        self.sent += 1
        if lateness_ms <= self.threshold_ms:
            return False
        if was_idle:
            self.woke_late += 1
        bucket = _bucket(lateness_ms)
        self._late[bucket] = self._late.get(bucket, 0) + 1
        return True

    def record_unsent(self, count: int) -> None:
        """Record scheduled requests that were never sent (the run ended while the sender was behind)."""
        self.unsent += count

    @property
    def late(self) -> int:
        """Requests sent later than the threshold."""
        return sum(self._late.values())

    def to_message(self) -> dict[str, Any]:
        """A JSON-ready copy, for a worker's report to the master or the file the master writes."""
        return {
            "threshold_ms": self.threshold_ms,
            "sent": self.sent,
            "unsent": self.unsent,
            "woke_late": self.woke_late,
            "late": [[bucket, count] for bucket, count in sorted(self._late.items())],
        }

    def merge(self, message: Mapping[str, Any]) -> None:
        """Add another tally's `to_message()` to this one."""
        self.sent += int(message.get("sent", 0))
        self.unsent += int(message.get("unsent", 0))
        self.woke_late += int(message.get("woke_late", 0))
        for bucket, count in message.get("late", []):
            self._late[float(bucket)] = self._late.get(float(bucket), 0) + int(count)

    def reset(self) -> None:
        """Forget everything counted (after a worker has sent it to the master)."""
        self.sent = self.unsent = self.woke_late = 0
        self._late = {}

    def summary(self) -> LateRequests:
        """The totals and percentiles of lateness."""
        return LateRequests(
            threshold_ms=self.threshold_ms,
            sent=self.sent,
            late=self.late,
            unsent=self.unsent,
            woke_late=self.woke_late,
            p50_ms=_histogram_percentile(self._late, 0.50),
            p99_ms=_histogram_percentile(self._late, 0.99),
            max_ms=max(self._late) if self._late else None,
        )


@dataclass(frozen=True, kw_only=True)
class LateRequests:
    """Requests of an open-loop run that did not start on time.

    Attributes:
        threshold_ms: how far behind its schedule a request may start and still count as on time.
        sent: requests sent.
        late: requests sent more than threshold_ms after their scheduled time (their latency, measured from
            the schedule, includes the wait).
        unsent: requests whose scheduled time passed before the run ended but that were never sent.
        woke_late: late requests whose user was idle, waiting for the time: the generator process woke late
            (CPU-starved, or too many users for one process); the others were late because every user was busy.
        p50_ms / p99_ms / max_ms: how late the late requests were (None when none was late).
    """

    threshold_ms: float
    sent: int
    late: int
    unsent: int
    woke_late: int = 0
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (summary.json `late`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class ProcessLoad:
    """One load-generator process's CPU use during the run.

    Attributes:
        role: "locust" (a single process), "master" or "worker-N".
        pid: its process id.
        cpu_percent: its mean CPU use while the load ran, 100 = one core.
    """

    role: str
    pid: int
    cpu_percent: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"role": self.role, "pid": self.pid, "cpu_percent": self.cpu_percent}


@dataclass(frozen=True, kw_only=True)
class GeneratorLoad:
    """Whether the load generator itself limited the run.

    Attributes:
        cpu_percent: all Locust processes together, 100 = one core (None if unknown).
        processes: each process's share.
        threshold_percent: the share of one core from which a process counts as saturated.
        saturated: some process reached the threshold: the figures are bounded by the generator, not the server.
    """

    cpu_percent: float | None
    processes: tuple[ProcessLoad, ...]
    threshold_percent: float
    saturated: bool

    @property
    def advice(self) -> str:
        """One line for the operator: the verdict and, when saturated, what to do about it."""
        busiest = max(self.processes, key=lambda p: p.cpu_percent, default=None)
        if busiest is None:
            return "generator: CPU use unknown"
        if not self.saturated:
            return f"generator: OK (busiest process {busiest.role} at {busiest.cpu_percent:.0f}% of one core)"
        return (
            f"generator SATURATED: {busiest.role} used {busiest.cpu_percent:.0f}% of one core, so these results are "
            f"bounded by the load generator, not the server; rerun with --processes N (N = {len(self.processes) + 1} "
            "or more) or add workers (--master-host on other machines)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (summary.json `generator`)."""
        return {
            "cpu_percent": self.cpu_percent,
            "threshold_percent": self.threshold_percent,
            "saturated": self.saturated,
            "processes": [p.to_dict() for p in self.processes],
        }


def generator_load(
    processes: Iterable[ProcessLoad], *, total_percent: float | None, threshold_percent: float = SATURATION_PERCENT
) -> GeneratorLoad:
    """Judge whether the generator saturated: any one process at or above `threshold_percent` of a core.

    Locust runs each process's users on one core (gevent), so one process near 100% cannot send faster,
    whatever the server could take.

    Args:
        processes: each Locust process's mean CPU use during the load.
        total_percent: all processes together.
        threshold_percent: the saturation threshold, in % of one core.

    Returns:
        The verdict.
    """
    loads = tuple(processes)
    saturated = any(p.cpu_percent >= threshold_percent for p in loads)
    return GeneratorLoad(
        cpu_percent=total_percent, processes=loads, threshold_percent=threshold_percent, saturated=saturated
    )


_AGGREGATED = "Aggregated"
_NOT_AVAILABLE = "N/A"


def machine_info() -> dict[str, Any]:
    """Where the load generator runs: platform, machine, Python and CPU count (summary.json `machine`)."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def tool_versions() -> dict[str, str]:
    """The installed tritonforge, Locust and tritonclient; triton_server is "unknown" until a server says."""
    versions = {}
    for package in ("tritonforge", "locust", "tritonclient"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return {**versions, "triton_server": "unknown"}


@dataclass(frozen=True, kw_only=True)
class LoadTestResult:
    """Everything one load test measured and decided.

    Attributes:
        model: the model under test.
        host: the gRPC address that was loaded.
        users: concurrent Locust users.
        spawn_rate: users started per second.
        run_time_s: the requested duration of the measured part of the run.
        warmup_s: the untimed warm-up before it (0: none); the measurement excludes it.
        batch_size: items per request (1 when a sample file was sent as it is).
        measurement: Locust's numbers for the model (open loop: latency from each request's scheduled start).
        checks: one entry per SLO objective (empty when no SLO was given).
        locust_version: the Locust that generated the load.
        locust_exit_code: Locust's exit status (negative: killed by that signal).
        locust_killed: True when Locust did not exit by itself and the runner killed it.
        generator_cpu_percent: Locust's average CPU use during the run (100 = one core busy), or None.
        started_at: ISO 8601 UTC time the run started.
        ended_at: ISO 8601 UTC time the run ended.
        wall_s: seconds from starting Locust to its exit.
        files: the files the run left, by role (stats_csv, history_csv, html, log, inputs, late, plot).
        arrival: the arrival schedule of an open-loop run ("constant" or "poisson"); None for a closed loop.
        rate_rps: the target arrival rate of an open-loop run.
        late: the requests of an open-loop run that started late or never (None for a closed loop).
        server: the server-side breakdown (None when it was not read).
        generator: the load generator's CPU use and saturation verdict (None if unknown).
        machine: where the generator ran (platform, machine, python, cpus).
        versions: tritonforge, locust, tritonclient and the Triton server's versions.
    """

    model: str
    host: str
    users: int
    spawn_rate: float
    run_time_s: int
    batch_size: int
    measurement: Measurement
    warmup_s: int = 0
    checks: tuple[SLOCheck, ...] = ()
    locust_version: str = ""
    locust_exit_code: int | None = None
    locust_killed: bool = False
    generator_cpu_percent: float | None = None
    started_at: str = ""
    ended_at: str = ""
    wall_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)
    arrival: str | None = None
    rate_rps: float | None = None
    late: LateRequests | None = None
    server: ServerBreakdown | None = None
    generator: GeneratorLoad | None = None
    machine: dict[str, Any] = field(default_factory=machine_info)
    versions: dict[str, str] = field(default_factory=tool_versions)

    @property
    def mode(self) -> str:
        """Either "open" (arrival-rate schedule) or "closed" (fixed users sending back to back)."""
        return "open" if self.arrival is not None else "closed"

    @property
    def passed(self) -> bool:
        """Every objective met, and the run made at least one request (a silent run proves nothing)."""
        return self.measurement.requests > 0 and all(check.passed for check in self.checks)

    @property
    def missed(self) -> list[SLOCheck]:
        """The objectives that were not met."""
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        """The summary.json document (see the module docstring for its schema)."""
        m = self.measurement
        return {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "host": self.host,
            "users": self.users,
            "spawn_rate": self.spawn_rate,
            "run_time_s": self.run_time_s,
            "warmup_s": self.warmup_s,
            "batch_size": self.batch_size,
            "mode": self.mode,
            "arrival": self.arrival,
            "rate_rps": self.rate_rps,
            "requests": m.requests,
            "failures": m.failures,
            "error_ratio": m.error_ratio,
            "rps": m.rps,
            "mean_ms": m.mean_ms,
            "p50_ms": m.p50_ms,
            "p95_ms": m.p95_ms,
            "p99_ms": m.p99_ms,
            "late": self.late.to_dict() if self.late is not None else None,
            "server": self.server.to_dict() if self.server is not None else None,
            "generator": self.generator.to_dict() if self.generator is not None else None,
            "slo": [check.to_dict() for check in self.checks],
            "passed": self.passed,
            "machine": dict(self.machine),
            "versions": dict(self.versions),
            "locust_version": self.locust_version,
            "locust_exit_code": self.locust_exit_code,
            "locust_killed": self.locust_killed,
            "generator_cpu_percent": self.generator_cpu_percent,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "wall_s": self.wall_s,
            "files": dict(self.files),
        }


def read_locust_stats(path: Path, *, name: str) -> Measurement:
    """Read one row of Locust's `<prefix>_stats.csv`: the row called `name`, else the "Aggregated" row.

    Percentiles are Locust's own (it rounds latencies under 100 ms to whole milliseconds); "N/A" (no request)
    becomes None.

    Args:
        path: the stats CSV file.
        name: the request name to read, i.e. the model's name.

    Returns:
        The measurement.

    Raises:
        TritonForgeError: the file is missing or has neither row (Locust did not run; its log says why).
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise TritonForgeError(
            f"Locust wrote no statistics file {path}; read its log beside it for the reason"
        ) from None
    row = next((r for r in rows if r.get("Name") == name), None) or next(
        (r for r in rows if r.get("Name") == _AGGREGATED), None
    )
    if row is None:
        raise TritonForgeError(f"Locust's statistics file {path} has no row for '{name}' nor '{_AGGREGATED}'")
    try:
        return Measurement(
            requests=int(row["Request Count"]),
            failures=int(row["Failure Count"]),
            rps=float(row["Requests/s"]),
            p50_ms=_percentile(row["50%"]),
            p95_ms=_percentile(row["95%"]),
            p99_ms=_percentile(row["99%"]),
            mean_ms=float(row["Average Response Time"]) if int(row["Request Count"]) > 0 else None,
        )
    except (KeyError, ValueError) as exc:
        raise TritonForgeError(f"Locust's statistics file {path} is not in the expected format: {exc!r}") from exc


def read_late_requests(path: Path) -> LateRequests:
    """Read the late-start tally the Locust master wrote (`LateTally.to_message()` as JSON).

    Raises:
        TritonForgeError: the file is missing or unreadable (Locust did not run in arrival-rate mode to its end).
    """
    try:
        message = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TritonForgeError(
            f"Locust wrote no late-start tally {path}; read its log beside it for the reason"
        ) from None
    except json.JSONDecodeError as exc:
        raise TritonForgeError(f"the late-start tally {path} is not valid JSON: {exc}") from exc
    tally = LateTally(float(message["threshold_ms"]))
    tally.merge(message)
    return tally.summary()


def write_summary(result: LoadTestResult, path: Path) -> Path:
    """Write summary.json atomically (a reader never sees half a file).

    Args:
        result: the load test's result.
        path: where to write.

    Returns:
        `path`.
    """
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")
    _LOGGER.info("wrote %s", path)
    return path


def format_table(result: LoadTestResult) -> str:
    """Render the SLO table and the run's totals as aligned text.

    Args:
        result: the load test's result.

    Returns:
        Lines like `p99_ms  <= 50 ms  3 ms  PASS`, then totals and the verdict.
    """
    header = ("SLO", "objective", "measured", "result")
    rows = [
        (
            c.name,
            f"{c.comparison.value} {_number(c.objective)}{_unit(c.unit)}",
            f"{_number(c.measured)}{_unit(c.unit)}" if c.measured is not None else "n/a",
            "PASS" if c.passed else "FAIL",
        )
        for c in result.checks
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    if not rows:
        lines.append("(no SLO given: measurements only)")
    m = result.measurement
    latency = " ".join(f"{k} {_number(v)} ms" for k, v in (("p50", m.p50_ms), ("p95", m.p95_ms), ("p99", m.p99_ms)))
    lines.append("")
    lines.append(
        f"{result.model} @ {result.host}: {m.requests} requests, {m.failures} failures, {m.rps:.1f} req/s, "
        f"{latency}, {result.users} users for {result.run_time_s} s"
        + (f" after a {result.warmup_s} s warm-up (not counted)" if result.warmup_s else "")
    )
    if result.late is not None:
        lines.append(_late_line(result))
    if result.generator is not None:
        lines.append(result.generator.advice)
    if result.server is not None:
        lines.append("")
        lines.append(format_breakdown(result.server))
    if result.locust_killed:
        lines.append("warning: Locust did not exit by itself and was killed; its last statistics may be incomplete")
    verdict = "PASS" if result.passed else "FAIL"
    reason = " (no request was made)" if m.requests == 0 else ""
    lines.append(f"{verdict}: {len(result.checks) - len(result.missed)}/{len(result.checks)} SLOs met{reason}")
    return "\n".join(lines)


def _late_line(result: LoadTestResult) -> str:
    late = result.late
    assert late is not None
    head = f"open loop, {result.arrival} arrivals at {_number(result.rate_rps)} req/s: "
    if late.late == 0 and late.unsent == 0:
        return head + f"all {late.sent} requests started on time (within {_number(late.threshold_ms)} ms)"
    return (
        head
        + (
            f"{late.late} of {late.sent} requests started late (> {_number(late.threshold_ms)} ms; "
            f"p50 {_number(late.p50_ms)} ms, p99 {_number(late.p99_ms)} ms, max {_number(late.max_ms)} ms), "
            f"{late.unsent} never sent; latencies are measured from the schedule"
        )
        + _late_cause(late)
    )


def _late_cause(late: LateRequests) -> str:
    if late.late == 0:
        return ""
    if late.woke_late * 2 >= late.late:
        return (
            f". Most ({late.woke_late}) came from the generator waking late, not busy users: it is short of CPU; "
            "use --processes N or fewer users per process"
        )
    return f". Most ({late.late - late.woke_late}) found every user busy: raise --users or lower --rate"


def _bucket(ms: float) -> float:
    """Round like Locust rounds response times, so the histogram stays small at any duration."""
    if ms < 10:
        return round(ms, 1)
    if ms < 100:
        return float(round(ms))
    if ms < 1000:
        return float(round(ms, -1))
    return float(round(ms, -2))


def _histogram_percentile(histogram: Mapping[float, int], fraction: float) -> float | None:
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def _percentile(cell: str) -> float | None:
    return None if cell == _NOT_AVAILABLE else float(cell)


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""
