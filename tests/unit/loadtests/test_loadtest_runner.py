from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tritonforge.errors import ConfigError, ServerUnavailableError
from tritonforge.loadtests.report import LateRequests
from tritonforge.loadtests.runner import (
    LOCUSTFILE,
    LoadTestConfig,
    _whole_run,
    locust_command,
    locust_worker_command,
    run_loadtest,
    run_locust_worker,
    run_with_deadline,
    validate_grpc_host,
)
from tritonforge.loadtests.slo import Measurement

# A process that says it is done, then hangs and ignores SIGTERM, with a child that does the same:
# what Locust + tritonclient under gevent was seen to do.
_HANGS = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(sys.argv[1], "w") as f:
        f.write(str(child.pid))
    print("Shutting down (exit code 0)", flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_run_with_deadline_kills_process_group_when_it_hangs_after_its_done_marker(tmp_path: Path) -> None:
    child_pid_file = tmp_path / "child.pid"

    outcome = run_with_deadline(
        [sys.executable, "-c", _HANGS, str(child_pid_file)],
        log_path=tmp_path / "log.txt",
        deadline_s=3600.0,  # beyond pytest's timeout: only the done marker's grace can end this run in time
        exit_grace_s=0.5,
        term_grace_s=0.5,
    )

    assert outcome.killed is True
    assert outcome.returncode == -9  # SIGTERM was ignored, SIGKILL was needed
    assert _wait_gone(int(child_pid_file.read_text()))
    assert "Shutting down" in (tmp_path / "log.txt").read_text()


def test_run_with_deadline_kills_process_when_deadline_passes_without_marker(tmp_path: Path) -> None:
    outcome = run_with_deadline(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        log_path=tmp_path / "log.txt",
        deadline_s=1.0,
        term_grace_s=2.0,
    )

    assert outcome.killed is True  # the 600 s sleep would outlast pytest's timeout: the deadline ended it
    assert outcome.returncode == -15  # this one honours SIGTERM


def test_run_with_deadline_leaves_process_alone_when_it_exits_by_itself(tmp_path: Path) -> None:
    outcome = run_with_deadline(
        [sys.executable, "-c", "print('Shutting down (exit code 3)'); raise SystemExit(3)"],
        log_path=tmp_path / "log.txt",
        deadline_s=60.0,
    )

    assert outcome.killed is False
    assert outcome.returncode == 3
    assert (tmp_path / "log.txt").read_text().strip() == "Shutting down (exit code 3)"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8001", "127.0.0.1:8001"),
        ("grpc://triton.internal:8001", "triton.internal:8001"),
        ("[::1]:8001", "[::1]:8001"),
        ("dns:///triton:8001", "dns:///triton:8001"),
    ],
)
def test_validate_grpc_host_accepts_address_when_it_is_host_and_port(host: str, expected: str) -> None:
    assert validate_grpc_host(host) == expected


@pytest.mark.parametrize("host", ["http://127.0.0.1:8000", "127.0.0.1", "127.0.0.1:8001/v2", "host:0", ""])
def test_validate_grpc_host_rejects_address_when_it_is_not_host_and_port(host: str) -> None:
    with pytest.raises(ConfigError, match="is not a gRPC address; give host:port"):
        validate_grpc_host(host)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"users": 0}, "users must be a whole number of at least 1"),
        ({"run_time_s": 0}, "run_time_s must be a whole number of at least 1"),
        ({"spawn_rate": 0.0}, "spawn_rate must be above 0"),
        ({"processes": 0}, "processes must be -1"),
        ({"host": "http://localhost:8000"}, "is not a gRPC address"),
        ({"model": ""}, "the model name is empty"),
        ({"sample_path": Path("x.npy"), "batch_size": 4}, "a --sample file is sent as it is"),
    ],
)
def test_load_test_config_rejects_option_when_it_is_out_of_range(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    options: dict[str, object] = {"host": "127.0.0.1:8001", "model": "digits", "output_dir": tmp_path}
    options.update(overrides)

    with pytest.raises(ConfigError, match=message):
        LoadTestConfig(**options)  # type: ignore[arg-type]


def test_locust_command_runs_headless_with_reports_when_built_from_config(tmp_path: Path) -> None:
    config = LoadTestConfig(
        host="127.0.0.1:8001", model="digits", output_dir=tmp_path, users=3, run_time_s=7, processes=2
    )

    command = locust_command(
        config, csv_prefix=tmp_path / "locust", html_path=tmp_path / "r.html", request_path=tmp_path / "q.npz"
    )

    assert command[:3] == [sys.executable, "-m", "locust"]
    pairs = dict(zip(command[3::], command[4::], strict=False))
    assert pairs["-f"] == str(LOCUSTFILE)
    assert pairs["--host"] == "127.0.0.1:8001"
    assert pairs["--users"] == "3"
    assert pairs["--spawn-rate"] == "3"
    assert pairs["--run-time"] == "7s"
    assert pairs["--csv"] == str(tmp_path / "locust")
    assert pairs["--html"] == str(tmp_path / "r.html")
    assert pairs["--exit-code-on-error"] == "0"
    assert pairs["--triton-model"] == "digits"
    assert pairs["--triton-sample"] == str(tmp_path / "q.npz")
    assert pairs["--processes"] == "2"
    assert "--headless" in command
    assert LOCUSTFILE.is_file()


def test_run_loadtest_fails_before_starting_locust_when_no_server_answers(tmp_path: Path) -> None:
    config = LoadTestConfig(
        host="127.0.0.1:9", model="digits", output_dir=tmp_path, ready_timeout_s=1.0, overwrite=True
    )
    for stale in ("summary.json", "locust_stats.csv", "locust_failures.csv"):  # left by an earlier run
        (tmp_path / stale).write_text("stale", encoding="utf-8")

    with pytest.raises(ServerUnavailableError, match="127.0.0.1:9"):
        run_loadtest(config)

    assert not (tmp_path / "locust.log").exists()  # Locust never started
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # and nothing stale can pass for this run's results


@pytest.mark.parametrize("earlier", ["summary.json", "locust_stats.csv", "locust_late.json"])
def test_run_loadtest_refuses_a_folder_that_holds_an_earlier_run_and_deletes_nothing(
    tmp_path: Path, earlier: str
) -> None:
    config = LoadTestConfig(host="127.0.0.1:9", model="digits", output_dir=tmp_path, ready_timeout_s=1.0)
    (tmp_path / earlier).write_text("earlier", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")

    with pytest.raises(ConfigError, match=rf"already holds a load-test run \({earlier}\); pass --overwrite") as caught:
        run_loadtest(config)

    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([earlier, "notes.txt"])
    assert (tmp_path / earlier).read_text(encoding="utf-8") == "earlier"


def test_a_warm_up_ramps_the_users_over_it_resets_the_statistics_and_extends_locusts_run(tmp_path: Path) -> None:
    config = LoadTestConfig(
        host="127.0.0.1:8001", model="digits", output_dir=tmp_path, users=8, rate_rps=200.0, arrival="constant",
        run_time_s=5, warmup_s=2,
    )  # fmt: skip

    command = locust_command(config, csv_prefix=tmp_path / "l", html_path=tmp_path / "r.html", request_path=tmp_path)

    pairs = _pairs(command)
    assert pairs["--run-time"] == "7s"  # the warm-up, then the 5 measured seconds
    assert pairs["--spawn-rate"] == "4"  # 8 users started evenly over the 2 s warm-up
    assert "--reset-stats" in command  # Locust forgets the warm-up once every user has started
    assert config.deadline_s == config.startup_allowance_s + 7 + config.stop_timeout_s + config.exit_grace_s
    plain = locust_command(
        dataclasses.replace(config, warmup_s=0), csv_prefix=tmp_path / "l", html_path=tmp_path / "r.html",
        request_path=tmp_path,
    )  # fmt: skip
    assert "--reset-stats" not in plain and _pairs(plain)["--run-time"] == "5s"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"warmup_s": 1}, r"warmup_s \(1\) applies to the open loop only"),
        ({"warmup_s": 1, "rate_rps": 10.0, "spawn_rate": 2.0}, "drop spawn_rate"),
        ({"warmup_s": -1, "rate_rps": 10.0}, "warmup_s must be a whole number of at least 0"),
    ],
)
def test_warm_up_is_validated(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path, **fields)


def test_after_a_warm_up_the_server_count_is_set_beside_every_request_sent() -> None:
    steady = Measurement(requests=1000, failures=0, rps=500.0, p50_ms=2.0, p95_ms=3.0, p99_ms=4.0, mean_ms=2.1)
    late = LateRequests(threshold_ms=2.0, sent=1240, late=3, unsent=0, p50_ms=3.0, p99_ms=5.0, max_ms=5.0)

    whole = _whole_run(steady, late, warmup_s=1)

    # The server's counters span the whole run; Locust's statistics only the part after the warm-up.
    assert whole == dataclasses.replace(steady, requests=1240)
    assert _whole_run(steady, late, warmup_s=0) is steady
    assert _whole_run(steady, None, warmup_s=1) is steady


def _pairs(command: list[str]) -> dict[str, str]:
    return dict(zip(command[3::], command[4::], strict=False))


def test_locust_command_passes_the_schedule_and_the_total_users_when_the_loop_is_open(tmp_path: Path) -> None:
    config = LoadTestConfig(
        host="127.0.0.1:8001", model="digits", output_dir=tmp_path, users=12, rate_rps=300.0, arrival="constant",
        late_threshold_ms=5.0, processes=3, seed=4,
    )  # fmt: skip

    command = locust_command(
        config, csv_prefix=tmp_path / "locust", html_path=tmp_path / "r.html", request_path=tmp_path / "q.npz"
    )

    pairs = _pairs(command)
    assert pairs["--triton-arrival"] == "constant"
    assert float(pairs["--triton-rate"]) == 300.0
    assert pairs["--triton-total-users"] == "12"  # every user of every process takes rate / 12
    assert pairs["--triton-late-threshold-ms"] == "5"
    assert pairs["--triton-seed"] == "4"
    assert pairs["--users"] == "12"
    assert pairs["--spawn-rate"] == "100"  # all users start at once, so the rate holds from the start
    assert pairs["--processes"] == "3"
    assert "--csv-full-history" in command  # the history the PNG is drawn from
    assert "--master" not in command


def test_locust_command_leaves_out_the_schedule_when_the_loop_is_closed(tmp_path: Path) -> None:
    config = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path, users=3)

    command = locust_command(config, csv_prefix=tmp_path / "l", html_path=tmp_path / "r.html", request_path=tmp_path)

    assert not [arg for arg in command if arg.startswith("--triton-arrival") or arg.startswith("--triton-rate")]


def test_locust_command_runs_a_master_that_waits_for_its_workers_when_workers_are_expected(tmp_path: Path) -> None:
    config = LoadTestConfig(
        host="10.0.0.9:8001", model="digits", output_dir=tmp_path, users=64, rate_rps=5000.0, expect_workers=4,
        master_bind_host="0.0.0.0", master_bind_port=5600, workers_wait_s=90.0,
    )  # fmt: skip

    command = locust_command(config, csv_prefix=tmp_path / "l", html_path=tmp_path / "r.html", request_path=tmp_path)

    pairs = _pairs(command)
    assert "--master" in command and "--headless" in command
    assert pairs["--expect-workers"] == "4"
    assert pairs["--expect-workers-max-wait"] == "90"
    assert (pairs["--master-bind-host"], pairs["--master-bind-port"]) == ("0.0.0.0", "5600")
    assert pairs["--triton-total-users"] == "64"
    assert config.deadline_s == pytest.approx(
        LoadTestConfig(host="10.0.0.9:8001", model="digits", output_dir=tmp_path).deadline_s + 90.0
    )


def test_locust_worker_command_joins_the_master_with_the_same_triton_options(tmp_path: Path) -> None:
    config = LoadTestConfig(
        host="10.0.0.9:8001", model="digits", output_dir=tmp_path, rate_rps=500.0, master_host="10.0.0.5",
        master_port=5600, processes=2,
    )  # fmt: skip

    command = locust_worker_command(config, request_path=tmp_path / "q.npz")

    pairs = _pairs(command)
    assert command[:3] == [sys.executable, "-m", "locust"]
    assert "--worker" in command and "--headless" not in command
    assert (pairs["--master-host"], pairs["--master-port"]) == ("10.0.0.5", "5600")
    assert (pairs["--triton-model"], pairs["--triton-sample"]) == ("digits", str(tmp_path / "q.npz"))
    assert pairs["--triton-arrival"] == "poisson"
    assert pairs["--processes"] == "2"
    assert "--csv" not in command and "--run-time" not in command  # the master owns the run and the reports


def test_worker_and_master_runs_refuse_each_others_config(tmp_path: Path) -> None:
    local = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path)
    worker = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path, master_host="10.0.0.5")

    with pytest.raises(ConfigError, match="needs master_host"):
        run_locust_worker(local)
    with pytest.raises(ConfigError, match="call run_locust_worker"):
        run_loadtest(worker)
    with pytest.raises(ConfigError, match="--master-host"):
        locust_worker_command(local, request_path=tmp_path)


# A root that sleeps and a child that burns a fixed amount of CPU time (not of wall time: a busy host only makes it
# take longer) between the load markers Locust logs.
_BUSY_CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    burn = "import time\\nwhile time.process_time() < 1.0: pass"
    print("Ramping to 1 users", flush=True)
    child = subprocess.Popen([sys.executable, "-c", burn])
    child.wait()
    print("--run-time limit reached", flush=True)
    time.sleep(0.3)
    """
)


def test_run_with_deadline_measures_each_process_cpu_between_the_load_markers(tmp_path: Path) -> None:
    outcome = run_with_deadline([sys.executable, "-c", _BUSY_CHILD], log_path=tmp_path / "log.txt", deadline_s=60.0)

    assert outcome.returncode == 0, (tmp_path / "log.txt").read_text()
    root = outcome.process_cpu[outcome.pid]
    children = [percent for pid, percent in outcome.process_cpu.items() if pid != outcome.pid]
    assert len(children) == 1
    # The child spun through the window; the root only waited for it (its start-up is outside the window).
    assert children[0] > root


def test_a_paced_closed_loop_passes_its_rate_and_user_count_but_no_schedule(tmp_path: Path) -> None:
    config = LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path, users=8, pace_rps=400.0)

    command = locust_command(config, csv_prefix=tmp_path / "l", html_path=tmp_path / "r.html", request_path=tmp_path)

    pairs = _pairs(command)
    assert (pairs["--triton-pace-rps"], pairs["--triton-total-users"]) == ("400.0", "8")
    assert "--triton-arrival" not in pairs and not config.open_loop


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pace_rps": 100.0, "rate_rps": 100.0}, "cannot be combined"),
        ({"pace_rps": 0.0}, "above 0"),
    ],
)
def test_pace_is_validated(tmp_path: Path, fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LoadTestConfig(host="127.0.0.1:8001", model="digits", output_dir=tmp_path, **fields)
