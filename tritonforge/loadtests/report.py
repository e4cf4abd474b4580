"""Turn Locust's statistics into a load-test result: summary.json and the SLO table the CLI prints.

    measurement = read_locust_stats(Path("out/locust_stats.csv"), name="digits")
    result = LoadTestResult(model="digits", ..., measurement=measurement, checks=evaluate(spec, measurement))
    write_summary(result, Path("out/summary.json"))
    print(format_table(result))

summary.json (schema_version 1) holds, at the top level:
    schema_version, model, host, users, spawn_rate, run_time_s, batch_size,
    requests, failures, error_ratio (null without requests), rps, p50_ms, p95_ms, p99_ms (null without requests),
    slo: [{name, objective, comparison ("<=" or ">="), unit, measured, passed}, ...],
    passed (every SLO met and at least one request made),
    locust_version, locust_exit_code, locust_killed (the runner had to kill Locust after its deadline),
    generator_cpu_percent (Locust's average CPU use over the run, 100 = one core; null if unknown),
    started_at, ended_at (ISO 8601, UTC), wall_s, files {stats_csv, html, log, inputs}.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonforge._atomic import atomic_write_text
from tritonforge.errors import TritonForgeError
from tritonforge.loadtests.slo import Measurement, SLOCheck

__all__ = ["SCHEMA_VERSION", "LoadTestResult", "format_table", "read_locust_stats", "write_summary"]

_LOGGER = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_AGGREGATED = "Aggregated"
_NOT_AVAILABLE = "N/A"


@dataclass(frozen=True, kw_only=True)
class LoadTestResult:
    """Everything one load test measured and decided.

    Attributes:
        model: the model under test.
        host: the gRPC address that was loaded.
        users: concurrent Locust users.
        spawn_rate: users started per second.
        run_time_s: the requested duration of the run.
        batch_size: items per request (1 when a sample file was sent as it is).
        measurement: Locust's numbers for the model.
        checks: one entry per SLO objective (empty when no SLO was given).
        locust_version: the Locust that generated the load.
        locust_exit_code: Locust's exit status (negative: killed by that signal).
        locust_killed: True when Locust did not exit by itself and the runner killed it.
        generator_cpu_percent: Locust's average CPU use during the run (100 = one core busy), or None.
        started_at: ISO 8601 UTC time the run started.
        ended_at: ISO 8601 UTC time the run ended.
        wall_s: seconds from starting Locust to its exit.
        files: the files the run left, by role (stats_csv, html, log, inputs).
    """

    model: str
    host: str
    users: int
    spawn_rate: float
    run_time_s: int
    batch_size: int
    measurement: Measurement
    checks: tuple[SLOCheck, ...] = ()
    locust_version: str = ""
    locust_exit_code: int | None = None
    locust_killed: bool = False
    generator_cpu_percent: float | None = None
    started_at: str = ""
    ended_at: str = ""
    wall_s: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

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
            "batch_size": self.batch_size,
            "requests": m.requests,
            "failures": m.failures,
            "error_ratio": m.error_ratio,
            "rps": m.rps,
            "p50_ms": m.p50_ms,
            "p95_ms": m.p95_ms,
            "p99_ms": m.p99_ms,
            "slo": [check.to_dict() for check in self.checks],
            "passed": self.passed,
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
        )
    except (KeyError, ValueError) as exc:
        raise TritonForgeError(f"Locust's statistics file {path} is not in the expected format: {exc!r}") from exc


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
    )
    if result.locust_killed:
        lines.append("warning: Locust did not exit by itself and was killed; its last statistics may be incomplete")
    verdict = "PASS" if result.passed else "FAIL"
    reason = " (no request was made)" if m.requests == 0 else ""
    lines.append(f"{verdict}: {len(result.checks) - len(result.missed)}/{len(result.checks)} SLOs met{reason}")
    return "\n".join(lines)


def _percentile(cell: str) -> float | None:
    return None if cell == _NOT_AVAILABLE else float(cell)


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""
