"""The end-to-end demo: build `digits`, serve it with the real tritonserver, classify over gRPC, load-test, stop.

    result = run_demo(DemoOptions(repository=Path("model_repository"), out_dir=Path("runs/demo")))
    assert result.passed

This is what `make demo` runs. Each step prints what it did; the demo passes only when the served model agrees with
torch on every held-out digit, reaches the accuracy floor, and the load test meets its SLO.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tritonforge.examples.digits import INPUT_NAME, MIN_TEST_ACCURACY, MODEL_NAME, OUTPUT_NAME, build_digits, load_split

if TYPE_CHECKING:
    from tritonforge.client import TritonClient
    from tritonforge.converters.parity import ParityReport

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What the demo builds, serves and checks.

    Attributes:
        repository: model repository that receives `digits` (version 1 is rebuilt in place).
        out_dir: where the load test writes its CSV, HTML and JSON summary.
        slo_file: SLO objectives for the load test.
        loadtest_seconds: load test duration.
        users: concurrent Locust users.
    """

    repository: Path = Path("model_repository")
    out_dir: Path = Path("runs/demo")
    slo_file: Path = Path("slo/digits.yaml")
    loadtest_seconds: int = 20
    users: int = 4


@dataclass(kw_only=True)
class DemoResult:
    """The demo's figures and verdicts."""

    torch_accuracy: float = 0.0
    served_accuracy: float = 0.0
    agreement: float = 0.0
    max_abs_logit_diff: float = float("inf")
    loadtest_passed: bool = False
    loadtest_summary: Path | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(self.checks.values())


def run_demo(options: DemoOptions, *, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole path once and return its figures (see the module docstring)."""
    from tritonforge.client import TritonClient
    from tritonforge.serving.launcher import EmbeddedTriton

    result = DemoResult()
    echo("1/4 training the digits CNN on scikit-learn's bundled digits and exporting it to ONNX")
    build = build_digits(repository=options.repository, overwrite_version=1)
    parity = ", ".join(f"{k}={v:.2e}" for k, v in _max_abs_by_output(build.exported.parity).items())
    echo(f"    test accuracy {build.test_accuracy:.4f}; parity max abs error {parity}")
    echo(f"    wrote {build.exported.onnx_path}")
    result.torch_accuracy = build.test_accuracy
    split = load_split()

    echo("2/4 starting the embedded tritonserver")
    with EmbeddedTriton(repository=options.repository) as server:
        echo(f"    ready: grpc {server.grpc_url}, metrics {server.metrics_url}")
        echo("3/4 classifying the held-out digits over gRPC")
        with TritonClient(server.grpc_url) as client:
            logits = _classify(client, split.x_test)
        predictions = logits.argmax(axis=1)
        result.served_accuracy = float((predictions == split.y_test).mean())
        result.agreement = float((predictions == build.torch_test_logits.argmax(axis=1)).mean())
        result.max_abs_logit_diff = float(np.abs(logits - build.torch_test_logits).max())
        echo(_prediction_table(predictions[:12], split.y_test[:12]))
        echo(
            f"    served accuracy {result.served_accuracy:.4f} (torch {result.torch_accuracy:.4f}) on "
            f"{len(split.y_test)} digits; agreement with torch {result.agreement:.2%}; "
            f"max |logit diff| {result.max_abs_logit_diff:.2e}"
        )
        echo(f"4/4 load test: {options.users} users for {options.loadtest_seconds}s against {options.slo_file}")
        result.loadtest_passed, result.loadtest_summary = _loadtest(server.grpc_url, options, echo)
    result.checks = {
        f"served accuracy >= {MIN_TEST_ACCURACY}": result.served_accuracy >= MIN_TEST_ACCURACY,
        "served predictions equal torch's": result.agreement == 1.0,
        "logits within 1e-4 of torch": result.max_abs_logit_diff <= 1e-4,
        "load test met its SLO": result.loadtest_passed,
    }
    for name, ok in result.checks.items():
        echo(f"    {'PASS' if ok else 'FAIL'}  {name}")
    echo("demo " + ("passed" if result.passed else "FAILED"))
    return result


def _classify(client: TritonClient, images: NDArray[np.float32], *, batch_size: int = 64) -> NDArray[np.float32]:
    chunks = [
        client.infer(MODEL_NAME, {INPUT_NAME: images[i : i + batch_size]})[OUTPUT_NAME]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks)


def _prediction_table(predictions: NDArray[np.int64], labels: NDArray[np.int64]) -> str:
    rows = ["    digit   " + " ".join(f"{i:>3}" for i in range(len(labels)))]
    rows.append("    label   " + " ".join(f"{int(v):>3}" for v in labels))
    rows.append("    served  " + " ".join(f"{int(v):>3}" for v in predictions))
    return "\n".join(rows)


def _max_abs_by_output(parity: ParityReport) -> dict[str, float]:
    worst: dict[str, float] = {}
    for check in parity.results:
        worst[check.output] = max(worst.get(check.output, 0.0), check.max_abs_err)
    return worst


def _loadtest(url: str, options: DemoOptions, echo: Callable[[str], None]) -> tuple[bool, Path]:
    from tritonforge.loadtests.report import format_table
    from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest
    from tritonforge.loadtests.slo import load_model_slo

    config = LoadTestConfig(
        host=url,
        model=MODEL_NAME,
        output_dir=options.out_dir,
        users=options.users,
        run_time_s=options.loadtest_seconds,
        slo=load_model_slo(options.slo_file, MODEL_NAME),
    )
    started = time.perf_counter()
    result = run_loadtest(config)
    echo(format_table(result))
    summary = options.out_dir / "summary.json"
    echo(f"    load test ended {time.perf_counter() - started:.1f}s after it started; summary: {summary}")
    return result.passed, summary
