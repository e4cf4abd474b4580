from __future__ import annotations

import random

import pytest

from tritonforge.client import Deadline, RetryPolicy
from tritonforge.errors import ConfigError


def test_retry_policy_gives_up_when_retries_spent() -> None:
    policy = RetryPolicy(retries=2, backoff_s=0.01, backoff_max_s=1.0)
    deadline = Deadline.after(timeout_s=60.0)
    assert policy.next_delay(attempt=0, deadline=deadline) is not None
    assert policy.next_delay(attempt=1, deadline=deadline) is not None
    assert policy.next_delay(attempt=2, deadline=deadline) is None


def test_retry_policy_never_retries_when_retries_zero() -> None:
    policy = RetryPolicy(retries=0, backoff_s=0.01, backoff_max_s=1.0)
    assert policy.next_delay(attempt=0, deadline=Deadline.after(timeout_s=60.0)) is None


def test_retry_policy_draws_delay_within_capped_exponential_when_jittered() -> None:
    random.seed(1)
    policy = RetryPolicy(retries=20, backoff_s=0.1, backoff_max_s=0.5)
    deadline = Deadline.after(timeout_s=600.0)
    for attempt in range(10):
        delays = [policy.next_delay(attempt=attempt, deadline=deadline) for _ in range(50)]
        bound = min(0.5, 0.1 * 2**attempt)
        assert all(d is not None and 0.0 <= d <= bound for d in delays)
        assert len(set(delays)) > 1  # jittered, not a fixed schedule


def test_retry_policy_gives_up_when_delay_would_pass_deadline() -> None:
    policy = RetryPolicy(retries=5, backoff_s=100.0, backoff_max_s=100.0)
    expired = Deadline(timeout_s=1.0, expires_at=0.0)
    assert policy.next_delay(attempt=0, deadline=expired) is None


def test_deadline_rejects_timeout_when_not_positive() -> None:
    with pytest.raises(ConfigError, match="timeout_s must be > 0"):
        Deadline.after(timeout_s=0.0)


def test_deadline_reports_expired_when_time_passed() -> None:
    assert Deadline(timeout_s=1.0, expires_at=0.0).expired()
    assert Deadline(timeout_s=1.0, expires_at=0.0).remaining_s() == 0.0
    assert not Deadline.after(timeout_s=60.0).expired()


def test_retry_policy_rejects_negative_values_when_built() -> None:
    with pytest.raises(ConfigError, match="must be >= 0"):
        RetryPolicy(retries=-1, backoff_s=0.1, backoff_max_s=1.0)
