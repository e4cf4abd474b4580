"""Deadlines and jittered exponential backoff shared by the sync and asyncio clients.

    deadline = Deadline.after(timeout_s=2.0)
    policy = RetryPolicy(retries=3, backoff_s=0.05, backoff_max_s=2.0)
    delay = policy.next_delay(attempt=0, deadline=deadline)   # None: give up now

Only ServerUnavailableError (gRPC UNAVAILABLE: the request never reached a model) is retried; every other error
is final, because repeating an invalid or half-run request cannot help and may do harm.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from tritonforge.errors import ConfigError

__all__ = ["Deadline", "RetryPolicy"]


@dataclass(frozen=True, kw_only=True)
class Deadline:
    """A point on the monotonic clock by which a call, retries included, must finish.

    Attributes:
        timeout_s: the budget the deadline was made from, for messages.
        expires_at: `time.monotonic()` value at which the budget is spent.
    """

    timeout_s: float
    expires_at: float

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {self.timeout_s}")

    @classmethod
    def after(cls, *, timeout_s: float) -> Deadline:
        """A deadline `timeout_s` seconds from now."""
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        return cls(timeout_s=timeout_s, expires_at=time.monotonic() + timeout_s)

    def remaining_s(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - time.monotonic())

    def expired(self) -> bool:
        """Whether the budget is spent."""
        return self.remaining_s() <= 0.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry an UNAVAILABLE call.

    Attributes:
        retries: extra attempts after the first; 0 never retries.
        backoff_s: base of the exponential backoff.
        backoff_max_s: cap on one wait.
    """

    retries: int
    backoff_s: float
    backoff_max_s: float

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_s < 0 or self.backoff_max_s < 0:
            raise ConfigError(
                f"retries ({self.retries}), backoff_s ({self.backoff_s}) and backoff_max_s ({self.backoff_max_s}) "
                "must be >= 0"
            )

    def next_delay(self, *, attempt: int, deadline: Deadline) -> float | None:
        """The wait before retry number `attempt + 1`, or None when no retry is left or it would miss the deadline.

        "Full jitter" (a uniform draw up to the capped exponential) keeps many clients that failed together from
        retrying in lockstep against a server that is coming back.

        Args:
            attempt: how many retries were already made (0 after the first failure).
            deadline: the call's deadline; a wait that would leave no time for the next attempt is refused.

        Returns:
            Seconds to sleep, or None to give up and raise the last error.
        """
        if attempt >= self.retries:
            return None
        delay = random.uniform(0.0, min(self.backoff_max_s, self.backoff_s * 2**attempt))
        if delay >= deadline.remaining_s():
            return None
        return delay
