"""The batching tuner's search, apart from any server: which configs to try, in what order, and which one won.

    space = SearchSpace()                                  # 4 batch sizes x 6 delays x preferred on/off x 1-2 instances
    result = search(space, measure, p99_ms=50.0)           # measure(Candidate) -> LoopFigures
    print(result.best.candidate.label, len(result.trials), "of", space.size)

Why this shape: a trial costs seconds of load on a real server, so the search must need far fewer trials than the grid.
Strategy (coordinate descent with memoised trials, like Triton Model Analyzer's quick mode but also sweeping the queue
delay, which that tool never does on its own):

1. Start from the default config: the model's max_batch_size, no queue delay, no preferred sizes, one instance.
2. Sweep one knob at a time over all its values, the others held at the incumbent: queue delay first (the knob that
   matters most for small requests), then max_batch_size, instance count, preferred batch sizes. Move to the best
   value if it beats the incumbent by at least `min_gain`. Repeat the passes until one changes nothing (at most
   `max_passes`). A config already measured is never measured again during the descent (memoised).
3. Noise guard (two shared cores): the `confirm` best configs are measured once more each, one after the other;
   a config that then leads on its latest run is re-measured too (up to two more), and the winner is the re-measured
   config with the best re-measure: configs compared side by side, and one lucky run cannot win. Reported figures
   are medians over each config's runs. Ranking: configs meeting the p99 SLO by throughput; configs missing it
   rank below, by lowest p99, so the descent walks towards feasibility; failed loads rank last.

The budget (`max_trials`, default a third of the grid, at least one pass) counts every measurement, confirmations
included, so on the default space the search never costs more than a third of the grid. `grid=True` measures every
config once (then confirms the same way).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tritonforge.errors import ConfigError, TritonForgeError
from tritonforge.loadtests.closed_loop import LoopFigures, median_figures

_LOGGER = logging.getLogger(__name__)

DIMENSIONS = ("max_queue_delay_us", "max_batch_size", "instances", "preferred")
"""The knobs, in the order the descent sweeps them."""


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One batching config to try.

    Attributes:
        max_batch_size: the model's max_batch_size.
        max_queue_delay_us: dynamic_batching.max_queue_delay_microseconds (0: run what is queued at once); None:
            no dynamic batching at all (Triton's default scheduler: one request per execution).
        preferred: whether dynamic_batching.preferred_batch_size is set (to max_batch_size); always False without
            dynamic batching.
        instances: instance_group count.
    """

    max_batch_size: int
    max_queue_delay_us: int | None
    preferred: bool
    instances: int

    def __post_init__(self) -> None:
        if self.max_queue_delay_us is None and self.preferred:
            object.__setattr__(self, "preferred", False)  # nothing to prefer without a dynamic batcher

    @property
    def label(self) -> str:
        """A short name for tables and plots, e.g. "b32 d500us pref x2"."""
        delay = "nobatch" if self.max_queue_delay_us is None else f"d{self.max_queue_delay_us}us"
        return f"b{self.max_batch_size} {delay}{' pref' if self.preferred else ''} x{self.instances}"

    @property
    def preferred_batch_sizes(self) -> tuple[int, ...]:
        """The preferred_batch_size list this candidate writes (empty when off)."""
        return (self.max_batch_size,) if self.preferred else ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "max_batch_size": self.max_batch_size,
            "dynamic_batching": self.max_queue_delay_us is not None,
            "max_queue_delay_us": self.max_queue_delay_us,
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
            "instances": self.instances,
        }


def _values(name: str, values: Sequence[Any], minimum: int, *, allow_none: bool = False) -> tuple[Any, ...]:
    if not values:
        raise ConfigError(f"the search space needs at least one {name} value")
    numbers = [v for v in values if not (allow_none and v is None)]
    if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in numbers):
        raise ConfigError(f"{name} values must be whole numbers >= {minimum}, got {list(values)}")
    return ((None,) if len(numbers) < len(values) else ()) + tuple(sorted(set(numbers)))


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """The values each knob may take; defaults sized for a CPU server with 2 cores.

    Attributes:
        max_batch_sizes: candidate max_batch_size values.
        delays_us: candidate queue delays in microseconds; None stands for no dynamic batching (Triton's default
            scheduler), the default config the descent starts from.
        preferred: whether to try preferred batch sizes off (False) and/or on (True).
        instances: candidate instance counts.
    """

    max_batch_sizes: tuple[int, ...] = (8, 16, 32, 64)
    delays_us: tuple[int | None, ...] = (None, 0, 100, 500, 1000, 2000, 5000)
    preferred: tuple[bool, ...] = (False, True)
    instances: tuple[int, ...] = (1, 2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_batch_sizes", _values("max_batch_size", self.max_batch_sizes, 1))
        object.__setattr__(self, "delays_us", _values("queue delay", self.delays_us, 0, allow_none=True))
        object.__setattr__(self, "instances", _values("instance count", self.instances, 1))
        if not self.preferred or any(not isinstance(p, bool) for p in self.preferred):
            raise ConfigError("preferred must hold False and/or True (preferred batch sizes off/on)")
        object.__setattr__(self, "preferred", tuple(sorted(set(self.preferred))))

    def values(self, dimension: str) -> tuple[Any, ...]:
        """The values of one knob (a name from DIMENSIONS)."""
        return {
            "max_queue_delay_us": self.delays_us,
            "max_batch_size": self.max_batch_sizes,
            "instances": self.instances,
            "preferred": self.preferred,
        }[dimension]

    @property
    def size(self) -> int:
        """Number of distinct configs in the full grid."""
        return len(self.grid())

    def grid(self) -> list[Candidate]:
        """Every distinct config, in a fixed order (without dynamic batching, preferred sizes are moot)."""
        configs = (
            Candidate(max_batch_size=b, max_queue_delay_us=d, preferred=p, instances=i)
            for b, d, p, i in itertools.product(self.max_batch_sizes, self.delays_us, self.preferred, self.instances)
        )
        return list(dict.fromkeys(configs))

    def capped(self, limit: int | None) -> SearchSpace:
        """The space without max_batch_size values above `limit` (what the model's batch axis allows).

        Raises:
            ConfigError: no value is left.
        """
        if limit is None:
            return self
        kept = tuple(b for b in self.max_batch_sizes if b <= limit)
        if not kept:
            raise ConfigError(
                f"every max_batch_size in {list(self.max_batch_sizes)} exceeds the model's limit {limit}; "
                f"pass --max-batch-size values <= {limit}"
            )
        return replace(self, max_batch_sizes=kept)

    def floored(self, minimum: int | None) -> SearchSpace:
        """The space without max_batch_size values below `minimum` (what ensembles calling the model need).

        Raises:
            ConfigError: no value is left.
        """
        if minimum is None:
            return self
        kept = tuple(b for b in self.max_batch_sizes if b >= minimum)
        if not kept:
            raise ConfigError(
                f"every max_batch_size in {list(self.max_batch_sizes)} is below {minimum}, the max_batch_size of an "
                f"ensemble that calls the model (Triton refuses to load it then); pass --max-batch-size values >= "
                f"{minimum}"
            )
        return replace(self, max_batch_sizes=kept)

    def start(self, max_batch_size: int | None = None) -> Candidate:
        """The default config the descent starts from.

        That is the given max_batch_size (or the nearest value in the space), no dynamic batching (or the shortest
        queue delay when the space has no None), preferred sizes off when allowed, the fewest instances.
        """
        sizes = self.max_batch_sizes
        if max_batch_size is None:
            size = sizes[-1]
        else:
            size = min(sizes, key=lambda b: (abs(b - max_batch_size), -b))
        return Candidate(
            max_batch_size=size,
            max_queue_delay_us=self.delays_us[0],
            preferred=self.preferred[0],
            instances=self.instances[0],
        )


@dataclass(frozen=True, kw_only=True)
class Trial:
    """One config and what was measured for it.

    Attributes:
        index: 1-based order in which the config was first measured.
        candidate: the config.
        runs: every measurement of it (more than one when it was re-measured for confirmation).
        error: why it could not be measured (e.g. the server rejected the config), else None.
        meets_slo: whether its median p99 is within the SLO and no request failed.
    """

    index: int
    candidate: Candidate
    runs: tuple[LoopFigures, ...]
    error: str | None
    meets_slo: bool

    @property
    def figures(self) -> LoopFigures | None:
        """Median figures over the runs, or None when it was never measured."""
        return median_figures(self.runs) if self.runs else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        figures = self.figures
        return {
            "trial": self.index,
            "label": self.candidate.label,
            "config": self.candidate.to_dict(),
            "figures": figures.to_dict() if figures is not None else None,
            "runs": [run.to_dict() for run in self.runs],
            "error": self.error,
            "meets_slo": self.meets_slo,
        }


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """What a search tried and chose.

    Attributes:
        strategy: "coordinate-descent" or "grid".
        slo_p99_ms: the p99 objective every trial was held to.
        trials: every config measured, in the order first measured.
        best: the winner (best median throughput meeting the SLO after confirmation), or None if none met it.
        baseline: the default config's trial (the descent's start), or None in grid mode without it.
        grid_size: configs in the full grid.
        measurements: measurements made, confirmations included.
    """

    strategy: str
    slo_p99_ms: float
    trials: tuple[Trial, ...]
    best: Trial | None
    baseline: Trial | None
    grid_size: int
    measurements: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "strategy": self.strategy,
            "slo_p99_ms": self.slo_p99_ms,
            "grid_size": self.grid_size,
            "configs_tried": len(self.trials),
            "measurements": self.measurements,
            "best": self.best.to_dict() if self.best is not None else None,
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
            "trials": [trial.to_dict() for trial in self.trials],
        }


Measure = Callable[[Candidate], LoopFigures]
"""Load a candidate on the server and measure it; raises a TritonForgeError when the config cannot be served."""


@dataclass
class _Memo:
    """Every measurement so far, by candidate, and the budget left."""

    measure: Measure
    slo_p99_ms: float
    budget: int
    runs: dict[Candidate, list[LoopFigures]] = field(default_factory=dict)
    errors: dict[Candidate, str] = field(default_factory=dict)
    order: list[Candidate] = field(default_factory=list)
    measurements: int = 0
    progress: Callable[[Trial], None] | None = None

    def measured(self, candidate: Candidate) -> bool:
        return candidate in self.runs or candidate in self.errors

    def run(self, candidate: Candidate) -> bool:
        """Measure `candidate` once more (even if already measured); False when the budget is spent."""
        if self.measurements >= self.budget:
            return False
        self.measurements += 1
        if candidate not in self.order:
            self.order.append(candidate)
        try:
            figures = self.measure(candidate)
        except TritonForgeError as exc:
            _LOGGER.warning("%s: %s", candidate.label, exc)
            self.errors[candidate] = str(exc)
        else:
            self.runs.setdefault(candidate, []).append(figures)
            self.errors.pop(candidate, None)
        if self.progress is not None:
            self.progress(self.trial(candidate, self.order.index(candidate) + 1))
        return True

    def ensure(self, candidate: Candidate) -> bool:
        """Measure `candidate` unless it already was (memoised); False when it is unmeasured and the budget is spent."""
        return self.measured(candidate) or self.run(candidate)

    def meets(self, candidate: Candidate) -> bool:
        runs = self.runs.get(candidate)
        if not runs:
            return False
        figures = median_figures(runs)
        return figures.errors == 0 and figures.requests > 0 and figures.p99_ms <= self.slo_p99_ms

    def score(self, candidate: Candidate) -> tuple[int, float]:
        """Higher is better: (2, throughput) meets the SLO, (1, -p99) misses it, (0, 0) failed or unmeasured."""
        runs = self.runs.get(candidate)
        if not runs:
            return (0, 0.0)
        figures = median_figures(runs)
        if self.meets(candidate):
            return (2, figures.items_per_s)
        return (1, -figures.p99_ms if figures.requests else float("-inf"))

    def trial(self, candidate: Candidate, index: int) -> Trial:
        return Trial(
            index=index,
            candidate=candidate,
            runs=tuple(self.runs.get(candidate, ())),
            error=self.errors.get(candidate),
            meets_slo=self.meets(candidate),
        )


def _beats(memo: _Memo, challenger: Candidate, incumbent: Candidate, min_gain: float) -> bool:
    new, old = memo.score(challenger), memo.score(incumbent)
    if new[0] != old[0]:
        return new[0] > old[0]
    if new[0] == 2:
        return new[1] > old[1] * (1.0 + min_gain)
    return new > old


def _descend(memo: _Memo, space: SearchSpace, start: Candidate, *, min_gain: float, max_passes: int) -> None:
    incumbent = start
    if not memo.ensure(incumbent):
        return
    for _ in range(max_passes):
        moved = False
        for dimension in DIMENSIONS:
            for value in space.values(dimension):
                challenger = replace(incumbent, **{dimension: value})
                if not memo.ensure(challenger):
                    return
            options = [replace(incumbent, **{dimension: value}) for value in space.values(dimension)]
            best = max(options, key=memo.score)
            if best != incumbent and _beats(memo, best, incumbent, min_gain):
                _LOGGER.info("descent: %s -> %s", incumbent.label, best.label)
                incumbent, moved = best, True
        if not moved:
            return


_EXTRA_CONFIRMS = 2
"""Re-measures kept in reserve for configs that take the lead after the first confirmation round."""


def _latest(memo: _Memo, candidate: Candidate) -> float:
    """Throughput of a config's latest run: what the confirmation round compares, side by side."""
    return memo.runs[candidate][-1].items_per_s


def _confirm(memo: _Memo, confirm: int) -> set[Candidate]:
    """Re-measure the leaders until the leader is a re-measured config; return the re-measured configs meeting the SLO.

    The `confirm` best configs by median are re-measured once each, then any config that leads on its latest run.
    Leaders are ranked by their latest run, so configs re-measured one after the other are compared with each other
    rather than with a run made earlier under other load, and a single lucky run cannot win.
    """
    feasible = sorted((c for c in memo.runs if memo.meets(c)), key=memo.score, reverse=True)
    if len(feasible) < 2:  # one config meeting the SLO has nothing to be confirmed against
        return set()
    confirmed: set[Candidate] = set()
    for candidate in feasible[:confirm]:
        if memo.run(candidate):
            confirmed.add(candidate)
    while True:
        leaders = sorted((c for c in memo.runs if memo.meets(c)), key=lambda c: _latest(memo, c), reverse=True)
        if not leaders or leaders[0] in confirmed or not memo.run(leaders[0]):
            break
        confirmed.add(leaders[0])
    return {c for c in confirmed if memo.meets(c)}


def search(
    space: SearchSpace,
    measure: Measure,
    *,
    p99_ms: float,
    start: Candidate | None = None,
    grid: bool = False,
    max_trials: int | None = None,
    confirm: int = 2,
    min_gain: float = 0.02,
    max_passes: int = 3,
    progress: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Find the config with the highest throughput whose p99 meets `p99_ms`.

    Args:
        space: the values to search.
        measure: loads a candidate and measures it (one closed-loop run).
        p99_ms: the p99 latency objective, in milliseconds.
        start: the default config to start from (default: `space.start()`); it is the baseline of the report.
        grid: measure every config of the space instead of descending.
        max_trials: most measurements in all, confirmations included (default: a third of the grid, or one pass
            over the knobs plus confirmations if that is more, as in a small space; the whole grid plus
            confirmations with `grid`).
        confirm: how many of the best configs are re-measured once before the winner is declared (0: none); up to
            two more re-measures go to configs that take the lead afterwards.
        min_gain: relative throughput gain a challenger needs to replace the incumbent during the descent.
        max_passes: most passes over the knobs.
        progress: called after each measurement with the config's trial so far.

    Returns:
        Every trial and the winner (None when no config met the SLO).

    Raises:
        ConfigError: bad arguments, or a start outside the space.
    """
    if p99_ms <= 0 or confirm < 0 or min_gain < 0 or max_passes < 1:
        raise ConfigError("p99_ms must be > 0, confirm >= 0, min_gain >= 0 and max_passes >= 1")
    start = start or space.start()
    grid_configs = space.grid()
    if start not in grid_configs:
        raise ConfigError(f"start config {start.label} is not in the search space; add its values to the space")
    if max_trials is None:
        one_pass = 1 + sum(len(space.values(d)) - 1 for d in DIMENSIONS)
        reserve = confirm + _EXTRA_CONFIRMS if confirm else 0
        max_trials = space.size + reserve if grid else max(space.size // 3, min(space.size, one_pass) + reserve)
    if max_trials < 1:
        raise ConfigError(f"max_trials must be >= 1, got {max_trials}")
    reserve = min(confirm + _EXTRA_CONFIRMS if confirm else 0, max(max_trials - 1, 0))
    memo = _Memo(measure=measure, slo_p99_ms=p99_ms, budget=max_trials - reserve, progress=progress)
    if grid:
        for candidate in [start, *(c for c in grid_configs if c != start)]:
            if not memo.ensure(candidate):
                break
    else:
        _descend(memo, space, start, min_gain=min_gain, max_passes=max_passes)
    memo.budget += reserve
    confirmed = _confirm(memo, confirm) if confirm else set()
    trials = tuple(memo.trial(c, k + 1) for k, c in enumerate(memo.order))
    best: Trial | None
    if confirmed:
        best = max((t for t in trials if t.candidate in confirmed), key=lambda t: _latest(memo, t.candidate))
    else:
        passing = [t for t in trials if t.meets_slo]
        best = max(passing, key=lambda t: memo.score(t.candidate)) if passing else None
    baseline = next((t for t in trials if t.candidate == start), None)
    return SearchResult(
        strategy="grid" if grid else "coordinate-descent",
        slo_p99_ms=p99_ms,
        trials=trials,
        best=best,
        baseline=baseline,
        grid_size=space.size,
        measurements=memo.measurements,
    )
