"""The demo's decisions from the gate's own figures (given here, never timed): which digits model serves, and which
checks apply when an INT8 variant was not written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonforge.converters.merit import Merit
from tritonforge.converters.quantize import QuantMethod, QuantSettings
from tritonforge.converters.variants import VariantOutcome
from tritonforge.demo import DemoResult, demo_checks, served_digits_model

STATIC = QuantSettings(method=QuantMethod.INT8_STATIC)


def _outcome(speedups: dict[int, float], *, size_ratio: float = 0.27, written: bool = True) -> VariantOutcome:
    faster = all(r >= 1.05 for r in speedups.values())
    merit = Merit(size_ratio=size_ratio, speedups=speedups, smaller=size_ratio <= 0.9, faster=faster)
    return VariantOutcome(
        requested=STATIC, settings=STATIC, name="digits_int8", passed=True, gate=None, shortfall=None, search=None,
        speed=None, reference_speed=(), file_size=27, reference_size=100, merit=merit,
        refusal=None if written else "neither smaller nor faster than FP32 in this run (...)",
        written=Path("repo/digits_int8/1") if written else None,
    )  # fmt: skip


def test_fp32_serves_when_int8_does_not_beat_it_and_the_demo_says_so() -> None:
    served, why = served_digits_model(_outcome({1: 0.81, 16: 0.75}))
    assert served == "digits"
    assert why == (
        "INT8 does not beat FP32 for this CNN in process (size 0.27x FP32, speed 0.81x at batch 1, 0.75x at batch "
        "16): FP32 `digits` serves and is load-tested; digits_int8 is kept for its size only"
    )


def test_int8_serves_when_it_is_faster_at_every_batch_size() -> None:
    served, why = served_digits_model(_outcome({1: 1.6, 16: 1.3}))
    assert served == "digits_int8" and why.startswith("digits_int8 is faster than FP32 (")


@pytest.mark.parametrize("speedups", [{1: 1.6, 16: 0.9}, {1: 1.0, 16: 1.0}])
def test_int8_faster_at_one_batch_size_only_does_not_serve(speedups: dict[int, float]) -> None:
    assert served_digits_model(_outcome(speedups))[0] == "digits"


def test_fp32_serves_when_the_variant_was_not_written() -> None:
    served, why = served_digits_model(_outcome({1: 0.8, 16: 0.8}, size_ratio=1.1, written=False))
    assert served == "digits" and why.startswith("digits_int8 was not written (neither smaller nor faster")


def test_checks_leave_out_int8_checks_when_no_int8_variant_was_written() -> None:
    result = DemoResult(served_accuracy=0.99, agreement=1.0, max_abs_logit_diff=0.0, loadtest_passed=True)
    result.text = {"fp32_min": 0.9999}
    checks = demo_checks(result)
    assert not any("int8" in name for name in checks) and all(checks.values())
    result.int8_accuracy, result.torch_accuracy = 0.95, 0.99
    result.text.update(int8_mean=0.995, int8_min=0.97)
    checks = demo_checks(result)
    assert checks["digits_int8 accuracy drop <= 0.5 points"] is False
    assert checks["minilm_int8 served cos to FP32: mean >= 0.99, min >= 0.98"] is False
