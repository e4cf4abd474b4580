"""A closed-loop measurement: N client threads, each sending its next request as soon as the last one returns.

    requests = request_batches({"image": images}, batch_size=8)
    figures = run_closed_loop(url="127.0.0.1:8001", model="digits", requests=requests, concurrency=4, seconds=3.0)
    print(figures.requests_per_s, figures.p50_ms, figures.p99_ms)

Used where configurations are compared side by side in one run (`tritonforge compare`, the benchmarks): short,
repeatable measurements with microsecond latencies, which Locust's stats (rounded to whole milliseconds below 100 ms)
cannot give. Threads walk through the same list of prepared requests, so every configuration sees the same data.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge.client import TritonClient
from tritonforge.errors import ClientError, ConfigError


@dataclass(frozen=True, kw_only=True)
class LoopFigures:
    """What one closed-loop run measured.

    Attributes:
        requests_per_s: successful requests per second of wall time.
        items_per_s: successful items (requests x batch size) per second.
        p50_ms: median latency of successful requests, in milliseconds.
        p99_ms: 99th percentile latency of successful requests, in milliseconds.
        p95_ms: 95th percentile latency of successful requests, in milliseconds.
        requests: successful requests.
        errors: failed requests.
    """

    requests_per_s: float
    items_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    p95_ms: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Return the figures as a JSON-ready dict."""
        return asdict(self)


def request_batches(samples: Mapping[str, npt.NDArray[Any]], batch_size: int) -> list[dict[str, npt.NDArray[Any]]]:
    """Cut whole arrays (leading axis = items) into request-sized batches; the last short batch is dropped.

    Raises:
        ConfigError: no samples, arrays of different lengths, or fewer items than one batch.
    """
    if not samples:
        raise ConfigError("no request inputs; give at least one input array")
    lengths = {len(array) for array in samples.values()}
    if len(lengths) != 1:
        raise ConfigError(f"request inputs have different lengths {sorted(lengths)}; give one row per item in each")
    total = lengths.pop()
    if total < batch_size:
        raise ConfigError(f"{total} input rows cannot make a batch of {batch_size}; give at least {batch_size} rows")
    return [
        {name: np.ascontiguousarray(array[start : start + batch_size]) for name, array in samples.items()}
        for start in range(0, total - batch_size + 1, batch_size)
    ]


def run_closed_loop(
    *,
    url: str,
    model: str,
    requests: Sequence[Mapping[str, npt.NDArray[Any]]],
    concurrency: int,
    seconds: float,
    version: str | None = None,
    timeout_s: float = 30.0,
) -> LoopFigures:
    """Drive `model` from `concurrency` threads for `seconds` and return throughput and latency.

    Each thread first sends one untimed request (metadata look-up, warm-up).

    Args:
        url: the server's gRPC address.
        model: the model to call.
        requests: the requests to send, in turn (e.g. `request_batches(samples, 8)`); items per request are
            the length of a request's first array.
        concurrency: client threads, each with its own client.
        seconds: how long to measure.
        version: the model version (None: the server's choice).
        timeout_s: each request's deadline.

    Returns:
        The run's figures; latency percentiles are NaN when no request succeeded.

    Raises:
        ConfigError: bad arguments.
    """
    if concurrency < 1 or seconds <= 0 or not requests:
        raise ConfigError("concurrency must be >= 1, seconds > 0, and there must be at least one request")
    batches = list(requests)
    latencies: list[float] = []
    items: list[int] = []
    errors: list[int] = []
    crashed: list[BaseException] = []
    lock = threading.Lock()
    clock = {"began": 0.0, "deadline": 0.0}

    def start_clock() -> None:  # runs once, when every thread is warmed up, before any is released
        clock["began"] = time.perf_counter()
        clock["deadline"] = clock["began"] + seconds

    start_line = threading.Barrier(concurrency + 1, action=start_clock)

    def drive(client: TritonClient, offset: int) -> None:
        mine: list[float] = []
        sent_items = 0
        failed = 0
        try:
            client.infer(model, batches[offset % len(batches)], version=version)
        except ClientError:
            failed += 1
        start_line.wait()
        index = offset
        while time.perf_counter() < clock["deadline"]:
            request = batches[index % len(batches)]
            started = time.perf_counter()
            try:
                client.infer(model, request, version=version)
            except ClientError:
                failed += 1
            else:
                mine.append(time.perf_counter() - started)
                sent_items += len(next(iter(request.values())))
            index += concurrency
        with lock:
            latencies.extend(mine)
            items.append(sent_items)
            errors.append(failed)

    def worker(offset: int) -> None:
        try:
            with TritonClient(url, timeout_s=timeout_s, retries=0) as client:
                drive(client, offset)
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # handed to the caller below, after the others stop
            crashed.append(exc)
            start_line.abort()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        start_line.wait()
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join()
    if crashed:
        raise crashed[0]
    wall = time.perf_counter() - clock["began"]
    lat_ms = np.asarray(latencies) * 1e3
    p50, p95, p99 = (float(np.percentile(lat_ms, q)) for q in (50, 95, 99)) if len(lat_ms) else (float("nan"),) * 3
    return LoopFigures(
        requests_per_s=len(latencies) / wall,
        items_per_s=sum(items) / wall,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        requests=len(latencies),
        errors=sum(errors),
    )


def median_figures(runs: Sequence[LoopFigures]) -> LoopFigures:
    """Combine repeated measurements of one configuration: the median of each rate and percentile, summed counts."""

    def median(name: str) -> float:
        return float(statistics.median(getattr(run, name) for run in runs))

    return LoopFigures(
        requests_per_s=median("requests_per_s"),
        items_per_s=median("items_per_s"),
        p50_ms=median("p50_ms"),
        p95_ms=median("p95_ms"),
        p99_ms=median("p99_ms"),
        requests=sum(run.requests for run in runs),
        errors=sum(run.errors for run in runs),
    )
