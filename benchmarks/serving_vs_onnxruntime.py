"""Embedded Triton against in-process ONNX Runtime on `digits`, side by side in one run.

    .venv/bin/python benchmarks/serving_vs_onnxruntime.py --seconds 5 --repeats 3

For each concurrency c (1, 8, 16), c client threads send single-image requests over gRPC to the embedded tritonserver
(the dynamic batcher groups them), and in-process ONNX Runtime runs the same model at batch size c. Both report
images/s and per-call p50/p99; the ratio column is Triton's images/s over ONNX Runtime's. The figures are medians over
`--repeats` rounds, the two sides alternating within each round so machine noise hits both. Clients, server and
ONNX Runtime share this machine's cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonforge.examples.digits import INPUT_NAME, MODEL_NAME, build_digits, load_split
from tritonforge.loadtests.closed_loop import request_batches, run_closed_loop
from tritonforge.serving.launcher import EmbeddedTriton


@dataclass(frozen=True)
class Figures:
    """Throughput and latency of one configuration."""

    images_per_s: float
    p50_ms: float
    p99_ms: float


def _figures(latencies_s: list[float], images: int, wall_s: float) -> Figures:
    lat_ms = np.asarray(latencies_s) * 1e3
    return Figures(images / wall_s, float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 99)))


def bench_onnxruntime(onnx_path: Path, images: np.ndarray, batch: int, seconds: float) -> Figures:
    """Run ONNX Runtime in this process at a fixed batch size for `seconds`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: images[:batch]}
    session.run(None, feed)  # warm-up
    latencies: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        session.run(None, feed)
        latencies.append(time.perf_counter() - t0)
    return _figures(latencies, batch * len(latencies), time.perf_counter() - started)


def bench_triton(url: str, images: np.ndarray, concurrency: int, seconds: float) -> Figures:
    """Send single-image requests from `concurrency` threads for `seconds`."""
    loop = run_closed_loop(
        url=url, model=MODEL_NAME, requests=request_batches({INPUT_NAME: images}, 1), concurrency=concurrency,
        seconds=seconds,
    )  # fmt: skip
    return Figures(loop.items_per_s, loop.p50_ms, loop.p99_ms)


def server_breakdown(url: str) -> str:
    """Triton's own statistics over the whole run: where a request's time went inside the server."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    stats = client.get_inference_statistics(MODEL_NAME).model_stats[0]
    client.close()
    requests = stats.inference_stats.success.count or 1
    per_request_us = {
        name: getattr(stats.inference_stats, name).ns / requests / 1e3
        for name in ("queue", "compute_input", "compute_infer", "compute_output")
    }
    batch = stats.inference_count / max(stats.execution_count, 1)
    parts = ", ".join(f"{name} {us:.0f} us" for name, us in per_request_us.items())
    return f"server side, per request: {parts}; average executed batch {batch:.1f}"


def main() -> None:
    """Build digits, serve it, measure both sides and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        build = build_digits(repository=Path(tmp) / "repo", weights_dir=Path(tmp))
        images = load_split().x_test
        rows: dict[int, tuple[list[Figures], list[Figures]]] = {c: ([], []) for c in args.concurrency}
        with EmbeddedTriton(repository=Path(tmp) / "repo") as server:
            for _ in range(args.repeats):
                for c in args.concurrency:
                    rows[c][0].append(bench_triton(server.grpc_url, images, c, args.seconds))
                    rows[c][1].append(bench_onnxruntime(build.exported.onnx_path, images, c, args.seconds))
            server_side = server_breakdown(server.grpc_url)

    def med(figures: list[Figures], field: str) -> float:
        return statistics.median(getattr(f, field) for f in figures)

    print(f"digits, medians of {args.repeats} rounds of {args.seconds:g}s (images/s; latency per call)")
    print(
        f"{'conc/batch':>10} | {'triton img/s':>12} {'p50 ms':>7} {'p99 ms':>7} | "
        f"{'ORT img/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'ratio':>6}"
    )
    for c, (triton, ort_) in rows.items():
        ratio = med(triton, "images_per_s") / med(ort_, "images_per_s")
        t_rate, t_p50, t_p99 = (med(triton, f) for f in ("images_per_s", "p50_ms", "p99_ms"))
        o_rate, o_p50, o_p99 = (med(ort_, f) for f in ("images_per_s", "p50_ms", "p99_ms"))
        triton_cols = f"{t_rate:>12.0f} {t_p50:>7.2f} {t_p99:>7.2f}"
        print(f"{c:>10} | {triton_cols} | {o_rate:>10.0f} {o_p50:>7.3f} {o_p99:>7.3f} | {ratio:>6.2f}")

    print(server_side)


if __name__ == "__main__":
    main()
