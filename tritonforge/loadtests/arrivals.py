"""Open-loop arrivals: when each request starts, independent of when earlier ones finish.

    times = arrival_schedule("poisson", 50.0, start=time.perf_counter(), seed="run-0-user-3")
    users = open_loop_users(2000.0)   # the in-flight bound a 2,000 requests/s open loop needs by default

A closed loop (each user waits for its answer) sends less when the server stalls and so hides the stall from its own
percentiles (coordinated omission). The open loop's users follow these schedules instead and measure each latency
from the scheduled start.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Literal

Arrival = Literal["constant", "poisson"]
#: The arrival schedules of the open loop.
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson")
#: Requests one open-loop user is expected to hold in flight per second of latency: the default user count
#: covers `rate x _LATENCY_ALLOWANCE_S` outstanding requests (Little's law) with room to spare.
_LATENCY_ALLOWANCE_S = 0.05
_MIN_OPEN_LOOP_USERS = 4


def open_loop_users(rate_rps: float) -> int:
    """A default in-flight bound for an open loop at `rate_rps`: room for 50 ms of latency at that rate, at least 4.

    Too few users turn an open loop back into a closed one (every user busy, requests start late); each user
    costs one gRPC channel, so the default stays near what the rate needs.
    """
    return max(_MIN_OPEN_LOOP_USERS, math.ceil(rate_rps * _LATENCY_ALLOWANCE_S))


def arrival_schedule(arrival: Arrival, rate_rps: float, *, start: float, seed: int | str) -> Iterator[float]:
    """The times at which one sender starts its requests: constant or Poisson arrivals at `rate_rps`.

    Constant arrivals begin at a seeded random phase within the first period, so that many senders sharing a
    rate spread over it instead of firing together. Poisson arrivals have exponential gaps; independent Poisson
    senders together make a Poisson stream at the sum of their rates.

    Args:
        arrival: "constant" or "poisson".
        rate_rps: this sender's rate, in requests per second.
        start: the clock reading (seconds) the schedule starts from.
        seed: seeds the generator, so a run's schedule can be repeated.

    Yields:
        Increasing clock readings, endlessly.
    """
    rng = random.Random(seed)  # noqa: S311 (a schedule, not a secret)
    if arrival == "constant":
        period = 1.0 / rate_rps
        at = start + rng.random() * period
        count = 0
        while True:  # multiplying, not adding, keeps the float error of a long run from drifting the rate
            yield at + count * period
            count += 1
    while True:
        start += rng.expovariate(rate_rps)
        yield start
