"""The quality gate: a variant must keep the FP32 model's task metric on a real evaluation set, or it is not written.

    reference = run_model(Path("digits/1/model.onnx"), eval_set)
    candidate = run_model(Path("/tmp/digits_int8.onnx"), eval_set)
    result = evaluate_gate(reference, candidate, GateSpec(metric=GateMetric.ACCURACY), labels=eval_set.labels)
    if not result.passed:
        print(result.shortfall)   # "accuracy drop 0.67 points > 0.5 by 0.17"

Three metrics, one per kind of model: accuracy against labels (classifiers; the drop in percentage points from the
FP32 model's own accuracy), cosine similarity of each item's output to the FP32 output (embeddings; mean and minimum,
since one badly hurt sentence matters even when the mean looks fine) and max absolute error (anything else). Every
figure that can be computed is reported; only the chosen metric decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tritonforge.converters.eval_set import EvalSet
from tritonforge.errors import ConfigError, ConversionError, QualityGateError

__all__ = [
    "GateMetric",
    "GateResult",
    "GateSpec",
    "QualityGateError",
    "check_scores_output",
    "evaluate_gate",
    "run_model",
]


class GateMetric(str, Enum):
    """The task metric a variant is gated on."""

    ACCURACY = "accuracy"
    """Top-1 accuracy against labels; the drop from FP32 in percentage points."""
    COSINE = "cosine"
    """Cosine similarity of each item's output to FP32's: mean and minimum over items."""
    MAX_ABS = "max-abs"
    """The largest absolute difference from FP32's output."""


@dataclass(frozen=True, kw_only=True)
class GateSpec:
    """Which metric decides, on which output, and the tolerances.

    Attributes:
        metric: accuracy, cosine or max-abs.
        output: the output gated on; None = the model's first output.
        max_accuracy_drop_points: accuracy: the largest drop allowed, in percentage points.
        min_cosine_mean: cosine: the lowest mean cosine similarity allowed.
        min_cosine_min: cosine: the lowest per-item cosine similarity allowed.
        max_abs_error: max-abs: the largest absolute difference allowed.
    """

    metric: GateMetric
    output: str | None = None
    max_accuracy_drop_points: float = 0.5
    min_cosine_mean: float = 0.99
    min_cosine_min: float = 0.98
    max_abs_error: float = 1e-2

    def __post_init__(self) -> None:
        object.__setattr__(self, "metric", GateMetric(self.metric))
        if self.max_accuracy_drop_points < 0:
            raise ConfigError(f"max accuracy drop {self.max_accuracy_drop_points} points must be >= 0")
        for name in ("min_cosine_mean", "min_cosine_min"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} {getattr(self, name)} must be between -1 and 1")
        if self.max_abs_error < 0:
            raise ConfigError(f"max abs error {self.max_abs_error} must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Return the spec for a manifest: the metric, the output and the tolerances that apply to it."""
        out: dict[str, Any] = {"metric": self.metric.value, "output": self.output}
        if self.metric is GateMetric.ACCURACY:
            out["max_accuracy_drop_points"] = self.max_accuracy_drop_points
        elif self.metric is GateMetric.COSINE:
            out.update(min_cosine_mean=self.min_cosine_mean, min_cosine_min=self.min_cosine_min)
        else:
            out["max_abs_error"] = self.max_abs_error
        return out


@dataclass(frozen=True, kw_only=True)
class GateResult:
    """The gate's figures for one candidate against the FP32 reference.

    Attributes:
        metric: the metric that decided.
        passed: whether the candidate is within tolerance.
        items: how many evaluation items were compared.
        cosine_mean: mean over items of the cosine similarity to the reference output.
        cosine_min: the lowest per-item cosine similarity.
        max_abs_error: the largest absolute difference from the reference output.
        reference_accuracy: the FP32 model's accuracy (0..1), when labels were given and the output is class scores.
        candidate_accuracy: the candidate's accuracy (0..1), when labels were given and the output is class scores.
        drop_points: reference minus candidate accuracy, in percentage points (negative: it improved).
        tolerance_used: how much of the allowed loss the candidate uses (<= 1 passes; inf for NaN/Inf output);
            one number to rank candidates by.
        shortfall: one line saying by how much each failed criterion missed; None when passed.
    """

    metric: GateMetric
    passed: bool
    items: int
    cosine_mean: float
    cosine_min: float
    max_abs_error: float
    reference_accuracy: float | None = None
    candidate_accuracy: float | None = None
    drop_points: float | None = None
    tolerance_used: float
    shortfall: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the figures for a manifest (non-finite numbers as strings, which JSON can carry)."""
        out = asdict(self)
        out["metric"] = self.metric.value
        return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def summary(self) -> str:
        """The deciding figures in a few words, e.g. "cos mean 0.9951 min 0.9812"."""
        if self.metric is GateMetric.ACCURACY:
            return f"acc {self.candidate_accuracy:.4f} (drop {self.drop_points:+.2f} pts)"
        if self.metric is GateMetric.COSINE:
            return f"cos mean {self.cosine_mean:.4f} min {self.cosine_min:.4f}"
        return f"max abs {self.max_abs_error:.3g}"


def open_session(onnx_path: Path) -> Any:
    """Open an ONNX Runtime CPU session with ORT's own log quiet (failures are reported as ConversionError).

    Raises:
        ConversionError: ONNX Runtime cannot load the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's pybind errors share no base but Exception
        raise ConversionError(f"ONNX Runtime cannot load {onnx_path}: {' '.join(str(exc).split())[:240]}") from exc


def output_name(session: Any, output: str | None) -> str:
    """Return `output`, or the session's first output; ConfigError when the model has no such output."""
    names = [o.name for o in session.get_outputs()]
    if output is None:
        return str(names[0])
    if output not in names:
        raise ConfigError(f"the model has no output '{output}'; it has {names}")
    return output


_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)")
SCORES_SHAPE = "float [N, C>=2]"
"""What the accuracy gate takes: one row of class scores or logits per item (it compares their argmax to labels)."""


def _declared_scores(onnx_type: str, shape: Sequence[Any]) -> bool:
    classes = shape[-1] if len(shape) == 2 else None
    return onnx_type in _FLOAT_TYPES and len(shape) == 2 and not (isinstance(classes, int) and classes < 2)


def check_scores_output(session: Any, output: str) -> None:
    """Refuse an accuracy gate on an output that is not class scores or logits (float [N, C>=2]).

    An integer class id, an [N, 1] score or a 3-D tensor gives an argmax that means nothing: gated on an int64
    class-id output [N, 1], the gate used to report a constant accuracy and "pass" for any variant.

    Raises:
        ConfigError: the output is not float [N, C>=2]; the message names the outputs that would do.
    """
    declared = {o.name: (o.type, list(o.shape)) for o in session.get_outputs()}
    onnx_type, shape = declared[output]
    if _declared_scores(onnx_type, shape):
        return
    usable = [name for name, (kind, dims) in declared.items() if _declared_scores(kind, dims)]
    fix = (
        f"gate on {' or '.join(repr(u) for u in usable)} (--output {usable[0]})"
        if usable
        else "this model has no such output: use --metric max-abs (or cosine for embeddings)"
    )
    kind = onnx_type.removeprefix("tensor(").removesuffix(")")
    dims = "x".join(str(d) if isinstance(d, int) else "N" if i == 0 else "?" for i, d in enumerate(shape))
    raise ConfigError(
        f"the accuracy gate takes class scores or logits, {SCORES_SHAPE}; output '{output}' is {kind} [{dims}]: {fix}"
    )


def _array_scores_problem(values: npt.NDArray[Any]) -> str | None:
    if values.dtype.kind != "f":
        return f"{values.dtype} values"
    if values.ndim != 2 or values.shape[1] < 2:
        return f"shape {list(values.shape)}"
    return None


def scores_accuracy(values: npt.NDArray[Any], labels: npt.NDArray[Any] | None) -> float | None:
    """Top-1 accuracy of class scores against labels; None without labels or when `values` are not class scores."""
    if labels is None or _array_scores_problem(values) is not None:
        return None
    return float((values.argmax(axis=1) == labels).mean())


def run_model(onnx_path: Path, eval_set: EvalSet, output: str | None = None) -> npt.NDArray[Any]:
    """Run a model over every batch of `eval_set` and return one output, batches joined on the first axis.

    Args:
        onnx_path: the model.
        eval_set: inputs in batches; padding may differ per batch as long as the output's shape does not
            (e.g. pooled embeddings [batch, dim]).
        output: the output to keep; None = the first one.

    Raises:
        ConfigError: the model lacks the output, or its shape differs between batches (gate on a pooled output).
        ConversionError: the model cannot be loaded or fails on a batch.
    """
    session = open_session(onnx_path)
    name = output_name(session, output)
    parts = []
    for index, batch in enumerate(eval_set.batches):
        try:
            (values,) = session.run([name], batch)
        except Exception as exc:  # ORT raises InvalidArgument, Fail... with no common base
            raise ConversionError(
                f"{onnx_path.name} failed on evaluation batch {index}: {' '.join(str(exc).split())[:240]}; "
                "check the evaluation set's input names, dtypes and shapes against the model"
            ) from exc
        parts.append(np.asarray(values))
    shapes = {part.shape[1:] for part in parts}
    if len(shapes) != 1:
        raise ConfigError(
            f"output '{name}' has per-item shapes {sorted(shapes)} across batches; gate on an output whose shape "
            "does not depend on padding (e.g. a pooled embedding), or pad every batch alike"
        )
    return np.concatenate(parts, axis=0)


def row_cosines(reference: npt.NDArray[Any], candidate: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Cosine similarity of each row pair (rows flattened); two zero rows count as 1.0, one zero row as 0.0."""
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    cand = candidate.reshape(len(candidate), -1).astype(np.float64)
    dots = np.einsum("ij,ij->i", ref, cand)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(cand, axis=1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    return np.where(both_zero, 1.0, cosines)


def _ratio(used: float, allowed: float) -> float:
    if not math.isfinite(used):
        return math.inf
    if used <= 0:
        return 0.0
    return used / allowed if allowed > 0 else math.inf


def evaluate_gate(
    reference: npt.NDArray[Any],
    candidate: npt.NDArray[Any],
    spec: GateSpec,
    labels: npt.NDArray[Any] | None = None,
) -> GateResult:
    """Compare a candidate's output with the FP32 reference's on the same items and decide.

    Args:
        reference: the FP32 model's output, one row per item.
        candidate: the variant's output, same shape.
        spec: the metric and tolerances.
        labels: one class index per item (needed for accuracy; reported whenever given, for class scores).

    Returns:
        The figures, whether the candidate passed and, if not, by how much it missed.

    Raises:
        ConfigError: shapes differ, or accuracy is asked for without labels (or labels of the wrong length).
    """
    if reference.shape != candidate.shape:
        raise ConfigError(f"reference output shape {reference.shape} differs from the candidate's {candidate.shape}")
    if len(reference) == 0:
        raise ConfigError("the evaluation set produced no items to compare")
    if labels is not None and len(labels) != len(reference):
        raise ConfigError(f"{len(labels)} labels for {len(reference)} evaluation items; give one label per item")
    if spec.metric is GateMetric.ACCURACY and labels is None:
        raise ConfigError("the accuracy gate needs labels; add a 'labels' array to the evaluation set's .npz")
    problem = _array_scores_problem(reference)
    if spec.metric is GateMetric.ACCURACY and problem is not None:
        raise ConfigError(
            f"the accuracy gate takes class scores or logits, {SCORES_SHAPE}; the gated output has {problem}: "
            "gate on the model's score or logit output (--output NAME), or use --metric max-abs"
        )
    finite = bool(np.isfinite(candidate).all())
    cosines = row_cosines(reference, candidate)
    cosine_mean = float(cosines.mean()) if finite else math.nan
    cosine_min = float(cosines.min()) if finite else math.nan
    max_abs = float(np.abs(reference.astype(np.float64) - candidate).max()) if finite else math.inf
    cand_acc = drop = None
    ref_acc = scores_accuracy(reference, labels)  # an argmax over anything but class scores means nothing
    if ref_acc is not None:
        cand_acc = (scores_accuracy(candidate, labels) or 0.0) if finite else 0.0
        drop = (ref_acc - cand_acc) * 100.0
    misses: list[str] = []
    if not finite:
        used = math.inf
        misses.append("the candidate's output holds NaN/Inf")
    elif spec.metric is GateMetric.ACCURACY:
        assert drop is not None  # labels are checked above
        used = _ratio(drop, spec.max_accuracy_drop_points)
        if drop > spec.max_accuracy_drop_points:
            misses.append(
                f"accuracy drop {drop:.2f} points > {spec.max_accuracy_drop_points:g} "
                f"by {drop - spec.max_accuracy_drop_points:.2f}"
            )
    elif spec.metric is GateMetric.COSINE:
        used = max(
            _ratio(1.0 - cosine_mean, 1.0 - spec.min_cosine_mean), _ratio(1.0 - cosine_min, 1.0 - spec.min_cosine_min)
        )
        for what, value, floor in (
            ("mean", cosine_mean, spec.min_cosine_mean),
            ("min", cosine_min, spec.min_cosine_min),
        ):
            if value < floor:
                misses.append(f"cosine {what} {value:.4f} < {floor:g} by {floor - value:.4f}")
    else:
        used = _ratio(max_abs, spec.max_abs_error)
        if max_abs > spec.max_abs_error:
            misses.append(f"max abs error {max_abs:.3g} > {spec.max_abs_error:g} by {max_abs - spec.max_abs_error:.3g}")
    return GateResult(
        metric=spec.metric,
        passed=not misses,
        items=len(reference),
        cosine_mean=cosine_mean,
        cosine_min=cosine_min,
        max_abs_error=max_abs,
        reference_accuracy=ref_acc,
        candidate_accuracy=cand_acc,
        drop_points=drop,
        tolerance_used=used,
        shortfall="; ".join(misses) or None,
    )
