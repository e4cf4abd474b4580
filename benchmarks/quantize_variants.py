"""Every quantized variant of an example model, gated and timed against FP32 side by side in one run.

    .venv/bin/python benchmarks/quantize_variants.py minilm --repeats 3 --accuracy-aware
    .venv/bin/python benchmarks/quantize_variants.py digits

Builds the example's FP32 model into a temporary repository, runs `quantize_to_repository` over a list of settings
(INT8 dynamic with and without per-channel / reduce-range, INT8 static QDQ with each calibration method, FP16), then
optionally the accuracy-aware search on plain INT8 dynamic, and prints one table: the gate's figures, pass/FAIL with
the shortfall, and the speed-up over FP32 at batch 1 and 16. Speed-ups are medians over `--repeats` rounds of
in-process ONNX Runtime, every variant and FP32 interleaved within a round, so a busy moment on the shared cores hits
all of them alike. MiniLM is gated on cosine (mean >= 0.99, min >= 0.98) over 500 standard-library sentences, with a
separate 128-sentence calibration set; digits on accuracy (drop <= 0.5 points) over its 450 held-out images.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.quality_gate import GateMetric, GateSpec
from tritonforge.converters.quantize import (
    CalibrationMethod,
    QuantMethod,
    QuantSettings,
    preprocess_model,
    quantize_model,
)
from tritonforge.converters.variants import VariantOutcome, measure_speed, quantize_to_repository, speed_feeds

DYNAMIC = QuantMethod.INT8_DYNAMIC
STATIC = QuantMethod.INT8_STATIC


def _settings(example: str) -> list[QuantSettings]:
    # MiniLM's attention mask holds -inf, which static INT8 cannot calibrate (see quantize.nonfinite_nodes): its static
    # variants quantize MatMul only; the default op types are kept for digits.
    op_types = ("MatMul",) if example == "minilm" else None
    return [
        QuantSettings(method=DYNAMIC),
        QuantSettings(method=DYNAMIC, per_channel=True),
        QuantSettings(method=DYNAMIC, reduce_range=True),
        QuantSettings(method=DYNAMIC, per_channel=True, reduce_range=True),
        *(QuantSettings(method=STATIC, calibration=c, op_types=op_types) for c in CalibrationMethod),
        QuantSettings(method=STATIC, per_channel=True, op_types=op_types),
        QuantSettings(method=QuantMethod.FP16),
    ]


def _example(example: str, repository: Path) -> tuple[str, EvalSet, EvalSet, GateSpec]:
    if example == "digits":
        from tritonforge.examples.digits import build_digits, load_split

        build_digits(repository=repository, weights_dir=repository.parent)
        split = load_split()
        eval_set = EvalSet.from_arrays({"image": split.x_test}, labels=split.y_test, batch_size=64)
        calibration = EvalSet.from_arrays({"image": split.x_train[:256]}, batch_size=64)
        return "digits", eval_set, calibration, GateSpec(metric=GateMetric.ACCURACY)
    from tritonforge.examples.minilm import ENCODER_NAME, export_encoder, sentence_eval_set
    from tritonforge.examples.text_corpus import evaluation_sentences

    export_encoder(repository)
    sentences = evaluation_sentences(n=628, seed=0)  # 500 to gate on, 128 others to calibrate with
    eval_set = sentence_eval_set(sentences[:500], batch_size=16)
    calibration = sentence_eval_set(sentences[500:], batch_size=16)
    return ENCODER_NAME, eval_set, calibration, GateSpec(metric=GateMetric.COSINE)


def _median_speedups(
    source: Path, outcomes: Sequence[VariantOutcome], calibration: EvalSet, eval_set: EvalSet, repeats: int, work: Path
) -> list[list[float] | None]:
    """Re-make each variant from its final settings and time them all with FP32, `repeats` times."""
    preprocessed = preprocess_model(source, work / "preprocessed.onnx")
    files: dict[str, Path] = {}
    for index, outcome in enumerate(outcomes):
        if outcome.gate is None:
            continue
        base = preprocessed if outcome.settings.is_int8 else source
        files[str(index)] = quantize_model(
            base, work / f"{index}.onnx", outcome.settings, calibration, preprocessed=outcome.settings.is_int8
        )
    feeds = speed_feeds(eval_set)
    ratios: dict[str, list[list[float]]] = {name: [] for name in files}
    for _ in range(repeats):
        speeds = measure_speed({"fp32": source, **files}, feeds, seconds=1.0)
        for name in files:
            ratios[name].append(
                [mine.items_per_s / ref.items_per_s for mine, ref in zip(speeds[name], speeds["fp32"], strict=True)]
            )
    medians: list[list[float] | None] = []
    for index in range(len(outcomes)):
        rounds = ratios.get(str(index))
        medians.append(None if rounds is None else [statistics.median(r[i] for r in rounds) for i in range(len(feeds))])
    return medians


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("example", choices=["digits", "minilm"])
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds; the table shows medians")
    parser.add_argument("--accuracy-aware", action="store_true", help="also run the search on plain INT8 dynamic")
    parser.add_argument("--sensitivity-items", type=int, default=128, help="items the search measures costs on")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(message)s", force=True)
    for noisy in ("root", "onnxruntime"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="tritonforge-bench-") as tmp:
        repository = Path(tmp) / "model_repository"
        model, eval_set, calibration, gate = _example(args.example, repository)
        common = {"repository": repository, "model_name": model, "eval_set": eval_set, "gate": gate}
        outcomes = quantize_to_repository(**common, settings=_settings(args.example), calibration=calibration)
        search_s = None
        if args.accuracy_aware:
            started = time.perf_counter()
            outcomes += quantize_to_repository(
                **common, settings=[QuantSettings(method=DYNAMIC)], variant_name=f"{model}_int8_aware",
                accuracy_aware=True, sensitivity_items=args.sensitivity_items,
            )  # fmt: skip
            search_s = time.perf_counter() - started
        work = Path(tmp) / "timing"
        work.mkdir()
        source = repository / model / "1" / "model.onnx"
        speedups = _median_speedups(source, outcomes, calibration, eval_set, args.repeats, work)
    print(f"\n{model}: {eval_set.num_items} evaluation items, gate {gate.to_dict()}, median of {args.repeats} rounds")
    print(f"{'variant':44s} {'gate':36s} {'x b1':>6s} {'x b16':>6s}  result")
    for outcome, ratios in zip(outcomes, speedups, strict=True):
        figures = outcome.gate.summary() if outcome.gate is not None else "-"
        times = [f"{r:6.2f}" for r in ratios] if ratios else ["     -", "     -"]
        result = "pass" if outcome.passed else f"FAIL {outcome.shortfall}"
        if outcome.search is not None:
            excluded = ", ".join(f"{c.name} ({c.tolerance_used:.2f})" for c in outcome.search.excluded)
            result += f"; kept in float: {excluded}"
        print(f"{outcome.settings.label:44s} {figures:36s} {times[0]} {times[-1]}  {result}")
    if search_s is not None:
        print(f"accuracy-aware run (costs on {args.sensitivity_items} items, search, gate, timing): {search_s:.0f}s")


if __name__ == "__main__":
    main()
