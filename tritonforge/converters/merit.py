"""Whether a variant earns its name: it holds what the name says, and it is smaller or faster than FP32.

    evidence = precision_evidence(Path("variant.onnx"), QuantMethod.INT8_STATIC)   # {"Conv (QDQ)": 2, ...}
    merit = judge_merit(variant=figures["int8"], reference=figures["fp32"])          # speed.measure_models
    if not evidence or not merit.earned:
        print(merit.summary())   # "size 1.14x FP32, speed 0.81x at batch 1, 0.75x at batch 16"

Why: a quantizer can succeed and still make nothing worth its name. The accuracy-aware search may keep every node in
float (an "int8" file with no INT8 op, larger than FP32 because of the pre-processing), and on a small CNN on a CPU an
INT8 variant can be slower than FP32 at every batch size. Both are checked on what was actually made: the written
graph, and the sizes and speeds measured side by side with FP32 in the same run (`speed.measure_models`).

What counts as INT8: an integer op (ConvInteger, MatMulInteger, DynamicQuantize*, QGemm, QAttention, QLinear*,
QOrdered*, ...) or a DequantizeLinear whose output feeds a computing op (the QDQ format: that op runs on quantized
values; Q/DQ themselves and ops that only move values, such as Reshape or Flatten, do not count). What counts as
FP16: float16 initializers, or an op other than Cast fed a float16 tensor. Ops inside subgraphs (If, Loop, Scan)
count too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonforge.converters.quantize import QuantMethod
from tritonforge.converters.speed import Measured

MAX_SIZE_RATIO = 0.9
"""Smaller means at most this share of FP32's file size (a few bytes saved is not what "int8" promises)."""
MIN_SPEEDUP = 1.05
"""Faster means at least this many times FP32's items/s at every timed batch size (below it is noise here)."""

INT8_OPS = frozenset(
    {
        "ConvInteger",
        "MatMulInteger",
        "MatMulIntegerToFloat",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLSTM",
        "QAttention",
        "QEmbedLayerNormalization",
        "QGemm",
    }
)
"""Integer ops ONNX Runtime's quantizers write; every QLinear* and QOrdered* op counts as well."""
_INT8_PREFIXES = ("QLinear", "QOrdered")
_QDQ = frozenset({"QuantizeLinear", "DequantizeLinear"})
_LAYOUT_OPS = frozenset(
    {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Concat", "Split", "Slice", "Expand"}
)
"""Ops that only move values: one fed by DequantizeLinear computes nothing in INT8, so it shows nothing."""


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of `graph`, subgraphs (If, Loop, Scan bodies) included."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)


def _int8_evidence(nodes: list[Any]) -> Counter[str]:
    found: Counter[str] = Counter()
    dequantized = {out for n in nodes if n.op_type == "DequantizeLinear" for out in n.output}
    for node in nodes:
        if node.op_type in INT8_OPS or node.op_type.startswith(_INT8_PREFIXES):
            found[node.op_type] += 1
        elif node.op_type not in _QDQ | _LAYOUT_OPS and any(name in dequantized for name in node.input):
            found[f"{node.op_type} (QDQ)"] += 1
    return found


def _fp16_evidence(model: Any, nodes: list[Any]) -> Counter[str]:
    import onnx

    half_type = onnx.TensorProto.FLOAT16
    found: Counter[str] = Counter()
    half = {i.name for i in model.graph.initializer if i.data_type == half_type}
    if half:
        found["float16 weights"] = len(half)
    typed = (*model.graph.value_info, *model.graph.output)
    half |= {v.name for v in typed if v.type.tensor_type.elem_type == half_type}
    for node in nodes:
        if node.op_type == "Constant" and any(a.name == "value" and a.t.data_type == half_type for a in node.attribute):
            half.update(node.output)
        elif node.op_type == "Cast" and any(a.name == "to" and a.i == half_type for a in node.attribute):
            half.update(node.output)
    for node in nodes:
        if node.op_type not in ("Cast", "Constant") and any(name in half for name in node.input):
            found[f"{node.op_type} (float16)"] += 1
    return found


def precision_evidence(model_path: Path, method: QuantMethod) -> dict[str, int]:
    """Count what in the written graph shows `method` at work: op type (or "float16 weights") -> how many.

    Empty means the variant holds no quantized op (INT8) or no float16 weight or op (FP16): it is the FP32 model
    under another name.
    """
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    nodes = list(_nodes(model.graph))
    found = _fp16_evidence(model, nodes) if method is QuantMethod.FP16 else _int8_evidence(nodes)
    return dict(sorted(found.items()))


def describe_evidence(evidence: dict[str, int]) -> str:
    """The evidence in a few words, e.g. "MatMulInteger x2, DynamicQuantizeLSTM x1"."""
    return ", ".join(f"{kind} x{count}" for kind, count in evidence.items()) or "nothing"


@dataclass(frozen=True, kw_only=True)
class Merit:
    """A variant's size and speed against FP32 from one side-by-side measurement, and what they earn it.

    Attributes:
        size_ratio: variant file size / FP32 file size.
        speedups: batch size -> variant items/s / FP32 items/s (medians).
        smaller: size_ratio <= MAX_SIZE_RATIO.
        faster: every speed-up >= MIN_SPEEDUP (False when nothing was timed).
    """

    size_ratio: float
    speedups: dict[int, float]
    smaller: bool
    faster: bool

    @property
    def earned(self) -> bool:
        """Smaller or faster than FP32: the variant is worth writing."""
        return self.smaller or self.faster

    def summary(self) -> str:
        """E.g. "size 0.27x FP32, speed 0.81x at batch 1, 0.75x at batch 16"."""
        speeds = ", ".join(f"{ratio:.2f}x at batch {batch}" for batch, ratio in self.speedups.items())
        return f"size {self.size_ratio:.2f}x FP32, speed {speeds or 'not measured'}"

    def to_dict(self) -> dict[str, Any]:
        """Return the figures and the verdicts for a report or a manifest, with the thresholds they used."""
        return {
            "size_ratio": round(self.size_ratio, 4),
            "speedup": {str(batch): round(ratio, 3) for batch, ratio in self.speedups.items()},
            "smaller": self.smaller,
            "faster": self.faster,
            "earned": self.earned,
            "rule": f"smaller (size <= {MAX_SIZE_RATIO:g}x FP32) or faster (>= {MIN_SPEEDUP:g}x FP32 items/s "
            "at every timed batch size), measured side by side in one run",
        }


def judge_merit(*, variant: Measured, reference: Measured) -> Merit:
    """Decide from one side-by-side measurement whether a variant is smaller or faster than FP32."""
    size_ratio = variant.size_bytes / reference.size_bytes if reference.size_bytes else float("inf")
    speedups = {
        mine.batch_size: mine.items_per_s / ref.items_per_s
        for mine, ref in zip(variant.speed, reference.speed, strict=True)
        if ref.items_per_s > 0
    }
    return Merit(
        size_ratio=size_ratio,
        speedups=speedups,
        smaller=size_ratio <= MAX_SIZE_RATIO,
        faster=bool(speedups) and all(ratio >= MIN_SPEEDUP for ratio in speedups.values()),
    )
