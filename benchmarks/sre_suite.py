"""The SRE toolkit's figures, measured in one run on the embedded Triton and printed as one table (`make bench`).

    .venv/bin/python benchmarks/sre_suite.py [--out runs/bench/NAME]      # about 8 minutes on 2 cores

1. tuner vs grid on `digits`: the tuner's best throughput against the full grid's (same search space, concurrency 16),
   and how many measurements each needed;
2. tuned vs default on `digits` at concurrency 16: throughput and p99 (default = no dynamic batching, one instance);
3. served vs in-process ONNX Runtime at the tuned config, for `digits` and the MiniLM encoder: the server's items/s
   against ONNX Runtime in this process at the batch size the server actually executed (Triton's own average);
4. the load generator: one Locust process against `digits` at rising user counts (requests/s, its CPU), then two;
5. open against closed loop just past the knee: a capacity search finds the knee of `digits` under a p99 objective,
   then an open loop at 1.25x the knee and a closed loop paced to the same rate with the same users (Locust's
   constant throughput: each user waits for its answer) report their p99.

Everything shares the machine's cores: the clients, Locust, the server and ONNX Runtime. Figures are medians where
repeated; the JSON of every part lands in `--out`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy.typing as npt

from tritonforge._runs import new_run_dir
from tritonforge.examples.minilm import median_length_rows
from tritonforge.loadtests.closed_loop import request_batches, run_closed_loop
from tritonforge.loadtests.tuner import TuneReport, tune_model
from tritonforge.loadtests.tuner_search import SearchSpace

SLO_P99_MS = 50.0
SPACE = SearchSpace(
    max_batch_sizes=(8, 32, 64), delays_us=(None, 0, 500, 2000), preferred=(False, True), instances=(1, 2)
)
TEXT_SPACE = SearchSpace(max_batch_sizes=(64,), delays_us=(None, 0, 2000, 5000), preferred=(False,), instances=(1,))


def _digits_samples() -> dict[str, npt.NDArray[Any]]:
    from tritonforge.examples.digits import INPUT_NAME, load_split

    return {INPUT_NAME: load_split().x_test}


def _tune(repository: Path, model: str, out: Path, **kwargs: Any) -> TuneReport:
    started = time.perf_counter()
    report = tune_model(model=model, repository=repository, p99_ms=SLO_P99_MS, out_dir=out, **kwargs)
    print(f"  {out.name}: {len(report.search.trials)} configs, {report.search.measurements} measurements, "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    return report


def _server_batch(url: str, model: str) -> float:
    """The average batch the server has executed for `model` so far (inference count over execution count)."""
    from tritonforge.loadtests.server_stats import take_snapshot

    counters = take_snapshot(url).models[model]
    return counters.inferences / max(counters.executions, 1)


def _ort_items_per_s(onnx_path: Path, samples: dict[str, npt.NDArray[Any]], batch: int, seconds: float) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {name: array[:batch] for name, array in samples.items()}
    session.run(None, feed)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feed)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def served_vs_onnxruntime(
    repository: Path, model: str, samples: dict[str, npt.NDArray[Any]], *, seconds: float, rounds: int
) -> dict[str, Any]:
    """The served throughput at the repository's (tuned) config against in-process ORT at the executed batch."""
    from tritonforge.serving.launcher import EmbeddedTriton

    requests = request_batches(samples, 1)
    served, batches, ort_rates = [], [], []
    onnx_path = repository / model / "1" / "model.onnx"
    with EmbeddedTriton(repository=repository) as server:
        run_closed_loop(url=server.grpc_url, model=model, requests=requests, concurrency=16, seconds=0.5)
        for _ in range(rounds):
            figures = run_closed_loop(
                url=server.grpc_url, model=model, requests=requests, concurrency=16, seconds=seconds
            )
            served.append(figures.items_per_s)
            batches.append(_server_batch(server.grpc_url, model))
            ort_rates.append(_ort_items_per_s(onnx_path, samples, max(1, round(batches[-1])), seconds))
    return {
        "served_items_per_s": statistics.median(served),
        "executed_batch": statistics.median(batches),
        "ort_items_per_s": statistics.median(ort_rates),
        "ratio": statistics.median(served) / statistics.median(ort_rates),
    }


def generator(url: str, out: Path, *, seconds: int) -> list[dict[str, Any]]:
    """One Locust process at rising user counts, then two processes: requests/s and the generator's CPU."""
    from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest

    rows = []
    for users, processes in ((1, None), (4, None), (8, None), (16, None), (32, None), (32, 2)):
        result = run_loadtest(
            LoadTestConfig(host=url, model="digits", output_dir=out / f"u{users}_p{processes or 1}", users=users,
                           run_time_s=seconds, processes=processes)
        )  # fmt: skip
        load = result.generator
        rows.append({
            "users": users, "processes": processes or 1, "rps": result.measurement.rps,
            "p99_ms": result.measurement.p99_ms, "generator_cpu_percent": load.cpu_percent if load else None,
            "per_process_cpu": [p.cpu_percent for p in load.processes] if load else [],
            "saturated": bool(load and load.saturated),
        })  # fmt: skip
        print(f"  generator {users} users x {processes or 1} process(es): {rows[-1]['rps']:.0f} req/s, "
              f"CPU {rows[-1]['generator_cpu_percent']}")  # fmt: skip
    return rows


def open_vs_closed(url: str, out: Path, *, step_s: int) -> dict[str, Any]:
    """Find the knee of digits under p99 <= SLO, then compare open and closed loop at 1.25x the knee."""
    from tritonforge.loadtests.arrivals import open_loop_users
    from tritonforge.loadtests.capacity import run_capacity
    from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest
    from tritonforge.loadtests.slo import SLOSpec

    slo = SLOSpec(p99_ms=SLO_P99_MS)
    template = LoadTestConfig(host=url, model="digits", output_dir=out / "capacity", run_time_s=step_s)
    capacity = run_capacity(template, slo, start_rps=250, factor=2.0, max_rps=16000, step_s=step_s, refine_steps=2)
    knee = capacity.knee_rps or 250.0
    rate = 1.25 * knee
    users = open_loop_users(rate)
    common = {"host": url, "model": "digits", "run_time_s": step_s * 2, "users": users}
    opened = run_loadtest(LoadTestConfig(output_dir=out / "open", arrival="constant", rate_rps=rate, **common))
    closed = run_loadtest(LoadTestConfig(output_dir=out / "closed", pace_rps=rate, **common))
    return {
        "knee_rps": capacity.knee_rps,
        "rate_rps": rate,
        "users": users,
        "open": {
            "rps": opened.measurement.rps,
            "p99_ms": opened.measurement.p99_ms,
            "late": opened.late.late if opened.late else None,
        },
        "closed": {"rps": closed.measurement.rps, "p99_ms": closed.measurement.p99_ms},
    }


def main() -> None:
    """Run every part and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: a new runs/bench/<UTC time>)")
    parser.add_argument("--seconds", type=float, default=2.5, help="length of each tuner and served measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    args.out = args.out or new_run_dir(Path("runs/bench"))
    args.out.mkdir(parents=True, exist_ok=True)

    from tritonforge.examples.digits import build_digits
    from tritonforge.examples.minilm import ENCODER_NAME, build_minilm
    from tritonforge.serving.launcher import EmbeddedTriton

    figures: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
    }
    with tempfile.TemporaryDirectory(prefix="tritonforge-bench-") as tmp:
        repository = Path(tmp) / "repo"
        build_digits(repository=repository, weights_dir=Path(tmp))
        build_minilm(repository)
        print("1/5 tuner and grid on digits (concurrency 16)")
        tuned = _tune(repository, "digits", args.out / "tune_digits", space=SPACE, seconds=args.seconds)
        grid = _tune(repository, "digits", args.out / "grid_digits", space=SPACE, seconds=args.seconds, grid=True,
                     write=False)  # fmt: skip
        assert tuned.search.best and grid.search.best and tuned.search.baseline
        best, default = tuned.search.best.figures, tuned.search.baseline.figures
        assert best is not None and default is not None and grid.search.best.figures is not None
        # The tuner's pick as the grid measured it: both figures from the same run, so noise between runs cancels.
        in_grid = [t.figures for t in grid.search.trials if t.candidate == tuned.search.best.candidate and t.figures]
        figures["tuner"] = {
            "tuner_pick_in_grid_items_per_s": in_grid[0].items_per_s if in_grid else None,
            "tuner_best": tuned.search.best.candidate.label, "tuner_items_per_s": best.items_per_s,
            "grid_best": grid.search.best.candidate.label, "grid_items_per_s": grid.search.best.figures.items_per_s,
            "tuner_measurements": tuned.search.measurements, "grid_measurements": grid.search.measurements,
            "default_items_per_s": default.items_per_s, "default_p99_ms": default.p99_ms, "tuned_p99_ms": best.p99_ms,
        }  # fmt: skip
        text = median_length_rows()
        print("2/5 MiniLM encoder tuning (queue delay; max_batch_size stays 64, what the minilm ensemble needs)")
        _tune(repository, ENCODER_NAME, args.out / "tune_minilm", space=TEXT_SPACE, seconds=args.seconds,
              samples=text)  # fmt: skip
        print("3/5 served at the tuned configs vs in-process ONNX Runtime")
        figures["served_vs_ort"] = {
            "digits": served_vs_onnxruntime(repository, "digits", _digits_samples(), seconds=args.seconds,
                                            rounds=args.rounds),
            "minilm_encoder": served_vs_onnxruntime(repository, ENCODER_NAME, text, seconds=args.seconds,
                                                    rounds=args.rounds),
        }  # fmt: skip
        with EmbeddedTriton(repository=repository) as server:
            print("4/5 the load generator")
            figures["generator"] = generator(server.grpc_url, args.out / "generator", seconds=6)
            print("5/5 open vs closed loop past the knee")
            figures["open_vs_closed"] = open_vs_closed(server.grpc_url, args.out / "knee", step_s=4)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print_table(figures)


def _share(part: float | None, whole: float) -> str:
    return "n/a (the grid never measured the pick)" if part is None else f"{part / whole:.2f}"


def print_table(f: dict[str, Any]) -> None:
    """Print the figures as one table: what, the measured values, and the verdict or ratio."""
    t, oc = f["tuner"], f["open_vs_closed"]
    rows = [
        (
            "tuner vs grid (digits, c=16)",
            f"picks {t['tuner_best']} vs grid's {t['grid_best']}",
            f"{_share(t['tuner_pick_in_grid_items_per_s'], t['grid_items_per_s'])} of the grid's best (both as the "
            f"grid measured them), {t['tuner_measurements']} vs {t['grid_measurements']} measurements",
        ),
        (
            "tuned vs default (digits, c=16)",
            f"{t['tuner_items_per_s']:.0f} vs {t['default_items_per_s']:.0f} items/s",
            f"{t['tuner_items_per_s'] / t['default_items_per_s']:.2f}x; p99 {t['tuned_p99_ms']:.2f} vs "
            f"{t['default_p99_ms']:.2f} ms ({t['tuner_best']})",
        ),
    ]
    for model, v in f["served_vs_ort"].items():
        measured = f"{v['served_items_per_s']:.0f} vs {v['ort_items_per_s']:.0f} items/s"
        verdict = f"ratio {v['ratio']:.2f} at executed batch {v['executed_batch']:.1f}"
        rows.append((f"served / in-process ORT ({model})", measured, verdict))
    for g in f["generator"]:
        saturated = " SATURATED" if g["saturated"] else ""
        rows.append(
            (
                f"Locust {g['users']} users x {g['processes']} process(es)",
                f"{g['rps']:.0f} req/s, p99 {g['p99_ms']} ms",
                f"generator CPU {g['generator_cpu_percent']}%{saturated}",
            )
        )
    rows.append(
        (
            "open vs closed at 1.25x the knee",
            f"knee {oc['knee_rps']} rps; rate {oc['rate_rps']:.0f}, {oc['users']} users",
            f"p99 open {oc['open']['p99_ms']} ms ({oc['open']['rps']:.0f} rps, {oc['open']['late']} late) vs "
            f"closed {oc['closed']['p99_ms']} ms ({oc['closed']['rps']:.0f} rps)",
        )
    )
    print(f"\n{f['date']}, {f['machine']}")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
