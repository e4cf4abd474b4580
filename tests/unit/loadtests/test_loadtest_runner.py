from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tritonforge.errors import ConfigError, ServerUnavailableError
from tritonforge.loadtests.runner import (
    LOCUSTFILE,
    LoadTestConfig,
    locust_command,
    run_loadtest,
    run_with_deadline,
    validate_grpc_host,
)

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
        deadline_s=120.0,
        exit_grace_s=0.5,
        term_grace_s=0.5,
    )

    assert outcome.killed is True
    assert outcome.returncode == -9  # SIGTERM was ignored, SIGKILL was needed
    assert outcome.wall_s < 60.0  # ended by the marker's grace, far before the 120 s deadline or the 600 s sleep
    assert _wait_gone(int(child_pid_file.read_text()))
    assert "Shutting down" in (tmp_path / "log.txt").read_text()


def test_run_with_deadline_kills_process_when_deadline_passes_without_marker(tmp_path: Path) -> None:
    outcome = run_with_deadline(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        log_path=tmp_path / "log.txt",
        deadline_s=1.0,
        term_grace_s=2.0,
    )

    assert outcome.killed is True
    assert outcome.returncode == -15  # this one honours SIGTERM
    assert outcome.wall_s < 60.0


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
    config = LoadTestConfig(host="127.0.0.1:9", model="digits", output_dir=tmp_path, ready_timeout_s=1.0)
    for stale in ("summary.json", "locust_stats.csv", "locust_failures.csv"):  # left by an earlier run
        (tmp_path / stale).write_text("stale", encoding="utf-8")

    with pytest.raises(ServerUnavailableError, match="127.0.0.1:9"):
        run_loadtest(config)

    assert not (tmp_path / "locust.log").exists()  # Locust never started
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # and nothing stale can pass for this run's results
