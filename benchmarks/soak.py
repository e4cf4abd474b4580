"""Soak: the embedded Triton serving `digits` at 80% of its measured knee for 10 minutes (`make soak`).

    .venv/bin/python benchmarks/soak.py [--out runs/soak/NAME] [--duration-s 600] [--rate R]

First a short capacity search (open loop, `slo/digits.yaml`) finds the knee, unless `--rate` gives the soak rate.
Then Locust runs an open loop at 80% of the knee for `--duration-s` while the resident memory (RSS) of tritonserver
and its python-backend stubs is sampled every 5 s. Reported: requests and errors, RSS at the end of the first minute
and at the end (growth in %), and p99 in the first and the last minute (the median of Locust's 10-s window p99 over
the minute, from its full-history CSV).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from tritonforge._runs import new_run_dir
from tritonforge.examples.digits import MODEL_NAME, build_digits
from tritonforge.loadtests.arrivals import open_loop_users
from tritonforge.loadtests.capacity import run_capacity
from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest
from tritonforge.loadtests.slo import load_model_slo
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions

_SAMPLE_S = 5.0


class RssSampler:
    """Samples the summed RSS of a server's process group (server + python-backend stubs) in a thread."""

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - started, self.rss_bytes()))
            self._stop.wait(_SAMPLE_S)

    def rss_bytes(self) -> int:
        """Summed RSS of every live process in the group."""
        total = 0
        for process in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(process.pid) == self.pgid:
                    total += process.memory_info().rss
            except (ProcessLookupError, psutil.Error):
                continue
        return total

    def at(self, second: float) -> int:
        """The last sample taken at or before `second` from the start."""
        return [rss for t, rss in self.samples if t <= second][-1]


def minute_p99(history_csv: Path) -> tuple[float | None, float | None]:
    """Median of Locust's window p99 over the first and over the last minute of a run (its Aggregated rows)."""
    with history_csv.open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("Name") == "Aggregated" and r.get("99%") not in ("", "N/A")]
    if not rows:
        return None, None
    stamps = [int(r["Timestamp"]) for r in rows]
    first_t, last_t = stamps[0], stamps[-1]
    first = [float(r["99%"]) for r, t in zip(rows, stamps, strict=True) if t < first_t + 60 and t >= first_t + 10]
    last = [float(r["99%"]) for r, t in zip(rows, stamps, strict=True) if t > last_t - 60]
    return (statistics.median(first) if first else None), (statistics.median(last) if last else None)


def main(argv: list[str] | None = None) -> int:
    """Find the knee (or take --rate), soak at 80% of it, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: a new runs/soak/<UTC time>)")
    parser.add_argument("--duration-s", type=int, default=600)
    parser.add_argument("--rate", type=float, default=None, help="soak rate in req/s (default: 80%% of the knee)")
    parser.add_argument("--slo", type=Path, default=Path("slo/digits.yaml"))
    args = parser.parse_args(argv)
    args.out = args.out or new_run_dir(Path("runs/soak"))
    args.out.mkdir(parents=True, exist_ok=True)
    slo = load_model_slo(args.slo, MODEL_NAME)
    with tempfile.TemporaryDirectory(prefix="tritonforge-soak-") as tmp:
        build = build_digits(repository=Path(tmp) / "model_repository", weights_dir=Path(tmp) / "build")
        options = ServerOptions(repository=build.exported.model_dir.parent, log_path=args.out / "tritonserver.log")
        with EmbeddedTriton(options) as server:
            knee = None
            if args.rate is None:
                template = LoadTestConfig(host=server.grpc_url, model=MODEL_NAME, output_dir=args.out / "capacity")
                report = run_capacity(
                    template, slo, start_rps=200, factor=1.5, max_rps=20_000, step_s=5, refine_steps=2, overwrite=True
                )
                knee = report.knee_rps
                if knee is None:
                    print("no step met the SLO; nothing to soak at", file=sys.stderr)
                    return 1
            rate = args.rate if args.rate is not None else round(0.8 * knee, 1)
            config = LoadTestConfig(
                host=server.grpc_url,
                model=MODEL_NAME,
                output_dir=args.out / "soak",
                rate_rps=rate,
                arrival="constant",
                users=open_loop_users(rate),  # the in-flight bound the capacity steps had (4 would queue behind stalls)
                run_time_s=args.duration_s,
                overwrite=True,
                slo=slo,
            )
            assert server.pid is not None
            with RssSampler(os.getpgid(server.pid)) as rss:
                result = run_loadtest(config)
            alive = server.is_running()
    p99_first, p99_last = minute_p99(config.output_dir / "locust_stats_history.csv")
    rss_1min, rss_end = rss.at(60.0), rss.samples[-1][1]
    figures: dict[str, Any] = {
        "knee_rps": knee,
        "rate_rps": rate,
        "users": config.users,
        "duration_s": args.duration_s,
        "requests": result.measurement.requests,
        "failures": result.measurement.failures,
        "achieved_rps": round(result.measurement.rps, 1),
        "server_alive_at_end": alive,
        "rss_start_mb": round(rss.samples[0][1] / 2**20, 1),
        "rss_after_1min_mb": round(rss_1min / 2**20, 1),
        "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth_after_1min_pct": round(100 * (rss_end / rss_1min - 1), 2),
        "p99_first_minute_ms": p99_first,
        "p99_last_minute_ms": p99_last,
        "late_starts": result.late.late if result.late else None,
        "slo_passed": result.passed,
    }
    (args.out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    for key, value in figures.items():
        print(f"{key:<28} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
