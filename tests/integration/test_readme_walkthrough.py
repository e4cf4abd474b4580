"""The README's "Bring your own model" walkthrough, run as written: it cannot go stale.

Each fenced block of that section that follows a `<!-- walkthrough: KIND [FILE] -->` comment is a step: `file X`
writes the block to X, `run` runs it with bash (the venv's `tritonforge` and `python` first on PATH), `output` is what
the run before it must print (each line, spacing aside), `serve` starts it in the background as a second terminal
would. Everything runs in a temporary folder; the server gets free loopback
ports in place of the defaults (the client commands' `127.0.0.1:8001` follows it) and is stopped with Ctrl-C's SIGINT
at the end, whatever happened.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient

from tritonforge.client import TritonClient
from tritonforge.serving.launcher import _free_ports

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Bring your own model"
DEFAULT_URL = "127.0.0.1:8001"
_STEP = re.compile(
    r"<!-- walkthrough: (?P<kind>file|run|serve|output)(?: (?P<target>\S+))? -->\n```[\w-]*\n(?P<text>.*?)```", re.S
)
_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Step:
    kind: str
    target: str | None
    text: str


def walkthrough_steps(readme: str) -> list[Step]:
    """The marked blocks of the walkthrough section, in order."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    return [Step(m["kind"], m["target"], m["text"]) for m in _STEP.finditer(section)]


def _squeeze(line: str) -> str:
    return " ".join(line.split())


def _wait_for_server(server: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"`tritonforge serve` exited with {server.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with grpcclient.InferenceServerClient(url) as client:
                if client.is_server_ready():
                    return
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    pytest.fail(f"`tritonforge serve` not ready after {timeout_s:.0f} s:\n{log.read_text(errors='replace')}")


def _stop(server: subprocess.Popen[bytes]) -> int:
    os.killpg(server.pid, signal.SIGINT)  # what Ctrl-C sends
    try:
        return server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        raise


def _import_file(path: Path) -> object:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_walkthrough_section_has_the_steps_from_export_to_load_test() -> None:
    steps = walkthrough_steps(README.read_text(encoding="utf-8"))
    kinds = [(s.kind, s.target) for s in steps]
    commands = " ".join(s.text for s in steps if s.kind in ("run", "serve"))

    assert ("file", "my_model.py") in kinds and ("serve", None) in kinds
    for command in ("tritonforge export", "tritonforge serve", "tritonforge model signature", "tritonforge infer",
                    "tritonforge loadtest"):  # fmt: skip
        assert command in commands
    assert kinds.index(("serve", None)) < [i for i, (k, _) in enumerate(kinds) if k == "run"][-1]


@pytest.mark.timeout(600)
def test_bring_your_own_model_walkthrough_runs_as_written_in_the_readme(tmp_path: Path) -> None:
    steps = walkthrough_steps(README.read_text(encoding="utf-8"))
    grpc_port, http_port, metrics_port = _free_ports(0, 0, 0)
    url = f"127.0.0.1:{grpc_port}"
    env = {**os.environ, "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}
    server: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    server_log = tmp_path / "serve.out"
    printed: list[str] = []
    try:
        for step in steps:
            if step.kind == "file":
                assert step.target is not None
                (tmp_path / step.target).write_text(step.text, encoding="utf-8")
            elif step.kind == "output":
                shown = [_squeeze(line) for line in printed[-1].splitlines()]
                for line in step.text.splitlines():
                    assert not line.strip() or _squeeze(line) in shown, (
                        f"README shows {line!r}; the run printed:\n{printed[-1]}"
                    )
            elif step.kind == "serve":
                ports = f" --grpc-port {grpc_port} --http-port {http_port} --metrics-port {metrics_port}"
                with server_log.open("wb") as out:
                    server = subprocess.Popen(
                        ["bash", "-c", "exec " + step.text.strip() + ports], cwd=tmp_path, env=env, stdout=out,
                        stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                _wait_for_server(server, url, server_log)
            else:
                assert server is None or DEFAULT_URL in step.text, f"a client step must name --url {DEFAULT_URL}"
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", step.text.replace(DEFAULT_URL, url)], cwd=tmp_path, env=env,
                    capture_output=True, text=True, timeout=300, check=False,
                )  # fmt: skip
                assert done.returncode == 0, f"$ {step.text}\n{done.stdout}\n{done.stderr}"
                printed.append(done.stdout)

        export_out, signature_out, infer_out, loadtest_out = printed[0], printed[1], printed[2], printed[3]
        assert "[batch, seq]" in export_out and "logits" in export_out
        for name in ("input_ids", "attention_mask", "logits", "int64", "float32", "[batch, -1]"):
            assert name in signature_out, signature_out
        assert "logits" in infer_out
        summary = json.loads((tmp_path / "loadtest_results" / "tiny_distilbert" / "summary.json").read_text())
        assert summary["passed"] is True and summary["requests"] > 0 and summary["failures"] == 0, loadtest_out

        # The served model answers the walkthrough's request as the user's torch model does.
        model = _import_file(tmp_path / "my_model.py").build_model().eval()  # type: ignore[attr-defined]
        with np.load(tmp_path / "request.npz") as request:
            feeds = {name: request[name] for name in request.files}
        with TritonClient(url, timeout_s=30.0) as client:
            served = client.infer("tiny_distilbert", feeds)["logits"]
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
        np.testing.assert_allclose(served, expected, atol=1e-4, rtol=1e-3)
    finally:
        if server is not None:
            exit_code = _stop(server) if server.poll() is None else server.returncode
    log = server_log.read_text(errors="replace")
    assert exit_code == 0 and "tritonserver stopped" in log, log
