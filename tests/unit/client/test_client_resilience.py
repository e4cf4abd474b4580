"""Retries until the deadline, the shared retry budget and the server-side timeout, for both clients.

Time is a FakeClock that moves only when the client sleeps, so every assertion is about behaviour (how many
attempts, how much of the deadline was spent waiting), never about how fast this machine is.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from client_fakes import (
    CONNECT_REFUSED,
    DIGITS,
    QUEUE_FULL,
    RELOADING,
    SERVER_STOPPING,
    SHED,
    UNKNOWN_MODEL,
    AsyncFakeTriton,
    FakeClock,
    FakeRpcError,
    FakeTriton,
    images,
    server_error,
)

from tritonforge.client import AsyncTritonClient, TritonClient
from tritonforge.errors import (
    InferenceTimeoutError,
    ModelNotReadyError,
    ServerOverloadedError,
    ServerUnavailableError,
)

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
NOT_FOUND = grpc.StatusCode.NOT_FOUND
START = 1000.0


@dataclass
class Harness:
    """One client (sync or async) on a fake server and a fake clock; `call` runs a method either way."""

    client: TritonClient | AsyncTritonClient
    fake: FakeTriton
    clock: FakeClock

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        return asyncio.run(result) if asyncio.iscoroutine(result) else result

    def infer(self, **kwargs: Any) -> Any:
        return self.call("infer", DIGITS, {"image": images()}, **kwargs)

    @property
    def elapsed(self) -> float:
        return self.clock.now - START


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest, fake: FakeTriton) -> Callable[..., Harness]:
    def build(**overrides: Any) -> Harness:
        clock = FakeClock(now=START)
        if request.param == "sync":
            client: TritonClient | AsyncTritonClient = TritonClient(
                "127.0.0.1:8001",
                transport_factory=lambda settings: fake,
                clock=clock,
                sleep=clock.sleep,
                rng=random.Random(7),
                **overrides,
            )
        else:
            client = AsyncTritonClient(
                "127.0.0.1:8001",
                transport_factory=lambda settings: AsyncFakeTriton(fake),
                clock=clock,
                sleep=clock.async_sleep,
                rng=random.Random(7),
                **overrides,
            )
        return Harness(client=client, fake=fake, clock=clock)

    return build


def _warm(h: Harness) -> None:
    """Fill the metadata cache, so that the following calls are infer calls only."""
    h.call("model_signature", DIGITS)


def test_infer_rides_out_outage_when_server_back_before_deadline(make) -> None:
    h = make(timeout_s=10.0)
    _warm(h)
    h.fake.fail_until(h.clock, START + 7.5, lambda: server_error(UNAVAILABLE, CONNECT_REFUSED))
    outputs = h.infer()
    assert outputs["logits"].shape == (2, 10)
    assert 7.5 <= h.elapsed < 10.0
    assert h.fake.count("infer") > 4  # more than the old fixed three retries


def test_infer_spends_whole_deadline_when_server_never_comes_back(make) -> None:
    h = make(timeout_s=10.0)
    _warm(h)
    h.fake.fail_until(h.clock, float("inf"), lambda: server_error(UNAVAILABLE, CONNECT_REFUSED))
    with pytest.raises(ServerUnavailableError, match="Connection refused") as info:
        h.infer()
    assert info.value.connected is False
    assert h.elapsed == pytest.approx(10.0, abs=0.02)  # waited until its deadline, not a few hundred ms
    assert max(h.clock.sleeps) <= 1.0  # backoff_max_s


def test_infer_backs_off_exponentially_with_jitter_when_retrying(make) -> None:
    h = make(timeout_s=60.0, backoff_s=0.05, backoff_max_s=1.0)
    _warm(h)
    h.fake.fail("infer", *[server_error(UNAVAILABLE, CONNECT_REFUSED) for _ in range(12)])
    h.infer()
    assert len(h.clock.sleeps) == 12
    for attempt, slept in enumerate(h.clock.sleeps):
        assert 0.0 <= slept <= min(1.0, 0.05 * 2**attempt)
    assert len(set(h.clock.sleeps)) == 12  # drawn, not a fixed schedule


def test_infer_stops_at_retry_cap_when_retries_set(make) -> None:
    h = make(timeout_s=60.0, retries=2)
    _warm(h)
    h.fake.fail_until(h.clock, float("inf"), lambda: server_error(UNAVAILABLE, CONNECT_REFUSED))
    with pytest.raises(ServerUnavailableError):
        h.infer()
    assert h.fake.count("infer") == 3


def test_infer_makes_one_attempt_when_retries_zero(make) -> None:
    h = make(retries=0)
    _warm(h)
    h.fake.fail("infer", server_error(UNAVAILABLE, SERVER_STOPPING))
    with pytest.raises(ServerUnavailableError, match="Server is stopping"):
        h.infer()
    assert h.fake.count("infer") == 1
    assert h.clock.sleeps == []


@pytest.mark.parametrize(
    "error",
    [
        server_error(UNAVAILABLE, SERVER_STOPPING),
        server_error(NOT_FOUND, RELOADING),
        FakeRpcError(grpc.StatusCode.CANCELLED, "CANCELLED"),
        FakeRpcError(UNAVAILABLE, CONNECT_REFUSED),
    ],
    ids=["stopping", "reloading", "cancelled-by-server", "not-connected"],
)
def test_infer_retries_then_succeeds_when_failure_is_a_restart(make, error) -> None:
    h = make()
    _warm(h)
    h.fake.fail("infer", error)
    assert h.infer()["logits"].shape == (2, 10)
    assert h.fake.count("infer") == 2


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (server_error(UNAVAILABLE, QUEUE_FULL), ServerOverloadedError),
        (server_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full"), ServerOverloadedError),
        (server_error(UNAVAILABLE, SHED), InferenceTimeoutError),
        (server_error(NOT_FOUND, UNKNOWN_MODEL), ModelNotReadyError),
    ],
    ids=["queue-full", "resource-exhausted", "shed-past-timeout", "unknown-model"],
)
def test_infer_never_retries_when_server_is_overloaded_or_model_unknown(make, error, expected) -> None:
    h = make()
    _warm(h)
    h.fake.fail("infer", error, error)
    with pytest.raises(expected):
        h.infer()
    assert h.fake.count("infer") == 1


def test_retry_budget_stops_retries_when_server_fails_every_call(make) -> None:
    h = make(timeout_s=60.0, retry_max_tokens=4)
    _warm(h)
    h.fake.fail_until(h.clock, float("inf"), lambda: server_error(UNAVAILABLE, SERVER_STOPPING))
    with pytest.raises(ServerUnavailableError):
        h.infer()
    assert h.fake.count("infer") == 2  # 4 -> 3 tokens (retry allowed: 3 > 2), 3 -> 2 (no more)
    with pytest.raises(ServerUnavailableError):
        h.infer()
    assert h.fake.count("infer") == 3  # one attempt per request from now on, however long the deadline
    assert h.client.retry_budget.tokens == 1.0


def test_retry_budget_refills_when_calls_succeed(make) -> None:
    h = make(timeout_s=60.0, retry_max_tokens=4, retry_token_ratio=0.5)
    _warm(h)
    h.fake.fail("infer", *[server_error(UNAVAILABLE, SERVER_STOPPING) for _ in range(3)])
    for _ in range(2):  # fail, retry, fail (4 -> 2 tokens); then fail at once (2 -> 1)
        with pytest.raises(ServerUnavailableError):
            h.infer()
    assert h.client.retry_budget.tokens == 1.0
    for _ in range(5):
        h.infer()
    assert h.client.retry_budget.tokens == 3.5
    h.fake.fail("infer", server_error(UNAVAILABLE, SERVER_STOPPING))
    assert h.infer()["logits"].shape == (2, 10)  # the failure leaves 2.5 > 2: retried again


def test_retry_budget_is_not_spent_when_no_connection_could_be_made(make) -> None:
    h = make(timeout_s=10.0, retry_max_tokens=4)
    _warm(h)
    h.fake.fail_until(h.clock, START + 5.0, lambda: server_error(UNAVAILABLE, CONNECT_REFUSED))
    h.infer()
    assert h.fake.count("infer") > 3
    assert h.client.retry_budget.tokens == 4.0


def test_retry_budget_charges_overload_when_queue_full(make) -> None:
    h = make(retry_max_tokens=4)
    _warm(h)
    h.fake.fail("infer", server_error(UNAVAILABLE, QUEUE_FULL))
    with pytest.raises(ServerOverloadedError):
        h.infer()
    assert h.client.retry_budget.tokens == 3.0


def test_retry_budget_is_shared_when_one_client_makes_many_calls(make) -> None:
    h = make(timeout_s=60.0, retry_max_tokens=10)
    _warm(h)
    h.fake.fail_until(h.clock, float("inf"), lambda: server_error(UNAVAILABLE, SERVER_STOPPING))
    attempts = []
    for _ in range(5):
        before = h.fake.count("infer")
        with pytest.raises(ServerUnavailableError):
            h.infer()
        attempts.append(h.fake.count("infer") - before)
    assert sum(attempts) == 5 + 4  # five requests, four retries in all: 10 -> 5 tokens, then no more
    assert attempts[-1] == 1


def test_infer_tells_server_the_time_left_minus_margin_when_sending(make) -> None:
    h = make(server_timeout_margin_s=0.05)
    h.call("infer", DIGITS, {"image": images()}, timeout_s=2.0)
    kwargs = h.fake.calls[-1][1]
    assert kwargs["client_timeout"] == pytest.approx(2.0)
    assert kwargs["timeout"] == 1_950_000  # microseconds: the server gives up 50 ms before the client does


def test_infer_gives_server_half_the_time_when_deadline_shorter_than_margin(make) -> None:
    h = make(server_timeout_margin_s=0.05)
    _warm(h)
    h.call("infer", DIGITS, {"image": images()}, timeout_s=0.004)
    assert h.fake.calls[-1][1]["timeout"] == 2_000


def test_infer_sends_shrinking_timeout_when_retrying(make) -> None:
    h = make(timeout_s=10.0, server_timeout_margin_s=0.0)
    _warm(h)
    h.fake.fail("infer", server_error(UNAVAILABLE, SERVER_STOPPING))
    h.infer()
    first, second = (kwargs for name, kwargs in h.fake.calls if name == "infer")
    assert first["timeout"] == 10_000_000
    assert second["timeout"] == pytest.approx((10.0 - h.elapsed) * 1e6, abs=1)
    assert second["client_timeout"] == pytest.approx(10.0 - h.elapsed)


def test_metadata_lookup_retries_when_model_reloading(make) -> None:
    h = make()
    h.fake.fail("get_model_metadata", server_error(NOT_FOUND, RELOADING), server_error(NOT_FOUND, RELOADING))
    assert h.infer()["logits"].shape == (2, 10)
    assert h.fake.count("get_model_metadata") == 3


def test_reloading_model_raises_transient_model_not_ready_when_deadline_spent(make) -> None:
    h = make(timeout_s=3.0, retry_max_tokens=1000)
    _warm(h)
    h.fake.fail_until(h.clock, float("inf"), lambda: server_error(NOT_FOUND, RELOADING))
    with pytest.raises(ModelNotReadyError, match="has no available versions") as info:
        h.infer()
    assert info.value.transient is True
    assert h.elapsed == pytest.approx(3.0, abs=0.02)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_deadline_passed_while_backing_off_raises_the_last_error_when_host_oversleeps(
    kind: str, fake: FakeTriton
) -> None:
    """On a busy host a backoff sleep can overshoot the deadline: the caller still learns why the calls failed."""
    clock = FakeClock(now=START)

    def oversleep(seconds: float) -> None:
        clock.sleep(seconds + 2.0)

    async def async_oversleep(seconds: float) -> None:
        oversleep(seconds)

    fake.fail_until(clock, float("inf"), lambda: server_error(UNAVAILABLE, CONNECT_REFUSED))
    if kind == "sync":
        with TritonClient("127.0.0.1:8001", transport_factory=lambda s: fake, clock=clock, sleep=oversleep,
                          timeout_s=1.0) as client:  # fmt: skip
            with pytest.raises(ServerUnavailableError, match="Connection refused"):
                client.model_signature(DIGITS)
    else:

        async def run() -> None:
            client = AsyncTritonClient(
                "127.0.0.1:8001", transport_factory=lambda s: AsyncFakeTriton(fake), clock=clock,
                sleep=async_oversleep, timeout_s=1.0,
            )  # fmt: skip
            try:
                await client.model_signature(DIGITS)
            finally:
                await client.close()

        with pytest.raises(ServerUnavailableError, match="Connection refused"):
            asyncio.run(run())
    assert fake.count("get_model_metadata") == 1
