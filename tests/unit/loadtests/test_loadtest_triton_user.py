"""TritonUser and the locustfile, exercised in child processes: importing locust gevent-patches the interpreter,
which must never happen inside the pytest process (it would change every other test's sockets and threads)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tritonforge.loadtests.report import read_locust_stats
from tritonforge.loadtests.runner import LOCUSTFILE, LoadTestConfig, locust_command

_TIMEOUT_S = 120


def _run_python(code: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_locustfile_adds_triton_options_when_locust_parses_its_command_line() -> None:
    result = _run_python(
        """
        import json, sys
        import locust
        from locust.argument_parser import parse_options
        import tritonforge.loadtests.locustfile

        options = parse_options(args=["-f", sys.argv[1], "--triton-model", "digits", "--triton-batch-size", "8",
                                      "--triton-sample", "q.npz", "--triton-timeout-s", "2.5"])
        print(json.dumps({"model": options.triton_model, "batch": options.triton_batch_size,
                          "sample": options.triton_sample, "timeout": options.triton_timeout_s,
                          "version": options.triton_model_version, "seed": options.triton_seed}))
        """,
        str(LOCUSTFILE),
    )

    assert result == {"model": "digits", "batch": 8, "sample": "q.npz", "timeout": 2.5, "version": "", "seed": 0}


def test_triton_user_reports_success_and_failure_when_infer_is_called() -> None:
    result = _run_python(
        """
        import json
        import locust
        import numpy as np
        from locust.env import Environment
        from tritonforge.errors import InferenceTimeoutError
        from tritonforge.loadtests.locustfile import InferUser

        class FakeClient:
            def __init__(self, fail):
                self.fail, self.closed = fail, False
            def infer(self, model, inputs, *, version=None, timeout_s=None):
                if self.fail:
                    raise InferenceTimeoutError(model, timeout_s)
                return {"logits": np.zeros((1, 10), np.float32)}
            def close(self):
                self.closed = True

        fired = []
        env = Environment(user_classes=[InferUser], events=locust.events)
        env.events.request.add_listener(lambda **event: fired.append(event))
        InferUser.model, InferUser.host = "digits", "127.0.0.1:8001"
        user = InferUser(env)
        user.inputs = {"image": np.zeros((1, 1, 8, 8), np.float32)}
        user.client = FakeClient(fail=False)
        user.infer()
        failing = FakeClient(fail=True)
        user.client = failing
        user.infer()
        user.on_stop()
        print(json.dumps({
            "events": [
                {"type": e["request_type"], "name": e["name"], "length": e["response_length"],
                 "error": type(e["exception"]).__name__ if e["exception"] else None,
                 "ms_ok": isinstance(e["response_time"], float) and e["response_time"] >= 0}
                for e in fired
            ],
            "closed": failing.closed,
            "client_after_stop": user.client,
        }))
        """
    )

    assert result["events"] == [
        {"type": "grpc", "name": "digits", "length": 40, "error": None, "ms_ok": True},
        {"type": "grpc", "name": "digits", "length": 0, "error": "InferenceTimeoutError", "ms_ok": True},
    ]
    assert result["closed"] is True
    assert result["client_after_stop"] is None


def test_triton_user_rejects_host_when_it_is_an_http_url() -> None:
    result = _run_python(
        """
        import json
        import locust
        from locust.env import Environment
        from tritonforge.errors import ConfigError
        from tritonforge.loadtests.locustfile import InferUser

        InferUser.model, InferUser.host = "digits", "http://127.0.0.1:8000"
        try:
            InferUser(Environment(user_classes=[InferUser], events=locust.events))
            print(json.dumps({"error": None}))
        except ConfigError as exc:
            print(json.dumps({"error": str(exc)}))
        """
    )

    assert "is not a gRPC address" in result["error"]


def test_final_stats_listener_rewrites_stats_csv_when_locust_quits(tmp_path: Path) -> None:
    prefix = tmp_path / "locust"
    result = _run_python(
        """
        import argparse, csv, json, sys
        import locust
        from locust.env import Environment
        from tritonforge.loadtests.locustfile import InferUser

        prefix = sys.argv[1]
        with open(prefix + "_stats.csv", "w") as stale:
            stale.write("stale")
        env = Environment(user_classes=[InferUser], events=locust.events)
        env.parsed_options = argparse.Namespace(csv_prefix=prefix)
        env.create_local_runner()
        for ms in (1.0, 2.0, 3.0):
            env.events.request.fire(request_type="grpc", name="digits", response_time=ms,
                                    response_length=40, exception=None, context={})
        env.events.quitting.fire(environment=env)
        with open(prefix + "_stats.csv", newline="") as handle:
            rows = {row["Name"]: row for row in csv.DictReader(handle)}
        print(json.dumps({"count": rows["digits"]["Request Count"], "p99": rows["Aggregated"]["99%"]}))
        """,
        str(prefix),
    )

    assert result == {"count": "3", "p99": "3"}


def test_open_loop_user_times_from_the_schedule_and_counts_late_and_unsent_starts(tmp_path: Path) -> None:
    prefix = tmp_path / "locust"
    result = _run_python(
        """
        import argparse, json, sys
        import locust
        import numpy as np
        from locust.env import Environment
        from tritonforge.loadtests import triton_user
        from tritonforge.loadtests.locustfile import InferUser

        class Clock:  # the user's only clock: it moves when the user sleeps and when a call takes its 21 ms
            now = 1000.0
            @staticmethod
            def perf_counter():
                return Clock.now
            @staticmethod
            def sleep(seconds):
                Clock.now += max(0.0, seconds)

        triton_user.time = Clock
        triton_user.gevent = Clock

        class SlowClient:  # 21 ms a call, against a schedule of one request every 5 ms: the user falls behind
            def infer(self, model, inputs, *, version=None, timeout_s=None):
                Clock.now += 0.021
                return {"logits": np.zeros((1, 10), np.float32)}
            def close(self):
                pass

        fired = []
        env = Environment(user_classes=[InferUser], events=locust.events)
        env.create_local_runner()
        env.events.request.add_listener(lambda **event: fired.append(event["response_time"]))
        InferUser.model, InferUser.host = "digits", "127.0.0.1:8001"
        InferUser.arrival, InferUser.rate_rps, InferUser.total_users = "constant", 400.0, 2  # 200/s for this user
        user = InferUser(env)
        env.parsed_options = argparse.Namespace(
            csv_prefix=sys.argv[1], triton_arrival="constant", triton_late_threshold_ms=2.0)
        env.events.test_start.fire(environment=env)
        user.inputs = {"image": np.zeros((1, 1, 8, 8), np.float32)}
        user.client = SlowClient()
        user._start_schedule(user.arrival, user.rate_rps)
        first_due = user._next_due
        for _ in range(6):
            user.send_next()
        stopped_after_ms = (Clock.now - first_due) * 1000
        user.on_stop()
        env.events.quitting.fire(environment=env)
        with open(sys.argv[1] + "_late.json") as handle:
            written = json.load(handle)
        print(json.dumps({"latencies": fired, "stopped_after_ms": stopped_after_ms, "written": written}))
        """,
        str(prefix),
    )

    # Request k is due at 5k ms, starts when request k-1 returns (21k ms): 16k ms late, done 21 ms later.
    assert result["latencies"] == pytest.approx([21, 37, 53, 69, 85, 101])
    assert result["stopped_after_ms"] == pytest.approx(126)
    written = result["written"]
    assert written["sent"] == 6
    assert written["late"] == [[16.0, 1], [32.0, 1], [48.0, 1], [64.0, 1], [80.0, 1]]  # all but the first
    assert written["woke_late"] == 0  # late because the user was busy, not because the process woke late
    # Stopped at 126 ms: requests 6 to 25 (due 30 ms to 125 ms) fell due unsent; they are reported, not dropped.
    assert written["unsent"] == 20


def test_the_runners_warm_up_makes_locusts_statistics_hold_only_the_requests_after_it(tmp_path: Path) -> None:
    config = LoadTestConfig(
        host="127.0.0.1:8001", model="digits", output_dir=tmp_path, users=4, rate_rps=100.0, run_time_s=2,
        warmup_s=1,
    )  # fmt: skip
    counts = {}
    for name, warm in (("warm", config), ("plain", dataclasses.replace(config, warmup_s=0))):
        prefix = tmp_path / name / "locust"
        prefix.parent.mkdir()
        command = locust_command(warm, csv_prefix=prefix, html_path=tmp_path / "r.html", request_path=tmp_path / "q")
        _run_python(
            """
            import json, sys
            import locust
            from locust.argument_parser import parse_options
            from locust.env import Environment
            from tritonforge.loadtests.locustfile import InferUser

            options = parse_options(args=sys.argv[1:])
            # as Locust's main builds it: --reset-stats becomes Environment.reset_stats
            env = Environment(user_classes=[InferUser], events=locust.events, reset_stats=options.reset_stats,
                              parsed_options=options)
            env.create_local_runner()
            def fire(ms):
                env.events.request.fire(request_type="grpc", name="digits", response_time=ms,
                                        response_length=40, exception=None, context={})
            for _ in range(10):  # the warm-up: cold channels, slow answers
                fire(500.0)
            env.events.spawning_complete.fire(user_count=4)  # the last user has started
            for _ in range(100):  # the steady state
                fire(3.0)
            env.events.quitting.fire(environment=env)
            print(json.dumps({}))
            """,
            *command[3:],
        )
        counts[name] = read_locust_stats(prefix.with_name("locust_stats.csv"), name="digits")

    warm, plain = counts["warm"], counts["plain"]
    assert (warm.requests, warm.p50_ms, warm.p99_ms, warm.mean_ms) == (100, 3.0, 3.0, 3.0)
    assert (plain.requests, plain.p99_ms) == (110, 500.0)  # without a warm-up the ramp-up counts
