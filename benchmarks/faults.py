"""Fault figures of the embedded Triton and TritonClient, measured in one run on `digits` (`make faults`).

    .venv/bin/python benchmarks/faults.py [--out runs/faults/NAME]

1. SIGTERM under load: client threads keep calling while the server gets SIGTERM (what Kubernetes sends). Every call
   that was in flight at the signal must finish; the table counts those that failed, the time the server took to
   exit, and the processes of its group still alive after it.
2. kill -9 under load: the server dies without a word while TritonClient threads call it. Which typed error the
   callers see and after how long (their deadline is spent retrying), then the time from the restart on the same
   ports to the first success.
3. Overload at concurrency 64 with short deadlines (2-5 ms) on a supervised server: which outcomes come back (typed
   error and gRPC status), how often the embedded 2.51 died and was restarted (its gRPC cancellation race), how many
   requests the server computed that no client was waiting for any more, and how long one request after the load waits.

Everything runs against loopback, bounded in time; every server started here is stopped. The figures are printed
as one table and written to `<out>/faults.json`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from tritonforge._runs import new_run_dir
from tritonforge.client import TritonClient
from tritonforge.client.grpc_errors import status_code_of
from tritonforge.examples.digits import INPUT_NAME, MODEL_NAME, build_digits, load_split
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions


@dataclass(frozen=True)
class Call:
    """One client call: when it started and ended (monotonic seconds) and how it ended ("ok" or an error)."""

    started: float
    ended: float
    outcome: str
    status: str = ""


@dataclass
class Load:
    """Client threads calling `digits` in a closed loop until `stop` is set; every call is recorded."""

    url: str
    threads: int
    timeout_s: Callable[[int], float]
    images: np.ndarray
    client_options: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        """Start the client threads."""
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def join(self, timeout_s: float = 60.0) -> None:
        """Stop sending and wait for the calls in flight."""
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _run(self, index: int) -> None:
        rng = np.random.default_rng(index)
        with TritonClient(self.url, **self.client_options) as client:
            calls = 0
            while not self.stop.is_set():
                row = int(rng.integers(len(self.images)))
                started = time.monotonic()
                try:
                    client.infer(MODEL_NAME, {INPUT_NAME: self.images[row : row + 1]}, timeout_s=self.timeout_s(calls))
                    call = Call(started, time.monotonic(), "ok")
                except Exception as exc:  # noqa: BLE001 - every outcome is a figure here
                    code = status_code_of(exc.__cause__) if exc.__cause__ is not None else None
                    call = Call(started, time.monotonic(), type(exc).__name__, code.name if code else "")
                with self._lock:
                    self.calls.append(call)
                calls += 1


def _group_left(pgid: int) -> int:
    """Processes still alive in a process group (the server's python-backend stubs share its group)."""
    left = 0
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                left += 1
        except (ProcessLookupError, psutil.Error):
            continue
    return left


def _server(repository: Path, log_dir: Path, name: str, **options: Any) -> EmbeddedTriton:
    return EmbeddedTriton(ServerOptions(repository=repository, log_path=log_dir / f"{name}.log", **options)).start()


def sigterm_under_load(repository: Path, images: np.ndarray, log_dir: Path, *, threads: int = 8) -> dict[str, Any]:
    """SIGTERM while `threads` clients call: in-flight calls that failed, time to exit, processes left."""
    server = _server(repository, log_dir, "sigterm", exit_timeout_s=30)
    load = Load(server.grpc_url, threads, lambda _: 10.0, images).start()
    try:
        time.sleep(3.0)
        pid = server.pid
        assert pid is not None
        signalled = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        load.stop.set()  # no new calls after the signal; the calls in flight must finish
        psutil.Process(pid).wait(timeout=60)
        exited = time.monotonic()
        time.sleep(1.0)  # the stubs notice their parent is gone
        left = _group_left(pid)
        load.join()
    finally:
        server.stop()
    in_flight = [c for c in load.calls if c.started < signalled < c.ended]
    failed = [c for c in in_flight if c.outcome != "ok"]
    return {
        "calls": len(load.calls),
        "in_flight_at_signal": len(in_flight),
        "in_flight_failed": len(failed),
        "failed_outcomes": dict(collections.Counter(c.outcome for c in failed)),
        "exit_s": round(exited - signalled, 3),
        "processes_left": left,
    }


def kill9_under_load(
    repository: Path, images: np.ndarray, log_dir: Path, *, threads: int = 4, timeout_s: float = 2.0
) -> dict[str, Any]:
    """SIGKILL while clients call with a `timeout_s` deadline; then restart on the same ports."""
    first = _server(repository, log_dir, "kill9-before")
    ports = {"grpc_port": first.grpc_port, "http_port": first.http_port, "metrics_port": first.metrics_port}
    load = Load(first.grpc_url, threads, lambda _: timeout_s, images).start()
    second = None
    try:
        time.sleep(3.0)
        pid = first.pid
        assert pid is not None
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        time.sleep(timeout_s * 2)  # long enough for every caller to spend its deadline
        first.stop()
        restarting = time.monotonic()
        second = _server(repository, log_dir, "kill9-after", **ports)
        ready = time.monotonic()
        deadline = ready + 30.0
        while time.monotonic() < deadline and not _succeeded_since(load, ready):
            time.sleep(0.01)
        load.join()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    calls = sorted(load.calls, key=lambda c: c.ended)
    failed_after_kill = [c for c in calls if c.ended > killed and c.outcome != "ok" and c.started < restarting]
    first_success = next((c for c in calls if c.outcome == "ok" and c.ended > restarting), None)
    return {
        "timeout_s": timeout_s,
        "errors_seen": dict(collections.Counter(c.outcome for c in failed_after_kill)),
        "first_error_after_kill_s": round(failed_after_kill[0].ended - killed, 3) if failed_after_kill else None,
        "failed_call_duration_median_s": (
            round(statistics.median(c.ended - c.started for c in failed_after_kill), 3) if failed_after_kill else None
        ),
        "restart_to_ready_s": round(ready - restarting, 3),
        "restart_to_first_success_s": round(first_success.ended - restarting, 3) if first_success else None,
        "ready_to_first_success_s": round(first_success.ended - ready, 3) if first_success else None,
    }


def _succeeded_since(load: Load, moment: float) -> bool:
    return any(c.outcome == "ok" and c.started > moment for c in list(load.calls))


def _server_successes(url: str) -> int:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        stats = client.get_inference_statistics(MODEL_NAME)
    return sum(int(model.inference_stats.success.count) for model in stats.model_stats)


def overload(
    repository: Path, images: np.ndarray, log_dir: Path, *, threads: int = 64, seconds: float = 20.0
) -> dict[str, Any]:
    """`threads` clients with 2-5 ms deadlines for `seconds` on a supervised server (as `tritonforge serve` runs it).

    Reports the outcomes, how often the server died (Triton 2.51's gRPC cancellation race) and was restarted, how
    many requests the server computed that no client waited for any more, and how long a request after the load takes.
    """
    server = _server(repository, log_dir, "overload", restart_on_crash=True, max_restarts_per_minute=30)
    deadlines = (0.002, 0.003, 0.004, 0.005)
    load = Load(server.grpc_url, threads, lambda n: deadlines[n % len(deadlines)], images)
    try:
        load.start()
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            server.watch()  # restarts a server that died, from the thread that started it
            time.sleep(0.2)
        load.join()
        server.watch()
        after: dict[str, Any] = {"server_alive": server.is_running(), "restarts": server.restarts}
        time.sleep(1.0)
        with TritonClient(server.grpc_url, timeout_s=60.0) as client:
            started = time.monotonic()
            client.infer(MODEL_NAME, {INPUT_NAME: images[:1]})
            after["next_request_s"] = round(time.monotonic() - started, 3)
        if server.restarts == 0:  # the statistics start again at each restart
            after["server_successes"] = _server_successes(server.grpc_url)
    finally:
        server.stop()
    outcomes = collections.Counter(f"{c.outcome}{'/' + c.status if c.status else ''}" for c in load.calls)
    client_ok = outcomes.get("ok", 0)
    if "server_successes" in after:
        after["computed_after_the_caller_gave_up"] = max(0, after["server_successes"] - client_ok - 1)
    return {"calls": len(load.calls), "outcomes": dict(outcomes.most_common()), **after}


def _table(figures: dict[str, dict[str, Any]]) -> str:
    lines = []
    for scenario, values in figures.items():
        for key, value in values.items():
            lines.append(f"{scenario:<10} {key:<36} {json.dumps(value)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the three fault scenarios and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: a new runs/faults/<UTC time>)")
    parser.add_argument("--overload-s", type=float, default=20.0)
    args = parser.parse_args(argv)
    args.out = args.out or new_run_dir(Path("runs/faults"))
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tritonforge-faults-") as tmp:
        build = build_digits(repository=Path(tmp) / "model_repository", weights_dir=Path(tmp) / "build")
        repository = build.exported.model_dir.parent
        images = load_split().x_test
        figures = {
            "sigterm": sigterm_under_load(repository, images, args.out),
            "kill -9": kill9_under_load(repository, images, args.out),
            "overload": overload(repository, images, args.out, seconds=args.overload_s),
        }
    (args.out / "faults.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(_table(figures))
    print(f"\nwrote {args.out / 'faults.json'}; server logs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
