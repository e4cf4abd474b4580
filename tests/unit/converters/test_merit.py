"""Whether a variant earns its name: what its graph holds (real digits variants), and size/speed verdicts (figures
given, never timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.merit import describe_evidence, judge_merit, precision_evidence
from tritonforge.converters.quantize import QuantMethod, QuantSettings, preprocess_model, quantize_model
from tritonforge.converters.speed import Measured, SpeedPoint
from tritonforge.examples.digits import load_split


@pytest.fixture(scope="module")
def digits_onnx(trained_digits: Path) -> Path:
    return trained_digits / "digits" / "1" / "model.onnx"


def _variant(source: Path, tmp_path: Path, settings: QuantSettings) -> Path:
    calibration = EvalSet.from_arrays({"image": load_split().x_train[:64]}, batch_size=64)
    base = preprocess_model(source, tmp_path / "pre.onnx") if settings.is_int8 else source
    return quantize_model(base, tmp_path / "variant.onnx", settings, calibration, preprocessed=settings.is_int8)


def test_the_fp32_model_holds_nothing_of_either_method(digits_onnx: Path) -> None:
    assert precision_evidence(digits_onnx, QuantMethod.INT8_DYNAMIC) == {}
    assert precision_evidence(digits_onnx, QuantMethod.FP16) == {}


def test_dynamic_int8_holds_integer_ops(digits_onnx: Path, tmp_path: Path) -> None:
    variant = _variant(digits_onnx, tmp_path, QuantSettings(method=QuantMethod.INT8_DYNAMIC))
    assert precision_evidence(variant, QuantMethod.INT8_DYNAMIC) == {"ConvInteger": 2, "MatMulInteger": 2}


def test_static_int8_holds_ops_fed_by_dequantize_linear(digits_onnx: Path, tmp_path: Path) -> None:
    variant = _variant(digits_onnx, tmp_path, QuantSettings(method=QuantMethod.INT8_STATIC))
    evidence = precision_evidence(variant, QuantMethod.INT8_STATIC)
    assert evidence["Conv (QDQ)"] == 2 and evidence["Gemm (QDQ)"] == 2
    assert all(kind.endswith("(QDQ)") for kind in evidence)


def test_an_int8_variant_with_every_node_excluded_holds_nothing(digits_onnx: Path, tmp_path: Path) -> None:
    excluded = QuantSettings(method=QuantMethod.INT8_STATIC, exclude_nodes=("/0/Conv", "/2/Conv", "/6/Gemm", "/8/Gemm"))
    variant = _variant(digits_onnx, tmp_path, excluded)
    assert precision_evidence(variant, QuantMethod.INT8_STATIC) == {}


def test_fp16_holds_float16_weights_and_ops(digits_onnx: Path, tmp_path: Path) -> None:
    variant = _variant(digits_onnx, tmp_path, QuantSettings(method=QuantMethod.FP16))
    evidence = precision_evidence(variant, QuantMethod.FP16)
    assert evidence["float16 weights"] == 8 and evidence["Conv (float16)"] == 2
    assert describe_evidence({"MatMulInteger": 2, "ConvInteger": 1}) == "MatMulInteger x2, ConvInteger x1"


def _figures(size: int, *rates: float) -> Measured:
    batches = (1, 16)[: len(rates)]
    pairs = zip(batches, rates, strict=True)
    points = tuple(SpeedPoint(batch_size=b, p50_ms=b / r * 1e3, items_per_s=r, runs=5) for b, r in pairs)
    return Measured(size_bytes=size, speed=points)


@pytest.mark.parametrize(
    ("size", "rates", "smaller", "faster"),
    [
        (27, (810.0, 750.0), True, False),  # the INT8 digits CNN: a quarter of the file, slower in process
        (100, (2430.0, 1820.0), False, True),
        (91, (1040.0, 1040.0), False, False),  # 9% smaller, 4% faster: neither counts
        (100, (1200.0, 900.0), False, False),  # faster at batch 1 only
        (110, (800.0, 700.0), False, False),  # larger and slower
    ],
)
def test_judge_merit_is_smaller_or_faster_than_fp32_at_every_batch_size(
    size: int, rates: tuple[float, float], smaller: bool, faster: bool
) -> None:
    merit = judge_merit(variant=_figures(size, *rates), reference=_figures(100, 1000.0, 1000.0))
    assert (merit.smaller, merit.faster, merit.earned) == (smaller, faster, smaller or faster)
    assert merit.speedups == {1: rates[0] / 1000.0, 16: rates[1] / 1000.0}


def test_merit_summary_and_dict_carry_the_figures_and_the_rule() -> None:
    merit = judge_merit(variant=_figures(27, 810.0, 750.0), reference=_figures(100, 1000.0, 1000.0))
    assert merit.summary() == "size 0.27x FP32, speed 0.81x at batch 1, 0.75x at batch 16"
    figures = merit.to_dict()
    assert figures["speedup"] == {"1": 0.81, "16": 0.75} and figures["earned"] is True
    assert "side by side in one run" in figures["rule"]
