"""What the prediction log costs the client: p99 and throughput at concurrency 16, logging off vs on vs dead sink.

Side by side in one run against the embedded Triton serving `digits`; logging on is sample rate 1.0 into Parquet.

    .venv/bin/python benchmarks/monitor_logging.py --rounds 3 --seconds 10

Rounds interleave the three modes (their order rotates each round) so that drifts of the machine's speed fall on
every mode alike; the table shows medians over rounds. Every thread has its own TritonClient (as service workers
would) and the threads of a mode share one PredictionLogger. The dead sink is a Parquet folder below a regular file,
so every write fails: the figure to read there is failed requests (must be 0) and the drops counted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tritonforge.client import TritonClient
from tritonforge.monitoring.logger import LoggerStats, PredictionLogger
from tritonforge.monitoring.parquet_sink import ParquetSink

MODEL = "digits"
MODES = ("off", "on", "dead sink")


@dataclass(frozen=True)
class Round:
    """One mode's measurement in one round."""

    mode: str
    requests: int
    failed: int
    seconds: float
    p50_ms: float
    p99_ms: float
    stats: LoggerStats | None

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.failed) / self.seconds


def _logger(mode: str, folder: Path) -> PredictionLogger | None:
    if mode == "off":
        return None
    if mode == "on":
        return PredictionLogger(ParquetSink(folder / "log"), sample_rate=1.0)
    blocker = folder / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    return PredictionLogger(ParquetSink(blocker / "log"), sample_rate=1.0)


def _run(url: str, mode: str, images: np.ndarray, *, concurrency: int, seconds: float, folder: Path) -> Round:
    logger = _logger(mode, folder)
    clients = [TritonClient(url, timeout_s=10.0, prediction_log=logger) for _ in range(concurrency)]
    for client in clients:
        client.infer(MODEL, {"image": images[:1]})  # metadata cached, channel open
    latencies: list[list[float]] = [[] for _ in clients]
    failures = [0] * concurrency
    start_gate = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def work(k: int) -> None:
        client, mine = clients[k], latencies[k]
        start_gate.wait()
        i = k
        while time.perf_counter() < stop_at[0]:
            batch = images[i % len(images)][None]
            i += concurrency
            t0 = time.perf_counter()
            try:
                client.infer(MODEL, {"image": batch}, attributes={"worker": str(k)})
            except Exception:  # noqa: BLE001 - counted: the figure is how many failed
                failures[k] += 1
            mine.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start_gate.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for client in clients:
        client.close()
    stats = None
    if logger is not None:
        logger.close()
        stats = logger.stats()
    merged = np.concatenate([np.asarray(x) for x in latencies]) * 1e3
    return Round(
        mode=mode, requests=len(merged), failed=sum(failures), seconds=elapsed,
        p50_ms=float(np.percentile(merged, 50)), p99_ms=float(np.percentile(merged, 99)), stats=stats,
    )  # fmt: skip


def _table(rounds: list[Round]) -> str:
    lines = [
        "| logging | requests/s | p50 ms | p99 ms | failed requests | logged | written | dropped (queue full) |"
        " dropped (sink error) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        mine = [r for r in rounds if r.mode == mode]
        stats = [r.stats for r in mine if r.stats is not None]

        def total(field: str, stats: list[LoggerStats] = stats) -> str:
            return str(sum(getattr(s, field) for s in stats)) if stats else "-"

        logged, written = total("logged"), total("written")
        full, sink = total("dropped_queue_full"), total("dropped_sink_error")
        lines.append(
            f"| {mode} | {statistics.median(r.throughput for r in mine):.0f} |"
            f" {statistics.median(r.p50_ms for r in mine):.2f} | {statistics.median(r.p99_ms for r in mine):.2f} |"
            f" {sum(r.failed for r in mine)} | {logged} | {written} | {full} | {sink} |"
        )
    off = [r for r in rounds if r.mode == "off"]
    on = [r for r in rounds if r.mode == "on"]
    p99_ratio = statistics.median(r.p99_ms for r in on) / statistics.median(r.p99_ms for r in off)
    rps_ratio = statistics.median(r.throughput for r in on) / statistics.median(r.throughput for r in off)
    per_round = ", ".join(f"{b.p99_ms / a.p99_ms:.3f}" for a, b in zip(off, on, strict=True))
    lines.append("")
    lines.append(
        f"logging on vs off: p99 x{p99_ratio:.3f} ({(p99_ratio - 1) * 100:+.1f}%), throughput x{rps_ratio:.3f}"
        f" ({(rps_ratio - 1) * 100:+.1f}%); p99 ratio per round: {per_round}"
    )
    return "\n".join(lines)


def main() -> None:
    """Build and serve digits, measure the three modes in interleaved rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    from tritonforge.examples.digits import build_digits, load_split
    from tritonforge.serving.launcher import EmbeddedTriton

    with tempfile.TemporaryDirectory(prefix="tf-monitor-bench-") as tmp:
        root = Path(tmp)
        build_digits(repository=root / "model_repository", weights_dir=root / "build")
        images = np.ascontiguousarray(load_split().x_test, dtype=np.float32)
        server = EmbeddedTriton(repository=root / "model_repository", log_path=root / "tritonserver.log")
        server.start()
        try:
            rounds: list[Round] = []
            for number in range(args.rounds):
                order = MODES[number % 3 :] + MODES[: number % 3]
                for mode in order:
                    folder = root / f"round{number}-{mode.replace(' ', '-')}"
                    folder.mkdir()
                    rounds.append(_run(server.grpc_url, mode, images, concurrency=args.concurrency,
                                       seconds=args.seconds, folder=folder))  # fmt: skip
                    print(
                        f"round {number + 1} {mode}: {rounds[-1].throughput:.0f} req/s, p99 {rounds[-1].p99_ms:.2f} ms"
                    )
        finally:
            server.stop()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    print(f"\n{dt.date.today().isoformat()}, {machine}; embedded Triton 2.51 serving digits (batch 1 requests),")
    print(f"{args.concurrency} client threads on the same machine; medians of {args.rounds} interleaved rounds of"
          f" {args.seconds:g} s per mode; logging: Parquet sink, sample rate 1.0\n")  # fmt: skip
    print(_table(rounds))


if __name__ == "__main__":
    main()
