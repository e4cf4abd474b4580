"""Capacity search: raise an open-loop request rate step by step until the SLO breaks, and report the knee.

    slo = load_model_slo(Path("slo/digits.yaml"), "digits")
    template = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=Path("runs/capacity"))
    report = run_capacity(template, slo, start_rps=100, factor=1.5, max_rps=20000, step_s=5, refine_steps=2)
    print(format_capacity(report))      # runs/capacity/capacity.json, capacity.png, step_NN_<rate>rps/summary.json

SREs ask how much traffic one replica takes before it misses its SLO. Each step runs at a fixed arrival rate
(open loop: requests start on schedule whatever the server does, so the latency past the knee is honest rather
than hidden by waiting users). The rate grows by `factor` until a step fails, then `refine_steps` bisections
between the last passing and the first failing rate narrow the knee. A step that sent well below its target
rate fails too: the SLO was not met *at that rate*; the report says whether the generator or the server fell
short. `find_capacity` is the search alone, over any "run one step at this rate" function, so it can be tested
without a server.

Steady state. A step measures its steady state, not its own ramp-up: each step first runs an untimed warm-up of
`step_warmup_s(step_s)` = max(1 s, 20 % of the step), rounded up to whole seconds (`warmup_s` overrides it),
during which its users start evenly (the rate ramps up to its target while channels connect and the server
warms); Locust then resets its statistics (`--reset-stats`) and the step's `step_s` seconds that follow are the
measurement. The achieved rate, the percentiles and the SLO verdict are those of that steady part only, so "the
server could not keep up" is said only when the steady part fell short of the target. The late-start tally
still covers the whole step (warm-up included). A step costs warm-up + step_s seconds.

Nothing lost. The output folder of an earlier search (its capacity.json or step folders) is refused with a
ConfigError unless `overwrite=True` (`--overwrite`), and only then are that search's files removed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonforge._atomic import atomic_write_text
from tritonforge.errors import ConfigError
from tritonforge.loadtests.arrivals import Arrival, open_loop_users
from tritonforge.loadtests.report import LoadTestResult
from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest
from tritonforge.loadtests.slo import SLOCheck, SLOSpec

__all__ = [
    "CAPACITY_SCHEMA_VERSION",
    "CapacityReport",
    "StepResult",
    "find_capacity",
    "format_capacity",
    "run_capacity",
    "step_warmup_s",
    "write_capacity",
]

_LOGGER = logging.getLogger(__name__)

CAPACITY_SCHEMA_VERSION = 1
#: Generator CPU at or above this share of the cores it may use means the generator, not the server, is the limit.
_SATURATED_SHARE = 0.9
#: Refinement stops once the bracket is narrower than this share of the passing rate (more steps say nothing).
_MIN_BRACKET_SHARE = 0.01
#: A step's default warm-up: this share of the step, at least _MIN_WARMUP_S, in whole seconds.
_WARMUP_SHARE = 0.2
_MIN_WARMUP_S = 1

StepFunction = Callable[[float], "StepResult | LoadTestResult"]


@dataclass(frozen=True, kw_only=True)
class StepResult:
    """One step of the search: the load at one target rate and what it achieved.

    Attributes:
        target_rps: the arrival rate asked for.
        achieved_rps: the rate of requests actually made.
        requests: requests made, failed ones included.
        failures: failed requests.
        late_requests: requests that started late against their schedule (None: not reported, e.g. closed loop).
        unsent_requests: scheduled requests that were never sent (None: not reported).
        p50_ms: median latency, or None without requests.
        p95_ms: 95th-percentile latency, or None without requests.
        p99_ms: 99th-percentile latency, or None without requests.
        checks: the SLO objectives checked against this step.
        generator_cpu_percent: the load generator's CPU use (100 = one core), or None.
        generator_saturated: whether the generator ran out of CPU (None: unknown).
        shortfall: why the achieved rate fell short of the target, set by the search (None: it did not).
        summary_path: the step's summary.json, when it ran through the load-test runner.
    """

    target_rps: float
    achieved_rps: float
    requests: int
    failures: int
    late_requests: int | None = None
    unsent_requests: int | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    checks: tuple[SLOCheck, ...] = ()
    generator_cpu_percent: float | None = None
    generator_saturated: bool | None = None
    shortfall: str | None = None
    summary_path: str | None = None

    @classmethod
    def from_loadtest(cls, target_rps: float, result: LoadTestResult, *, generator_cores: float = 1.0) -> StepResult:
        """Read a load test's result as a step (late requests and generator saturation where the runner has them).

        Args:
            target_rps: the rate the run was asked for.
            result: the run's result.
            generator_cores: cores the generator could use (its process count), to judge its CPU when the result
                has no saturation verdict of its own.
        """
        m = result.measurement
        late = result.late
        cpu = result.generator.cpu_percent if result.generator is not None else result.generator_cpu_percent
        if result.generator is not None:
            saturated: bool | None = result.generator.saturated
        else:
            saturated = None if cpu is None else cpu >= _SATURATED_SHARE * 100.0 * generator_cores
        return cls(
            target_rps=target_rps,
            achieved_rps=m.rps,
            requests=m.requests,
            failures=m.failures,
            late_requests=late.late if late is not None else None,
            unsent_requests=late.unsent if late is not None else None,
            p50_ms=m.p50_ms,
            p95_ms=m.p95_ms,
            p99_ms=m.p99_ms,
            checks=tuple(result.checks),
            generator_cpu_percent=cpu,
            generator_saturated=saturated,
            summary_path=result.files.get("summary") or _summary_beside(result.files.get("log")),
        )

    @property
    def error_ratio(self) -> float | None:
        """Failed over all requests, or None without requests."""
        return self.failures / self.requests if self.requests else None

    @property
    def passed(self) -> bool:
        """Requests were made, every objective was met, and the target rate was reached."""
        return self.requests > 0 and self.shortfall is None and all(check.passed for check in self.checks)

    @property
    def broken(self) -> list[str]:
        """What failed, one phrase each (empty when the step passed)."""
        reasons = [
            f"{c.name} {_fmt(c.measured)} (objective {c.comparison.value} {_fmt(c.objective)}{_unit(c.unit)})"
            for c in self.checks
            if not c.passed
        ]
        if self.requests == 0:
            reasons.append("no request was made")
        if self.shortfall is not None:
            reasons.append(self.shortfall)
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as written in capacity.json."""
        return {
            "target_rps": self.target_rps,
            "achieved_rps": self.achieved_rps,
            "requests": self.requests,
            "failures": self.failures,
            "error_ratio": self.error_ratio,
            "late_requests": self.late_requests,
            "unsent_requests": self.unsent_requests,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "slo": [check.to_dict() for check in self.checks],
            "generator_cpu_percent": self.generator_cpu_percent,
            "generator_saturated": self.generator_saturated,
            "shortfall": self.shortfall,
            "passed": self.passed,
            "broken": self.broken,
            "summary": self.summary_path,
        }


@dataclass(frozen=True, kw_only=True)
class CapacityReport:
    """The outcome of a capacity search.

    Attributes:
        steps: every step, in the order run (rising rates, then the bisection).
        knee_rps: the highest target rate that met the SLO, or None when even the first step failed.
        first_failing_rps: the lowest target rate that failed, or None when no step failed up to max_rps.
        start_rps: the first rate tried.
        factor: the growth of the rate from one step to the next.
        max_rps: the highest rate the search would try.
        refine_steps: bisection steps asked for between the last pass and the first failure.
        min_achieved_ratio: the share of its target a step had to achieve to pass.
        model: the model loaded ("" when the search ran on a bare step function).
        host: the server's address.
        slo: the objectives each step was checked against, by name.
        min_rps: the SLO's throughput objective, judged against the knee rather than against each step.
        step_s: each step's measured duration in seconds (None when unknown).
        warmup_s: each step's untimed warm-up before its measured part, in seconds (None when unknown).
        files: what the search wrote, by role (json, png, steps folder).
    """

    steps: tuple[StepResult, ...]
    knee_rps: float | None
    first_failing_rps: float | None
    start_rps: float
    factor: float
    max_rps: float
    refine_steps: int
    min_achieved_ratio: float
    model: str = ""
    host: str = ""
    slo: dict[str, float] = field(default_factory=dict)
    min_rps: float | None = None
    step_s: float | None = None
    warmup_s: float | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """Whether a knee was found: at least one step met the SLO."""
        return self.knee_rps is not None

    @property
    def reached_max(self) -> bool:
        """True when no step failed: the real knee lies above max_rps."""
        return self.found and self.first_failing_rps is None

    @property
    def knee_step(self) -> StepResult | None:
        """The step run at the knee."""
        return self._step_at(self.knee_rps)

    @property
    def first_failing_step(self) -> StepResult | None:
        """The step run at the first failing rate."""
        return self._step_at(self.first_failing_rps)

    @property
    def curve(self) -> list[StepResult]:
        """Every step by rising target rate: the latency-throughput curve around the knee."""
        return sorted(self.steps, key=lambda step: step.target_rps)

    @property
    def meets_min_rps(self) -> bool | None:
        """Whether the knee reaches the SLO's min_rps (None: the SLO has no min_rps)."""
        if self.min_rps is None:
            return None
        return self.knee_rps is not None and self.knee_rps >= self.min_rps

    def _step_at(self, rate: float | None) -> StepResult | None:
        return None if rate is None else next((s for s in self.steps if s.target_rps == rate), None)

    def to_dict(self) -> dict[str, Any]:
        """The capacity.json document."""
        knee, failing = self.knee_step, self.first_failing_step
        return {
            "schema_version": CAPACITY_SCHEMA_VERSION,
            "kind": "capacity",
            "model": self.model,
            "host": self.host,
            "slo": dict(self.slo),
            "min_rps": self.min_rps,
            "meets_min_rps": self.meets_min_rps,
            "start_rps": self.start_rps,
            "factor": self.factor,
            "max_rps": self.max_rps,
            "refine_steps": self.refine_steps,
            "min_achieved_ratio": self.min_achieved_ratio,
            "step_s": self.step_s,
            "warmup_s": self.warmup_s,
            "found": self.found,
            "reached_max": self.reached_max,
            "knee_rps": self.knee_rps,
            "knee_achieved_rps": knee.achieved_rps if knee else None,
            "knee_p50_ms": knee.p50_ms if knee else None,
            "knee_p95_ms": knee.p95_ms if knee else None,
            "knee_p99_ms": knee.p99_ms if knee else None,
            "first_failing_rps": self.first_failing_rps,
            "first_failing_broken": failing.broken if failing else [],
            "steps": [step.to_dict() for step in self.steps],
            "curve": [step.target_rps for step in self.curve],
            "files": dict(self.files),
        }


def find_capacity(
    step: StepFunction,
    *,
    start_rps: float,
    factor: float = 1.5,
    max_rps: float,
    refine_steps: int = 2,
    min_achieved_ratio: float = 0.9,
    on_step: Callable[[StepResult], None] | None = None,
) -> CapacityReport:
    """Find the highest rate that meets the SLO: grow the rate geometrically until a step fails, then bisect.

    The rates are start_rps, start_rps*factor, ... capped at max_rps (tried last). A step passes when its result
    passed and it achieved at least `min_achieved_ratio` of its target. The search assumes that a rate above a
    failing one fails too (latency only grows with load), so it never retries below the knee.

    Args:
        step: runs the load at one target rate (requests/s) and returns its result.
        start_rps: the first rate.
        factor: how much the rate grows from one step to the next (above 1).
        max_rps: the highest rate to try.
        refine_steps: bisection steps between the last passing and the first failing rate (0: none).
        min_achieved_ratio: share of the target a step must achieve, in (0, 1].
        on_step: called with each judged step as soon as it ends (progress).

    Returns:
        The steps, the knee and the first failing rate.

    Raises:
        ConfigError: a parameter is out of range.
    """
    _check_search(start_rps=start_rps, factor=factor, max_rps=max_rps, refine_steps=refine_steps)
    if not 0 < min_achieved_ratio <= 1:
        raise ConfigError(f"min_achieved_ratio must be in (0, 1], got {min_achieved_ratio!r} (0.9 means 90 %)")
    steps: list[StepResult] = []

    def run(rate: float) -> StepResult:
        raw = step(rate)
        result = raw if isinstance(raw, StepResult) else StepResult.from_loadtest(rate, raw)
        judged = _judge(dataclasses.replace(result, target_rps=rate), min_achieved_ratio)
        steps.append(judged)
        _LOGGER.info("%g req/s: %s", rate, "PASS" if judged.passed else "FAIL: " + "; ".join(judged.broken))
        if on_step is not None:
            on_step(judged)
        return judged

    knee: float | None = None
    failing: float | None = None
    rate = _rate(start_rps)
    while True:
        if not run(rate).passed:
            failing = rate
            break
        knee = rate
        if rate >= max_rps:
            break
        rate = _rate(min(rate * factor, max_rps))
    if knee is not None and failing is not None:
        for _ in range(refine_steps):
            middle = _rate((knee + failing) / 2)
            if failing - knee <= max(_MIN_BRACKET_SHARE * knee, 0.1) or middle in (knee, failing):
                break
            if run(middle).passed:
                knee = middle
            else:
                failing = middle
    return CapacityReport(
        steps=tuple(steps),
        knee_rps=knee,
        first_failing_rps=failing,
        start_rps=start_rps,
        factor=factor,
        max_rps=max_rps,
        refine_steps=refine_steps,
        min_achieved_ratio=min_achieved_ratio,
    )


def run_capacity(
    template: LoadTestConfig,
    slo: SLOSpec,
    *,
    start_rps: float,
    factor: float = 1.5,
    max_rps: float,
    step_s: int = 5,
    refine_steps: int = 2,
    min_achieved_ratio: float = 0.9,
    arrival: Arrival = "constant",
    users: int | None = None,
    warmup_s: int | None = None,
    overwrite: bool = False,
    on_step: Callable[[StepResult], None] | None = None,
) -> CapacityReport:
    """Run a capacity search with the Locust runner in open-loop mode, and write capacity.json and capacity.png.

    Each step is `template` with `arrival`, `rate_rps`, `users`, `warmup_s` and `run_time_s=step_s`, writing its own
    reports to `<template.output_dir>/step_NN_<rate>rps/`; its figures are those of the step_s after the warm-up
    (see the module docstring). The SLO's min_rps is not checked per step (a step below it would fail by
    construction); the report says whether the knee reaches it.

    Args:
        template: a LoadTestConfig giving the server, model, users, processes and the output folder.
        slo: the objectives every step must meet.
        start_rps: the first rate.
        factor: growth of the rate per step.
        max_rps: the highest rate to try.
        step_s: each step's measured duration in whole seconds (after its warm-up).
        refine_steps: bisection steps after the first failure.
        min_achieved_ratio: share of the target a step must achieve to pass.
        arrival: "constant" (evenly spaced starts) or "poisson".
        users: the in-flight bound of every step; None sizes it to each step's rate (runner.open_loop_users).
        warmup_s: each step's untimed warm-up in whole seconds; None: `step_warmup_s(step_s)`.
        overwrite: replace an earlier search's results in the output folder (otherwise it is refused).
        on_step: called with each judged step (progress).

    Returns:
        The report, with `files` naming the JSON and the PNG.

    Raises:
        ConfigError: a parameter is out of range, or the output folder holds an earlier search and `overwrite`
            is not set.
        ClientError: the server or the model is not there.
    """
    _check_search(start_rps=start_rps, factor=factor, max_rps=max_rps, refine_steps=refine_steps)
    if isinstance(step_s, bool) or not isinstance(step_s, int) or step_s < 1:
        raise ConfigError(f"step_s must be a whole number of seconds of at least 1, got {step_s!r}")
    warmup = step_warmup_s(step_s) if warmup_s is None else warmup_s
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup_s must be a whole number of seconds of at least 0, got {warmup_s!r}")
    root = template.output_dir
    _claim_output(root, overwrite=overwrite)
    step_slo = _without_min_rps(slo)
    cores = _generator_cores(template.processes)
    counter = iter(range(1, 10_000))

    def one_step(rate: float) -> StepResult:
        folder = root / f"step_{next(counter):02d}_{rate:g}rps"
        config = dataclasses.replace(
            template,
            arrival=arrival,
            rate_rps=rate,
            users=users if users is not None else open_loop_users(rate),
            run_time_s=step_s,
            warmup_s=warmup,
            spawn_rate=None if warmup else template.spawn_rate,
            slo=step_slo,
            output_dir=folder,
        )
        result = run_loadtest(config)
        step = StepResult.from_loadtest(rate, result, generator_cores=cores)
        return dataclasses.replace(step, summary_path=str(folder / "summary.json"))

    report = find_capacity(
        one_step,
        start_rps=start_rps,
        factor=factor,
        max_rps=max_rps,
        refine_steps=refine_steps,
        min_achieved_ratio=min_achieved_ratio,
        on_step=on_step,
    )
    report = dataclasses.replace(
        report,
        model=template.model,
        host=template.host,
        slo=slo.objectives(),
        min_rps=slo.min_rps,
        step_s=float(step_s),
        warmup_s=float(warmup),
    )
    return write_capacity(report, root)


def step_warmup_s(step_s: int) -> int:
    """The default untimed warm-up of a step of `step_s` seconds: max(1 s, 20 % of the step), in whole seconds.

    Args:
        step_s: the step's measured duration.

    Returns:
        The warm-up in whole seconds (at least 1).
    """
    return max(_MIN_WARMUP_S, math.ceil(_WARMUP_SHARE * step_s - 1e-9))


def write_capacity(report: CapacityReport, folder: Path) -> CapacityReport:
    """Write capacity.json (atomically) and the latency-throughput plot capacity.png into `folder`.

    Args:
        report: the search's report.
        folder: where to write (created if missing).

    Returns:
        The report with `files` naming what was written (no PNG when no step made a request).
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {"json": str(folder / "capacity.json"), "steps": str(folder)}
    png = _plot(report, folder / "capacity.png")
    if png is not None:
        files["png"] = str(png)
    report = dataclasses.replace(report, files=files)
    atomic_write_text(folder / "capacity.json", json.dumps(report.to_dict(), indent=2) + "\n")
    _LOGGER.info("wrote %s", files["json"])
    return report


def format_capacity(report: CapacityReport) -> str:
    """The step table (by rising rate) and the knee line, as aligned text."""
    header = ("target req/s", "achieved", "p50 ms", "p95 ms", "p99 ms", "errors", "late", "result")
    rows = [
        (
            _fmt(s.target_rps),
            _fmt(round(s.achieved_rps, 1)),
            _fmt(s.p50_ms),
            _fmt(s.p95_ms),
            _fmt(s.p99_ms),
            str(s.failures),
            _fmt(s.late_requests),
            "PASS" if s.passed else "FAIL: " + "; ".join(s.broken),
        )
        for s in report.curve
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip()
        for row in [header, *rows]
    ]
    lines.append("")
    lines.append(knee_line(report))
    if report.meets_min_rps is False:
        lines.append(f"warning: the knee is below the SLO's min_rps {_fmt(report.min_rps)} req/s")
    return "\n".join(lines)


def knee_line(report: CapacityReport) -> str:
    """One line: the knee and what broke just above it."""
    who = f"'{report.model}' " if report.model else ""
    if report.knee_rps is None:
        failing = report.first_failing_step
        why = "; ".join(failing.broken) if failing else "no step ran"
        return f"no knee: {who}missed the SLO already at the first rate, {_fmt(report.start_rps)} req/s: {why}"
    knee = report.knee_step
    achieved = f" (achieved {knee.achieved_rps:.1f}, p99 {_fmt(knee.p99_ms)} ms)" if knee else ""
    line = f"knee: {who}meets its SLO up to {_fmt(report.knee_rps)} req/s{achieved}"
    failing = report.first_failing_step
    if failing is not None:
        line += f"; first failing rate {_fmt(failing.target_rps)} req/s: {'; '.join(failing.broken)}"
    else:
        line += f"; no step failed up to max_rps {_fmt(report.max_rps)}: the real knee is higher"
    return line


def _judge(step: StepResult, min_achieved_ratio: float) -> StepResult:
    """Mark a step whose achieved rate fell short of its target, naming who could not keep up."""
    if step.requests == 0 or step.achieved_rps >= min_achieved_ratio * step.target_rps:
        return dataclasses.replace(step, shortfall=None)
    share = f"achieved {step.achieved_rps:.1f} of {_fmt(step.target_rps)} req/s"
    late = f", {step.late_requests} requests late" if step.late_requests else ""
    if step.unsent_requests:
        late += f", {step.unsent_requests} never sent"
    cpu = f"generator CPU {step.generator_cpu_percent:g}%" if step.generator_cpu_percent is not None else ""
    if step.generator_saturated:
        cause = f"the load generator could not keep up ({cpu}{late}; add --processes)"
    elif step.generator_saturated is False:
        cause = f"the server could not keep up ({cpu}{late})"
    else:
        cause = f"the server or the generator could not keep up (generator CPU unknown{late})"
    return dataclasses.replace(step, shortfall=f"{share}: {cause}")


def _plot(report: CapacityReport, path: Path) -> Path | None:
    from tritonforge.loadtests.plots import CurvePoint, plot_latency_throughput

    points = [
        CurvePoint(
            label=f"{s.target_rps:g} rps",
            throughput_rps=s.achieved_rps,
            p50_ms=s.p50_ms,
            p95_ms=s.p95_ms,
            p99_ms=s.p99_ms,
            passed=s.passed,
        )
        for s in report.curve
        if s.p50_ms is not None and s.p95_ms is not None and s.p99_ms is not None
    ]
    if not points:
        return None
    knee = f", knee {report.knee_rps:g} req/s" if report.knee_rps is not None else ", no knee"
    title = f"{report.model or 'capacity'}: latency against throughput{knee}"
    return plot_latency_throughput(points, path, title=title, slo_p99_ms=report.slo.get("p99_ms"))


def _check_search(*, start_rps: float, factor: float, max_rps: float, refine_steps: int) -> None:
    if not start_rps > 0:
        raise ConfigError(f"start_rps must be above 0 requests/s, got {start_rps!r}")
    if not max_rps >= start_rps:
        raise ConfigError(f"max_rps ({max_rps!r}) must be at least start_rps ({start_rps!r})")
    if not factor > 1:
        raise ConfigError(f"factor must be above 1 (the rate grows by it each step), got {factor!r}; try 1.5")
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ConfigError(f"refine_steps must be a whole number of at least 0, got {refine_steps!r}")


def _claim_output(root: Path, *, overwrite: bool) -> None:
    """Make `root` ready for a search: refuse one that holds an earlier search, unless `overwrite` clears it.

    An earlier search's steps must never be read as this run's, and never be deleted without being asked.

    Raises:
        ConfigError: `root` holds an earlier search and `overwrite` is not set.
    """
    earlier = _earlier_search(root)
    if earlier and not overwrite:
        raise ConfigError(
            f"{root} already holds a capacity search ({earlier[0].name}); pass --overwrite to replace it, "
            "or another --out"
        )
    root.mkdir(parents=True, exist_ok=True)
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _earlier_search(root: Path) -> list[Path]:
    """What an earlier search left in `root`: capacity.json, capacity.png and its step folders."""
    if not root.is_dir():
        return []
    files = [root / name for name in ("capacity.json", "capacity.png") if (root / name).is_file()]
    return files + sorted(p for p in root.glob("step_[0-9][0-9]*_*rps") if p.is_dir())


def _without_min_rps(slo: SLOSpec) -> SLOSpec | None:
    """The SLO minus min_rps, or None when min_rps was its only objective."""
    rest = {name: value for name, value in slo.objectives().items() if name != "min_rps"}
    return SLOSpec(**rest) if rest else None


def _generator_cores(processes: int | None) -> float:
    if processes is None:
        return 1.0
    return float(os.cpu_count() or 1) if processes == -1 else float(processes)


def _rate(value: float) -> float:
    return round(value, 1)


def _summary_beside(log_path: str | None) -> str | None:
    return str(Path(log_path).with_name("summary.json")) if log_path else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{round(value, 2):g}"


def _unit(unit: str) -> str:
    return f" {unit}" if unit else ""
