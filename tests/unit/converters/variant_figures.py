"""Injected size and speed figures for the quantize gate's decisions (tests check the decision, never a speed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tritonforge.converters.speed import Measured, SpeedPoint
from tritonforge.converters.variants import Measure

FP32_ITEMS_PER_S = 1000.0


def measure_with(*, speedup: float | Sequence[float] = 2.0, size_ratio: float | None = None) -> Measure:
    """A `measure` for quantize_to_repository: every variant runs at `speedup` x FP32 (one per timed batch size, or
    one for all) and is `size_ratio` x FP32's file size (None: its real size)."""

    def measure(models: Mapping[str, Path], feeds: Sequence[Mapping[str, Any]], *, seconds: float) -> dict[str, Any]:
        batches = [len(next(iter(feed.values()))) for feed in feeds]
        ratios = [speedup] * len(batches) if isinstance(speedup, (int, float)) else list(speedup)
        fp32_size = models["fp32"].stat().st_size
        figures = {}
        for name, path in models.items():
            points = []
            for batch, ratio in zip(batches, ratios, strict=True):
                rate = FP32_ITEMS_PER_S * (1.0 if name == "fp32" else ratio)
                points.append(SpeedPoint(batch_size=batch, p50_ms=batch / rate * 1e3, items_per_s=rate, runs=10))
            size = path.stat().st_size if size_ratio is None or name == "fp32" else int(fp32_size * size_ratio)
            figures[name] = Measured(size_bytes=size, speed=tuple(points))
        return figures

    return measure
