"""The examples' gated INT8 variants: `digits_int8` and `minilm_encoder_int8` (served as the `minilm_int8` ensemble).

    digits = quantize_digits(Path("model_repository"))          # needs `digits` (build_digits) first
    text = quantize_minilm(Path("model_repository"))            # needs `minilm_encoder` (build_minilm) first
    print(text.outcome.gate.summary(), text.outcome.speedups)

The settings are the ones measured best on these CPUs (see the README's quantization section): digits takes static
INT8 (QDQ, MinMax calibration on training images; the ConvInteger kernels of dynamic INT8 are slower still on this
CNN), gated on held-out accuracy; MiniLM takes dynamic INT8 with per-channel weights, gated on the cosine similarity
to FP32 over 500 real sentences, with the accuracy-aware search as the safety net because its margin on the minimum
cosine is thin. A variant that fails its gate raises QualityGateError and writes nothing. One that passes is written
only if the gate's own side-by-side measurement finds it smaller or faster than FP32; otherwise the outcome says why
(`refusal`) and nothing is written, which is not an error: FP32 keeps serving. Whether INT8 is also the faster model
to serve is `outcome.merit.faster`, decided on the same measurement at run time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.quality_gate import GateMetric, GateSpec
from tritonforge.converters.quantize import CalibrationMethod, QuantMethod, QuantSettings
from tritonforge.converters.variants import VariantOutcome, quantize_to_repository
from tritonforge.errors import QualityGateError

_LOGGER = logging.getLogger(__name__)

DIGITS_INT8 = "digits_int8"
MINILM_ENCODER_INT8 = "minilm_encoder_int8"
MINILM_INT8 = "minilm_int8"
CALIBRATION_IMAGES = 256
EVAL_SENTENCES = 500
SENSITIVITY_SENTENCES = 128


@dataclass(frozen=True, kw_only=True)
class TextVariant:
    """The MiniLM INT8 encoder and the ensemble that serves it to clients sending strings.

    Attributes:
        outcome: the encoder variant's gate figures, size and speed against FP32, and where it was written.
        ensemble_dir: the `minilm_int8` ensemble's version folder; None when the encoder variant was not written.
    """

    outcome: VariantOutcome
    ensemble_dir: Path | None


def _gated(outcomes: list[VariantOutcome]) -> VariantOutcome:
    """The one outcome; a failed gate is an error, a variant refused for holding no INT8 op or no gain is not."""
    outcome = outcomes[0]
    if not outcome.passed:
        raise QualityGateError(f"{outcome.name} failed its gate: {outcome.shortfall}; nothing was written")
    if outcome.written is None:
        _LOGGER.warning("%s passed its gate but was not written: %s", outcome.name, outcome.refusal)
    return outcome


def quantize_digits(repository: Path, *, overwrite: bool = True) -> VariantOutcome:
    """Write `digits_int8`: static INT8 of `digits`, gated on a held-out accuracy drop of at most 0.5 points.

    It is written only if it is also smaller or faster than FP32 on the gate's own measurement (see the outcome's
    `merit` and `refusal`).

    Raises:
        QualityGateError: the variant lost more accuracy than allowed (nothing is written).
    """
    from tritonforge.examples.digits import INPUT_NAME, MODEL_NAME, load_split

    split = load_split()
    eval_set = EvalSet.from_arrays({INPUT_NAME: split.x_test}, labels=split.y_test, batch_size=64)
    calibration = EvalSet.from_arrays({INPUT_NAME: split.x_train[:CALIBRATION_IMAGES]}, batch_size=64)
    settings = QuantSettings(method=QuantMethod.INT8_STATIC, calibration=CalibrationMethod.MINMAX)
    return _gated(
        quantize_to_repository(
            repository=repository,
            model_name=MODEL_NAME,
            settings=[settings],
            eval_set=eval_set,
            gate=GateSpec(metric=GateMetric.ACCURACY, max_accuracy_drop_points=0.5),
            calibration=calibration,
            variant_name=DIGITS_INT8,
            overwrite=overwrite,
        )  # fmt: skip
    )


def quantize_minilm(repository: Path, *, overwrite: bool = True, accuracy_aware: bool = True) -> TextVariant:
    """Write `minilm_encoder_int8` (dynamic INT8, per-channel) and the `minilm_int8` ensemble in front of it.

    Neither is written when the variant is not smaller or faster than FP32 (the outcome says why).

    Raises:
        QualityGateError: no variant met cosine mean >= 0.99 and min >= 0.98 (nothing is written).
    """
    from tritonforge.examples.minilm import ENCODER_NAME, evaluation_sentences, sentence_eval_set, write_text_ensemble

    eval_set = sentence_eval_set(evaluation_sentences(EVAL_SENTENCES, seed=0), batch_size=16)
    settings = QuantSettings(method=QuantMethod.INT8_DYNAMIC, per_channel=True)
    outcome = _gated(
        quantize_to_repository(
            repository=repository,
            model_name=ENCODER_NAME,
            settings=[settings],
            eval_set=eval_set,
            gate=GateSpec(metric=GateMetric.COSINE, min_cosine_mean=0.99, min_cosine_min=0.98),
            variant_name=MINILM_ENCODER_INT8,
            accuracy_aware=accuracy_aware,
            sensitivity_items=SENSITIVITY_SENTENCES,
            overwrite=overwrite,
        )  # fmt: skip
    )
    if outcome.written is None:
        return TextVariant(outcome=outcome, ensemble_dir=None)
    ensemble_dir = write_text_ensemble(
        repository, name=MINILM_INT8, encoder=MINILM_ENCODER_INT8, version=1, overwrite=overwrite
    )
    return TextVariant(outcome=outcome, ensemble_dir=ensemble_dir)
