"""How big and how fast a model is, in-process on ONNX Runtime, measured side by side with the models it is compared to.

    feeds = speed_feeds(eval_set)                     # one item alone, and a batch of up to 16
    figures = measure_models({"fp32": source, "int8": variant}, feeds)
    print(figures["int8"].size_bytes, [p.p50_ms for p in figures["int8"].speed])

Why side by side: machines of this kind vary 2-4x in speed from week to week, so a figure alone says little; rounds
interleave the models, so a busy moment slows all of them alike, and medians ignore the odd stall. The quantize gate
decides on these figures whether a variant is smaller or faster than FP32, and records them in the variant's manifest.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.quality_gate import open_session

SPEED_LARGE_BATCH = 16
SPEED_ROUNDS = 5
SPEED_SECONDS = 0.5
"""Seconds each model runs each timed batch size, split over SPEED_ROUNDS interleaved rounds."""


@dataclass(frozen=True, kw_only=True)
class SpeedPoint:
    """In-process ONNX Runtime speed at one batch size.

    Attributes:
        batch_size: items per run.
        p50_ms: median latency of one run, milliseconds.
        items_per_s: batch_size / median latency.
        runs: how many runs the median is over.
    """

    batch_size: int
    p50_ms: float
    items_per_s: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        """Return the point for a manifest."""
        return {
            "batch_size": self.batch_size,
            "p50_ms": round(self.p50_ms, 4),
            "items_per_s": round(self.items_per_s, 2),
            "runs": self.runs,
        }


def speed_feeds(eval_set: EvalSet, large_batch: int = SPEED_LARGE_BATCH) -> list[dict[str, npt.NDArray[Any]]]:
    """Real inputs to time: one item alone, and up to `large_batch` items together (when the batch has more than one).

    Both come from the evaluation set's middle batch: text sets are often sorted by length, and their first batch
    would hold the shortest sentences, where fixed per-run overhead hides the variants' differences.
    """
    middle = eval_set.batches[len(eval_set.batches) // 2]
    size = len(next(iter(middle.values())))
    feeds = [{name: array[:1] for name, array in middle.items()}]
    if min(size, large_batch) > 1:
        feeds.append({name: array[:large_batch] for name, array in middle.items()})
    return feeds


def measure_speed(
    models: Mapping[str, Path],
    feeds: Sequence[Mapping[str, npt.NDArray[Any]]],
    *,
    rounds: int = SPEED_ROUNDS,
    seconds: float = SPEED_SECONDS,
) -> dict[str, tuple[SpeedPoint, ...]]:
    """Time several models side by side: rounds interleave the models, so a busy moment slows all of them alike.

    Args:
        models: name -> ONNX file.
        feeds: the inputs to time, one per batch size.
        rounds: how many rounds; in each, every model runs every feed for `seconds / rounds` (at least once).
        seconds: the time each model spends on each feed over all rounds.

    Returns:
        name -> one SpeedPoint per feed (median latency over every run of every round).
    """
    sessions = {name: open_session(path) for name, path in models.items()}
    latencies: dict[str, list[list[float]]] = {name: [[] for _ in feeds] for name in models}
    for session in sessions.values():  # warm-up: first runs allocate and pick kernels
        for feed in feeds:
            for _ in range(2):
                session.run(None, dict(feed))
    for _ in range(rounds):
        for name, session in sessions.items():
            for index, feed in enumerate(feeds):
                inputs = dict(feed)
                deadline = time.perf_counter() + seconds / rounds
                while True:
                    started = time.perf_counter()
                    session.run(None, inputs)
                    ended = time.perf_counter()
                    latencies[name][index].append(ended - started)
                    if ended >= deadline:
                        break
    result = {}
    for name in models:
        points = []
        for index, feed in enumerate(feeds):
            batch = len(next(iter(feed.values())))
            median = statistics.median(latencies[name][index])
            points.append(
                SpeedPoint(
                    batch_size=batch,
                    p50_ms=median * 1e3,
                    items_per_s=batch / median,
                    runs=len(latencies[name][index]),
                )
            )
        result[name] = tuple(points)
    return result


@dataclass(frozen=True, kw_only=True)
class Measured:
    """One model's figures from one side-by-side run.

    Attributes:
        size_bytes: the model file's size.
        speed: one SpeedPoint per timed batch size.
    """

    size_bytes: int
    speed: tuple[SpeedPoint, ...]


def measure_models(
    models: Mapping[str, Path],
    feeds: Sequence[Mapping[str, npt.NDArray[Any]]],
    *,
    seconds: float = SPEED_SECONDS,
) -> dict[str, Measured]:
    """Measure each model's file size and, side by side (`measure_speed`), its speed on `feeds`."""
    speeds = measure_speed(models, feeds, seconds=seconds)
    return {name: Measured(size_bytes=path.stat().st_size, speed=speeds[name]) for name, path in models.items()}
