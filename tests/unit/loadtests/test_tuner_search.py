"""The tuner's search on a synthetic, deterministic objective: no server, known optimum."""

from __future__ import annotations

import pytest

from tritonforge.errors import ConfigError, ServerError
from tritonforge.loadtests.closed_loop import LoopFigures
from tritonforge.loadtests.tuner_search import Candidate, SearchSpace, search


def figures(items_per_s: float, p99_ms: float) -> LoopFigures:
    return LoopFigures(
        requests_per_s=items_per_s, items_per_s=items_per_s, p50_ms=p99_ms / 3, p99_ms=p99_ms, requests=100, errors=0
    )


class FakeServer:
    """Throughput rises with batching and instances, peaks at a delay of 1000 us; p99 grows with the delay."""

    def __init__(self) -> None:
        self.calls: list[Candidate] = []

    def __call__(self, c: Candidate) -> LoopFigures:
        self.calls.append(c)
        if c.max_queue_delay_us is None:
            return figures(1000.0 * (1 + 0.1 * c.instances), 12.0)
        delay_gain = {0: 1.6, 100: 1.8, 500: 2.1, 1000: 2.4, 2000: 2.2, 5000: 1.5}[c.max_queue_delay_us]
        batch_gain = {8: 0.7, 16: 0.9, 32: 1.0, 64: 0.95}[c.max_batch_size]
        throughput = 1000.0 * delay_gain * batch_gain * (1.15 if c.instances == 2 else 1.0)
        throughput *= 1.05 if c.preferred else 1.0
        p99 = 5.0 + c.max_queue_delay_us / 100 + c.max_batch_size / 16
        return figures(throughput, p99)


def test_descent_finds_the_grid_optimum_with_a_third_of_the_trials() -> None:
    space = SearchSpace()
    grid_server, descent_server = FakeServer(), FakeServer()
    grid = search(space, grid_server, p99_ms=100.0, grid=True, confirm=0)
    descent = search(space, descent_server, p99_ms=100.0)
    assert grid.best is not None and descent.best is not None
    assert descent.best.candidate == grid.best.candidate
    assert descent.best.candidate == Candidate(max_batch_size=32, max_queue_delay_us=1000, preferred=True, instances=2)
    assert len(grid_server.calls) == space.size + 0
    assert len(descent_server.calls) <= space.size // 3
    assert descent.measurements == len(descent_server.calls)


def test_the_slo_caps_the_winner() -> None:
    # p99 <= 12 ms allows delays up to 500 us at max_batch_size 32 (5 + 5 + 2 = 12) and nothing slower.
    result = search(SearchSpace(), FakeServer(), p99_ms=12.0)
    assert result.best is not None
    best = result.best.figures
    assert best is not None and best.p99_ms <= 12.0
    assert result.best.candidate.max_queue_delay_us == 500
    assert all(t.meets_slo == (t.figures is not None and t.figures.p99_ms <= 12.0) for t in result.trials)


def test_no_config_meets_an_impossible_slo() -> None:
    result = search(SearchSpace(), FakeServer(), p99_ms=1.0)
    assert result.best is None
    assert result.trials and not any(t.meets_slo for t in result.trials)


def test_trials_are_memoised_and_confirmation_remeasures_the_finalists() -> None:
    server = FakeServer()
    result = search(SearchSpace(), server, p99_ms=100.0, confirm=2)
    distinct = set(server.calls)
    assert len(distinct) == len(result.trials)
    repeats = [c for c in distinct if server.calls.count(c) > 1]
    assert len(repeats) == 2 and all(server.calls.count(c) == 2 for c in repeats)
    assert result.best is not None and result.best.candidate in repeats


def test_the_descent_starts_from_the_default_config() -> None:
    server = FakeServer()
    result = search(SearchSpace(), server, p99_ms=100.0, start=SearchSpace().start(64))
    assert server.calls[0] == Candidate(max_batch_size=64, max_queue_delay_us=None, preferred=False, instances=1)
    assert result.baseline is not None and result.baseline.candidate == server.calls[0]


def test_the_budget_caps_measurements() -> None:
    server = FakeServer()
    result = search(SearchSpace(), server, p99_ms=100.0, max_trials=5, confirm=2)
    assert len(server.calls) <= 5 and result.measurements == len(server.calls)


def test_a_config_the_server_rejects_is_recorded_and_skipped() -> None:
    def measure(c: Candidate) -> LoopFigures:
        if c.instances == 2:
            raise ServerError("no memory for a second instance")
        return FakeServer()(c)

    result = search(SearchSpace(), measure, p99_ms=100.0)
    failed = [t for t in result.trials if t.error]
    assert failed and all("no memory" in (t.error or "") and not t.meets_slo for t in failed)
    assert result.best is not None and result.best.candidate.instances == 1


def test_space_validation_and_defaults() -> None:
    space = SearchSpace(max_batch_sizes=(16, 8, 16), delays_us=(500, None, 0))
    assert space.max_batch_sizes == (8, 16) and space.delays_us == (None, 0, 500)
    # preferred sizes mean nothing without dynamic batching: those configs appear once
    assert space.size == 2 * (1 + 2 * 2) * 2
    assert space.capped(10).max_batch_sizes == (8,)
    with pytest.raises(ConfigError, match="exceeds the model's limit 4"):
        space.capped(4)
    for bad in ({"max_batch_sizes": ()}, {"max_batch_sizes": (0,)}, {"delays_us": (-1,)}, {"instances": (1.5,)}):
        with pytest.raises(ConfigError):
            SearchSpace(**bad)  # type: ignore[arg-type]
    assert space.start(12) == Candidate(max_batch_size=16, max_queue_delay_us=None, preferred=False, instances=1)
    with pytest.raises(ConfigError, match="not in the search space"):
        search(space, FakeServer(), p99_ms=10.0, start=Candidate(max_batch_size=64, max_queue_delay_us=0,
                                                                 preferred=False, instances=1))  # fmt: skip


def test_a_single_lucky_run_cannot_win() -> None:
    # Two configs look best on their first run only; a third leads once those are re-measured: it must be
    # re-measured too (and hold up) before it is declared the winner.
    fake = FakeServer()
    lucky = {
        Candidate(max_batch_size=32, max_queue_delay_us=1000, preferred=True, instances=2): 9000.0,
        Candidate(max_batch_size=32, max_queue_delay_us=1000, preferred=False, instances=2): 8000.0,
    }
    seen: set[Candidate] = set()

    def measure(c: Candidate) -> LoopFigures:
        true = fake(c)
        if c in lucky and c not in seen:
            seen.add(c)
            return figures(lucky[c], true.p99_ms)
        return figures(true.items_per_s * (0.5 if c in lucky else 1.0), true.p99_ms)

    result = search(SearchSpace(), measure, p99_ms=100.0, confirm=2)
    assert result.best is not None
    assert result.best.candidate not in lucky
    assert len(result.best.runs) == 2
    assert result.measurements <= SearchSpace().size // 3


@pytest.mark.parametrize(("batched_items_per_s", "winner_delay"), [(1900.0, 0), (900.0, None)])
def test_two_configs_are_each_measured_then_both_confirmed_and_the_measured_faster_wins(
    batched_items_per_s: float, winner_delay: int | None
) -> None:
    # The tuner's integration test's space, on injected figures: the winner follows the measurements, whichever
    # way they go, and the confirmation round re-measures both finalists.
    space = SearchSpace(max_batch_sizes=(64,), delays_us=(None, 0), preferred=(False,), instances=(1,))
    calls: list[Candidate] = []

    def measure(c: Candidate) -> LoopFigures:
        calls.append(c)
        return figures(1000.0 if c.max_queue_delay_us is None else batched_items_per_s, 20.0)

    result = search(space, measure, p99_ms=200.0, start=space.start(64), confirm=2)

    plain = Candidate(max_batch_size=64, max_queue_delay_us=None, preferred=False, instances=1)
    batched = Candidate(max_batch_size=64, max_queue_delay_us=0, preferred=False, instances=1)
    assert calls[:2] == [plain, batched] and sorted(calls[2:], key=str) == sorted([plain, batched], key=str)
    assert result.measurements == 4
    assert result.baseline is not None and result.baseline.candidate == plain
    assert result.best is not None and result.best.candidate.max_queue_delay_us == winner_delay
    assert [len(t.runs) for t in result.trials] == [2, 2]
