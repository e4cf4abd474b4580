"""Deadlines, jittered exponential backoff and a retry budget, shared by the sync and asyncio clients.

    deadline = Deadline.after(timeout_s=2.0)
    policy = RetryPolicy(backoff_s=0.05, backoff_max_s=1.0)      # retries=None: as many as the deadline allows
    budget = RetryBudget(max_tokens=10, token_ratio=1.0)         # one per client, shared by all its calls
    if is_retryable(error) and budget.allows_retry():
        delay = policy.next_delay(attempt=0, deadline=deadline)  # None: give up now

What is retried: a server that is unreachable or stopping (ServerUnavailableError) and a model the server knows but
is reloading (ModelNotReadyError with transient=True), i.e. failures where the request did not run and a moment
later, or another server behind the same channel, can answer. Everything else is final: a bad request stays bad, a
full queue (ServerOverloadedError) must not be answered with more load, and an expired deadline is spent.

Why retries run until the deadline instead of a small fixed count: a restart of tritonserver takes seconds, and
three quick retries spent in a few hundred milliseconds lost requests whose caller would have waited ten seconds.
The budget is what keeps "until the deadline" from multiplying load on a failing server (below).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tritonforge.errors import (
    ClientError,
    ConfigError,
    InferenceTimeoutError,
    ModelNotReadyError,
    ServerOverloadedError,
    ServerUnavailableError,
)

__all__ = ["Clock", "Deadline", "RetryBudget", "RetryPolicy", "costs_retry_token", "is_retryable"]

Clock = Callable[[], float]
"""A monotonic clock in seconds (`time.monotonic`); tests pass a fake one."""

# Backoff grows as base * 2**attempt; past this exponent it is far above any cap, and 2**attempt must stay a float.
_MAX_EXPONENT = 60


@dataclass(frozen=True, kw_only=True)
class Deadline:
    """A point on a monotonic clock by which a call, retries included, must finish.

    Attributes:
        timeout_s: the budget the deadline was made from, for messages.
        expires_at: the clock's value at which the budget is spent.
        clock: the clock `expires_at` is on (default `time.monotonic`).
    """

    timeout_s: float
    expires_at: float
    clock: Clock = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {self.timeout_s}")

    @classmethod
    def after(cls, *, timeout_s: float, clock: Clock = time.monotonic) -> Deadline:
        """A deadline `timeout_s` seconds from now on `clock`."""
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        return cls(timeout_s=timeout_s, expires_at=clock() + timeout_s, clock=clock)

    def remaining_s(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - self.clock())

    def expired(self) -> bool:
        """Whether the budget is spent."""
        return self.remaining_s() <= 0.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How patiently to retry: full-jitter exponential backoff, within the call's deadline.

    Attributes:
        retries: optional cap on extra attempts after the first; None retries for as long as the deadline allows;
            0 never retries.
        backoff_s: base of the exponential backoff.
        backoff_max_s: cap on one wait, so that a server that came back is noticed within this long.
        min_attempt_s: the least time worth giving an attempt; a wait that would leave less is shortened, and with
            less than this left the call gives up.
        rng: the random source of the jitter (tests pass a seeded one).
    """

    retries: int | None = None
    backoff_s: float = 0.05
    backoff_max_s: float = 1.0
    min_attempt_s: float = 0.01
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.retries is not None and self.retries < 0) or min(
            self.backoff_s, self.backoff_max_s, self.min_attempt_s
        ) < 0:
            raise ConfigError(
                f"retries ({self.retries}), backoff_s ({self.backoff_s}), backoff_max_s ({self.backoff_max_s}) and "
                f"min_attempt_s ({self.min_attempt_s}) must be >= 0"
            )

    def next_delay(self, *, attempt: int, deadline: Deadline) -> float | None:
        """The wait before retry number `attempt + 1`, or None when the cap or the deadline leaves no retry.

        "Full jitter" (a uniform draw up to the capped exponential) keeps many clients that failed together from
        retrying in lockstep against a server that is coming back. A draw longer than the time left is shortened so
        that one last attempt still gets `min_attempt_s`: the deadline is spent trying, not sleeping.

        Args:
            attempt: how many retries were already made (0 after the first failure).
            deadline: the call's deadline.

        Returns:
            Seconds to sleep, or None to give up and raise the last error.
        """
        if self.retries is not None and attempt >= self.retries:
            return None
        room = deadline.remaining_s() - self.min_attempt_s
        if room <= 0:
            return None
        delay = self.rng.uniform(0.0, min(self.backoff_max_s, self.backoff_s * 2.0 ** min(attempt, _MAX_EXPONENT)))
        return min(delay, room)


class RetryBudget:
    """Retry throttling as gRPC defines it (gRFC A6): a token bucket shared by every call of one client.

    The bucket starts full at `max_tokens`. Each failed attempt that reached a server costs one token, each success
    returns `token_ratio`, and retries are allowed only while more than half the tokens are left. A server that
    fails every call therefore gets about one attempt per request once `max_tokens / 2` failures have drained the
    bucket, however long the deadlines are; retries resume as soon as successes refill it.

    Failures that put no load on a server (no connection could be made) cost nothing: a client whose only server is
    restarting keeps retrying within its deadline without spending the budget.

    Args:
        max_tokens: size of the bucket, in (0, 1000] as in gRPC.
        token_ratio: tokens a success returns, in (0, 1]. With N servers behind round robin, a rolling restart fails
            about 1/N of first attempts while their retries succeed elsewhere, so the budget holds only if
            token_ratio >= 1/(N-1); 1.0 covers any N >= 2. gRPC's examples use 0.1, which lets retries be at most
            a tenth of successful traffic but loses requests when one of two servers restarts.

    Raises:
        ConfigError: a parameter is out of range.
    """

    def __init__(self, *, max_tokens: float = 10.0, token_ratio: float = 1.0) -> None:
        if not 0 < max_tokens <= 1000 or not 0 < token_ratio <= 1:
            raise ConfigError(
                f"retry budget needs 0 < max_tokens <= 1000 and 0 < token_ratio <= 1, got {max_tokens} and "
                f"{token_ratio}"
            )
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self._tokens = self.max_tokens
        self._lock = threading.Lock()  # shared by the threads of one sync client

    @property
    def tokens(self) -> float:
        """Tokens left."""
        return self._tokens

    def allows_retry(self) -> bool:
        """Whether a failed call may be retried now (more than half the tokens left)."""
        return self._tokens > self.max_tokens / 2

    def record_failure(self) -> None:
        """Book an attempt that a server answered with a failure (costs one token)."""
        with self._lock:
            self._tokens = max(0.0, self._tokens - 1.0)

    def record_success(self) -> None:
        """Book a successful attempt (returns `token_ratio` tokens)."""
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.token_ratio)

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self._tokens:g}/{self.max_tokens:g}, token_ratio={self.token_ratio:g})"


def is_retryable(error: ClientError) -> bool:
    """Whether the request did not run and may succeed if sent again: unreachable or stopping server, reloading model.

    Args:
        error: a mapped error (see `grpc_errors`).

    Returns:
        True for ServerUnavailableError and for ModelNotReadyError with transient=True.
    """
    if isinstance(error, ServerUnavailableError):
        return True
    return isinstance(error, ModelNotReadyError) and error.transient


def costs_retry_token(error: ClientError) -> bool:
    """Whether a failure is evidence of an unhealthy server, and so drains the retry budget.

    Args:
        error: a mapped error.

    Returns:
        True for failures a server answered (unavailable or stopping, reloading, overloaded, shedding past the
        deadline); False for a failed connection (no server was loaded) and for errors of the request itself.
    """
    if isinstance(error, ServerUnavailableError):
        return error.connected
    if isinstance(error, ModelNotReadyError):
        return error.transient
    if isinstance(error, InferenceTimeoutError):
        return error.shed_by_server
    return isinstance(error, ServerOverloadedError)
