from __future__ import annotations

import random
import threading

import pytest
from client_fakes import FakeClock

from tritonforge.client import Deadline, RetryBudget, RetryPolicy
from tritonforge.client.retry import costs_retry_token, is_retryable
from tritonforge.errors import (
    ClientError,
    ConfigError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerOverloadedError,
    ServerUnavailableError,
)


def _deadline(clock: FakeClock, timeout_s: float) -> Deadline:
    return Deadline.after(timeout_s=timeout_s, clock=clock)


def test_retry_policy_gives_up_when_capped_retries_spent() -> None:
    policy = RetryPolicy(retries=2, backoff_s=0.01, backoff_max_s=1.0)
    deadline = _deadline(FakeClock(), 60.0)
    assert policy.next_delay(attempt=0, deadline=deadline) is not None
    assert policy.next_delay(attempt=1, deadline=deadline) is not None
    assert policy.next_delay(attempt=2, deadline=deadline) is None


def test_retry_policy_retries_until_deadline_when_uncapped() -> None:
    policy = RetryPolicy(backoff_s=0.05, backoff_max_s=1.0, rng=random.Random(0))
    assert policy.retries is None
    clock = FakeClock()
    deadline = _deadline(clock, 10.0)
    attempt = 0
    while (delay := policy.next_delay(attempt=attempt, deadline=deadline)) is not None:
        clock.sleep(delay)
        attempt += 1
    assert attempt > 10
    assert deadline.remaining_s() == pytest.approx(policy.min_attempt_s)  # the last wait left room for one attempt


def test_retry_policy_shortens_last_wait_when_draw_would_pass_deadline() -> None:
    policy = RetryPolicy(backoff_s=100.0, backoff_max_s=100.0, min_attempt_s=0.01, rng=random.Random(1))
    deadline = _deadline(FakeClock(), 0.5)
    delay = policy.next_delay(attempt=3, deadline=deadline)
    assert delay == pytest.approx(0.49)


def test_retry_policy_never_retries_when_retries_zero() -> None:
    policy = RetryPolicy(retries=0, backoff_s=0.01, backoff_max_s=1.0)
    assert policy.next_delay(attempt=0, deadline=_deadline(FakeClock(), 60.0)) is None


def test_retry_policy_draws_delay_within_capped_exponential_when_jittered() -> None:
    policy = RetryPolicy(backoff_s=0.1, backoff_max_s=0.5, rng=random.Random(1))
    deadline = _deadline(FakeClock(), 600.0)
    for attempt in (*range(10), 5000):
        delays = [policy.next_delay(attempt=attempt, deadline=deadline) for _ in range(50)]
        bound = min(0.5, 0.1 * 2.0 ** min(attempt, 60))
        assert all(d is not None and 0.0 <= d <= bound for d in delays)
        assert len(set(delays)) > 1  # jittered, not a fixed schedule


def test_retry_policy_gives_up_when_too_little_time_left() -> None:
    policy = RetryPolicy(min_attempt_s=0.01)
    clock = FakeClock()
    deadline = _deadline(clock, 1.0)
    clock.sleep(0.995)
    assert policy.next_delay(attempt=0, deadline=deadline) is None
    assert policy.next_delay(attempt=0, deadline=Deadline(timeout_s=1.0, expires_at=0.0)) is None


def test_deadline_rejects_timeout_when_not_positive() -> None:
    with pytest.raises(ConfigError, match="timeout_s must be > 0"):
        Deadline.after(timeout_s=0.0)


def test_deadline_reports_expired_when_time_passed() -> None:
    clock = FakeClock()
    deadline = _deadline(clock, 2.0)
    assert deadline.remaining_s() == 2.0 and not deadline.expired()
    clock.sleep(2.5)
    assert deadline.expired()
    assert deadline.remaining_s() == 0.0
    assert Deadline(timeout_s=1.0, expires_at=0.0).expired()  # on the real monotonic clock


@pytest.mark.parametrize(
    "kwargs", [{"retries": -1}, {"backoff_s": -0.1}, {"backoff_max_s": -1.0}, {"min_attempt_s": -1.0}]
)
def test_retry_policy_rejects_negative_values_when_built(kwargs) -> None:
    with pytest.raises(ConfigError, match="must be >= 0"):
        RetryPolicy(**kwargs)


def test_retry_budget_allows_retries_while_more_than_half_left() -> None:
    budget = RetryBudget(max_tokens=4, token_ratio=0.5)
    assert budget.allows_retry()
    budget.record_failure()
    assert budget.tokens == 3.0 and budget.allows_retry()
    budget.record_failure()
    assert budget.tokens == 2.0 and not budget.allows_retry()  # exactly half: no retry (gRPC's rule)
    budget.record_success()
    assert budget.tokens == 2.5 and budget.allows_retry()


def test_retry_budget_stays_within_zero_and_max_when_many_events() -> None:
    budget = RetryBudget(max_tokens=3, token_ratio=1.0)
    for _ in range(10):
        budget.record_failure()
    assert budget.tokens == 0.0
    for _ in range(10):
        budget.record_success()
    assert budget.tokens == 3.0
    assert repr(budget) == "RetryBudget(tokens=3/3, token_ratio=1)"


def test_retry_budget_counts_every_event_when_threads_share_it() -> None:
    budget = RetryBudget(max_tokens=1000, token_ratio=1.0)

    def fail() -> None:
        for _ in range(100):
            budget.record_failure()

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.tokens == 200.0


@pytest.mark.parametrize("kwargs", [{"max_tokens": 0}, {"max_tokens": 1001}, {"token_ratio": 0}, {"token_ratio": 1.5}])
def test_retry_budget_rejects_parameters_when_out_of_grpc_range(kwargs) -> None:
    with pytest.raises(ConfigError, match="retry budget"):
        RetryBudget(**kwargs)


@pytest.mark.parametrize(
    ("error", "retryable", "costs"),
    [
        (ServerUnavailableError("u", "stopping"), True, True),
        (ServerUnavailableError("u", "refused", connected=False), True, False),
        (ModelNotReadyError("m", None, "has no available versions", transient=True), True, True),
        (ModelNotReadyError("m", None, "is not found"), False, False),
        (ServerOverloadedError("u", "m", "queue full"), False, True),
        (InferenceTimeoutError("m", 1.0, shed_by_server=True), False, True),
        (InferenceTimeoutError("m", 1.0), False, False),
        (InvalidInputError("bad shape"), False, False),
        (InferenceError("boom"), False, False),
        (ClientError("TLS handshake failed"), False, False),
    ],
)
def test_retry_classification_matches_what_a_retry_can_fix(error, retryable, costs) -> None:
    assert is_retryable(error) is retryable
    assert costs_retry_token(error) is costs
