"""The open loop's arrival schedules and its configuration (no Locust, no server)."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import pytest

from tritonforge.errors import ConfigError
from tritonforge.loadtests.arrivals import arrival_schedule, open_loop_users
from tritonforge.loadtests.runner import LoadTestConfig


def _take(arrival: str, rate: float, count: int, *, seed: int | str = 0, start: float = 100.0) -> list[float]:
    return list(itertools.islice(arrival_schedule(arrival, rate, start=start, seed=seed), count))  # type: ignore[arg-type]


def test_poisson_schedule_has_the_target_rate_and_exponential_gaps_when_seeded() -> None:
    times = _take("poisson", 250.0, 20_000, seed=7)

    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap > 0 for gap in gaps)
    assert 1.0 / statistics.fmean(gaps) == pytest.approx(250.0, rel=0.03)
    # Exponential gaps: standard deviation equals the mean (coefficient of variation 1), unlike a constant rate.
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.05)


def test_poisson_schedule_repeats_when_the_seed_is_the_same() -> None:
    assert _take("poisson", 50.0, 100, seed="0-1-2") == _take("poisson", 50.0, 100, seed="0-1-2")
    assert _take("poisson", 50.0, 100, seed="0-1-2") != _take("poisson", 50.0, 100, seed="0-1-3")


def test_constant_schedule_has_equal_gaps_and_a_phase_within_the_first_period() -> None:
    times = _take("constant", 40.0, 4_001, seed=3, start=10.0)

    assert 10.0 <= times[0] < 10.0 + 1 / 40.0
    assert all(b - a == pytest.approx(0.025) for a, b in itertools.pairwise(times))
    assert times[-1] - times[0] == pytest.approx(100.0)  # no drift over 4,000 periods


def test_senders_sharing_a_rate_add_up_to_it_when_each_takes_its_share() -> None:
    users, rate, horizon = 16, 400.0, 20.0
    merged = sorted(
        t
        for user in range(users)
        for t in itertools.takewhile(
            lambda t: t < horizon, arrival_schedule("poisson", rate / users, start=0.0, seed=f"0-0-{user}")
        )
    )

    assert len(merged) / horizon == pytest.approx(rate, rel=0.03)
    # Seeded schedules, no clock: each second of the horizon holds its share of the arrivals (spread, not bunched).
    each_second = [sum(1 for t in merged if s <= t < s + 1) for s in range(int(horizon))]
    assert min(each_second) > 0.8 * rate


@pytest.mark.parametrize(("rate", "users"), [(1.0, 4), (200.0, 10), (2000.0, 100)])
def test_open_loop_users_cover_fifty_ms_of_latency_at_the_rate(rate: float, users: int) -> None:
    assert open_loop_users(rate) == users


def test_config_takes_poisson_when_only_a_rate_is_given(tmp_path: Path) -> None:
    config = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path, rate_rps=200.0)

    assert config.arrival == "poisson"
    assert config.open_loop is True
    assert LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path).open_loop is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"arrival": "constant"}, "needs a rate"),
        ({"arrival": "bursty", "rate_rps": 10.0}, "arrival must be one of constant, poisson"),
        ({"rate_rps": 0.0}, "rate_rps must be a finite number above 0"),
        ({"rate_rps": float("inf")}, "rate_rps must be a finite number above 0"),
        ({"rate_rps": 10.0, "late_threshold_ms": -1.0}, "late_threshold_ms must be 0 or more"),
        ({"expect_workers": 2, "master_host": "10.0.0.5"}, "either the master .* or a worker"),
        ({"expect_workers": 0}, "expect_workers must be a whole number of at least 1"),
        ({"master_port": 70000}, "master_port must be a TCP port"),
        ({"master_host": " "}, "master_host is empty"),
    ],
)
def test_config_rejects_open_loop_or_distributed_option_when_it_is_invalid(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    options: dict[str, object] = {"host": "127.0.0.1:8001", "model": "digits", "output_dir": tmp_path}
    options.update(overrides)

    with pytest.raises(ConfigError, match=message):
        LoadTestConfig(**options)  # type: ignore[arg-type]
