"""Two runs side by side: every metric of two summary.json (or two capacity.json) files, with B against A.

    diff = diff_runs(Path("runs/before/summary.json"), Path("runs/after/summary.json"))
    print(format_diff(diff))        # metric  A  B  B vs A   (x1.25 = B is 25 % higher; +3 where A is 0)

SREs compare a run before and after a change (a config, a version, a node type). The summary schema grows over
time, so nothing here insists on a key beyond the few that say what the file is: every number, flag and short
text the two files hold is listed, the well-known ones first, and a key only one file has shows "-" on the other
side. Percentiles, rates, late requests, the server breakdown and generator CPU all come through this way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonforge.errors import ConfigError

__all__ = ["DiffRow", "RunDiff", "RunSummary", "diff_runs", "format_diff", "load_run"]

#: Keys that are shown in the header, compared separately, or are paths and lists rather than figures.
_SKIPPED = {"schema_version", "kind", "model", "host", "files", "slo", "started_at", "ended_at", "steps", "curve"}
_FIRST = {
    "loadtest": (
        "passed", "requests", "failures", "error_ratio", "rate_rps", "rps", "p50_ms", "p95_ms", "p99_ms", "late.late",
        "late.unsent", "server.model.queue_us", "server.model.compute_input_us", "server.model.compute_infer_us",
        "server.model.compute_output_us", "server.model.avg_batch", "server.overhead_p50_ms", "generator.cpu_percent",
        "generator.saturated",
    ),
    "capacity": (
        "found", "knee_rps", "knee_achieved_rps", "knee_p50_ms", "knee_p95_ms", "knee_p99_ms", "first_failing_rps",
        "reached_max", "meets_min_rps",
    ),
}  # fmt: skip
_MISSING = "-"
_MAX_TEXT = 40


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """One run's summary file, read.

    Attributes:
        path: the file.
        kind: "loadtest" (summary.json) or "capacity" (capacity.json).
        schema_version: the file's schema_version, or None when it has none (an early summary).
        document: the parsed JSON object.
    """

    path: Path
    kind: str
    schema_version: int | None
    document: dict[str, Any]

    @property
    def title(self) -> str:
        """What ran where and when, for the header."""
        doc = self.document
        where = f"{doc.get('model', '?')} @ {doc.get('host', '?')}"
        when = f", {doc['started_at']}" if doc.get("started_at") else ""
        schema = f", schema {self.schema_version}" if self.schema_version is not None else ", no schema_version"
        return f"{self.path} ({self.kind}: {where}{when}{schema})"


@dataclass(frozen=True, kw_only=True)
class DiffRow:
    """One compared metric.

    Attributes:
        name: the metric (a dotted path for nested values, `slo p99_ms <= 50 ms` for an objective).
        a: A's value, formatted ("-" when A lacks it).
        b: B's value, formatted.
        change: B against A: `x1.25` (ratio), `+3` (difference where A is 0), `changed`, or "".
    """

    name: str
    a: str
    b: str
    change: str


@dataclass(frozen=True, kw_only=True)
class RunDiff:
    """Two runs and their compared metrics, in display order."""

    a: RunSummary
    b: RunSummary
    rows: tuple[DiffRow, ...]


def load_run(path: Path) -> RunSummary:
    """Read a load test's summary.json or a capacity search's capacity.json.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON, or not a tritonforge run summary.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"run summary {path} does not exist; pass the summary.json a load test wrote") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read run summary {path}: {exc}; pass a readable summary.json") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"run summary {path} is not valid JSON ({exc}); pass the summary.json a run wrote") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"run summary {path} holds a JSON {type(document).__name__}, not an object; is it a summary?")
    kind = _kind(document)
    if kind is None:
        raise ConfigError(
            f"{path} is not a tritonforge run summary (no requests/p99_ms, no knee_rps); "
            "pass a load test's summary.json or a capacity search's capacity.json"
        )
    version = document.get("schema_version")
    return RunSummary(
        path=path,
        kind=kind,
        schema_version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        document=document,
    )


def diff_runs(path_a: Path, path_b: Path) -> RunDiff:
    """Read two run summaries of the same kind and compare every metric they hold.

    Raises:
        ConfigError: a file is not a run summary, or one is a load test and the other a capacity search.
    """
    a, b = load_run(path_a), load_run(path_b)
    if a.kind != b.kind:
        raise ConfigError(
            f"cannot compare a {a.kind} summary ({a.path}) with a {b.kind} one ({b.path}); pass two of a kind"
        )
    flat_a, flat_b = _flatten(a.document), _flatten(b.document)
    order = [k for k in _FIRST.get(a.kind, ()) if k in flat_a or k in flat_b]
    order += [k for k in [*flat_a, *flat_b] if k not in order]
    order = list(dict.fromkeys(order))
    rows = [_row(key, flat_a.get(key, _Absent), flat_b.get(key, _Absent)) for key in order]
    rows += _slo_rows(a.document, b.document)
    return RunDiff(a=a, b=b, rows=tuple(rows))


def format_diff(diff: RunDiff) -> str:
    """The header naming A and B, then an aligned table: metric, A, B, B vs A."""
    header = ("metric", "A", "B", "B vs A")
    rows = [(r.name, r.a, r.b, r.change) for r in diff.rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"A: {diff.a.title}", f"B: {diff.b.title}", ""]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


class _AbsentType:
    """Marks a key one file does not have (distinct from a JSON null)."""


_Absent = _AbsentType()


def _kind(document: dict[str, Any]) -> str | None:
    declared = document.get("kind")
    if declared == "capacity" or (declared is None and "knee_rps" in document):
        return "capacity"
    if declared in (None, "loadtest") and ("p99_ms" in document or "requests" in document):
        return "loadtest"
    return None


def _flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every number, flag, null and short text by dotted path (lists and the skipped keys left out)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if not prefix and key in _SKIPPED:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif (
            value is None
            or isinstance(value, bool | int | float)
            or (isinstance(value, str) and len(value) <= _MAX_TEXT)
        ):
            flat[name] = value
    return flat


def _row(name: str, a: Any, b: Any) -> DiffRow:
    verdict = name == "passed" or name.endswith(".passed")
    return DiffRow(name=name, a=_show(a, verdict=verdict), b=_show(b, verdict=verdict), change=_change(a, b))


def _slo_rows(a: dict[str, Any], b: dict[str, Any]) -> list[DiffRow]:
    """One row per objective of either run: `slo p99_ms <= 50 ms`, each side `measured PASS|FAIL`."""
    checks_a, checks_b = _checks(a), _checks(b)
    rows = []
    for label in dict.fromkeys([*checks_a, *checks_b]):
        ca, cb = checks_a.get(label), checks_b.get(label)
        measured_a = ca.get("measured", _Absent) if ca is not None else _Absent
        measured_b = cb.get("measured", _Absent) if cb is not None else _Absent
        rows.append(DiffRow(name=label, a=_show_check(ca), b=_show_check(cb), change=_change(measured_a, measured_b)))
    return rows


def _checks(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    slo = document.get("slo")
    if not isinstance(slo, list):
        return {}
    checks = {}
    for check in slo:
        if isinstance(check, dict) and "name" in check:
            unit = f" {check['unit']}" if check.get("unit") else ""
            label = f"slo {check['name']} {check.get('comparison', '?')} {_show(check.get('objective'))}{unit}"
            checks[label] = check
    return checks


def _show_check(check: dict[str, Any] | None) -> str:
    if check is None:
        return _MISSING
    passed = check.get("passed")
    verdict = "PASS" if passed is True else "FAIL" if passed is False else "?"
    return f"{_show(check.get('measured'))} {verdict}"


def _show(value: Any, *, verdict: bool = False) -> str:
    if value is _Absent:
        return _MISSING
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return ("PASS" if value else "FAIL") if verdict else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def _change(a: Any, b: Any) -> str:
    if a is _Absent or b is _Absent or a is None or b is None:
        return ""
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return "" if a == b else "changed"
    if not (math.isfinite(a) and math.isfinite(b)):
        return ""
    if a == b:
        return "same"
    if a <= 0 or b < 0:  # a ratio says nothing here: show the difference
        return f"{b - a:+.4g}"
    return f"x{b / a:.2f}"
