"""Make one INT8 or FP16 variant of an ONNX model with ONNX Runtime's quantization tools and onnxconverter-common.

    settings = QuantSettings(method=QuantMethod.INT8_DYNAMIC, per_channel=True)
    quantize_model(Path("digits/1/model.onnx"), Path("/tmp/digits_int8.onnx"), settings, calibration=None)
    static = QuantSettings(method=QuantMethod.INT8_STATIC, calibration=CalibrationMethod.ENTROPY)
    quantize_model(source, output, static, calibration=EvalSet.from_npz(Path("calib.npz")))

Why a module of its own: the three methods need different preparation (INT8 runs ORT's `quant_pre_process` first,
with symbolic shape inference off because it fails on transformer graphs such as MiniLM; static INT8 needs a
calibration reader; FP16 needs a NaN/Inf check), and the gate and the accuracy-aware search must be able to make the
same file again with a few nodes excluded. Every intermediate file lives in a temporary folder; the output is written
atomically, so a failure never leaves half a model behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from tritonforge._atomic import atomic_output
from tritonforge.converters.eval_set import EvalSet
from tritonforge.errors import ConfigError, ConversionError

_LOGGER = logging.getLogger(__name__)

DEFAULT_PERCENTILE = 99.999
FP16_CHECK_BATCHES = 4
"""How many calibration batches the FP16 NaN/Inf check runs (the gate later runs the whole evaluation set)."""


class QuantMethod(str, Enum):
    """How the variant's weights (and activations) are stored."""

    INT8_DYNAMIC = "int8-dynamic"
    """INT8 weights, activations quantized at run time: no calibration data; ORT's choice for transformers."""
    INT8_STATIC = "int8-static"
    """INT8 weights and activations in QDQ format, activation ranges calibrated on a calibration set."""
    FP16 = "fp16"
    """Half-precision weights and compute, inputs and outputs kept float32 (for GPUs; slow on most CPUs)."""


class CalibrationMethod(str, Enum):
    """How static INT8 picks each activation's range from the calibration set."""

    MINMAX = "minmax"
    """The observed minimum and maximum."""
    ENTROPY = "entropy"
    """The range that minimises the KL divergence between float and quantized histograms."""
    PERCENTILE = "percentile"
    """The `percentile` of absolute values (clips rare outliers)."""


@dataclass(frozen=True, kw_only=True)
class QuantSettings:
    """Everything that decides the bytes of a variant, recorded in its manifest.

    Attributes:
        method: INT8 dynamic, INT8 static (QDQ) or FP16.
        per_channel: INT8 only: one weight scale per output channel instead of per tensor.
        reduce_range: INT8 only: 7-bit weights (helps on CPUs without VNNI).
        calibration: INT8 static only: how activation ranges are chosen.
        percentile: INT8 static with PERCENTILE only: the percentile kept.
        exclude_nodes: graph node names left in float32 (names after ORT's pre-processing for INT8).
        fp16_op_block_list: FP16 only: op types kept in float32; None = onnxconverter-common's default list.
        op_types: INT8 only: the op types to quantize; None = every type ORT quantizes for the method.
    """

    method: QuantMethod
    per_channel: bool = False
    reduce_range: bool = False
    calibration: CalibrationMethod = CalibrationMethod.MINMAX
    percentile: float = DEFAULT_PERCENTILE
    exclude_nodes: tuple[str, ...] = ()
    fp16_op_block_list: tuple[str, ...] | None = None
    op_types: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for attr in ("exclude_nodes", "fp16_op_block_list", "op_types"):
            value = getattr(self, attr)
            if isinstance(value, list):
                object.__setattr__(self, attr, tuple(value))
        object.__setattr__(self, "method", QuantMethod(self.method))
        object.__setattr__(self, "calibration", CalibrationMethod(self.calibration))
        what = self.method.value
        if self.method is QuantMethod.FP16 and (self.per_channel or self.reduce_range):
            raise ConfigError(f"{what}: per_channel and reduce_range apply to INT8 only; drop them for fp16")
        if self.method is not QuantMethod.FP16 and self.fp16_op_block_list is not None:
            raise ConfigError(f"{what}: fp16_op_block_list applies to fp16 only; drop it")
        if self.method is QuantMethod.FP16 and self.op_types is not None:
            raise ConfigError(f"{what}: op_types applies to INT8 only; use fp16_op_block_list for fp16")
        if self.op_types is not None and not self.op_types:
            raise ConfigError(f"{what}: op_types is empty; give at least one op type, e.g. MatMul, or None for all")
        if self.method is not QuantMethod.INT8_STATIC and (
            self.calibration is not CalibrationMethod.MINMAX or self.percentile != DEFAULT_PERCENTILE
        ):
            raise ConfigError(f"{what}: a calibration method applies to int8-static only; drop it or use int8-static")
        if not 0.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile {self.percentile} must be in (0, 100], e.g. 99.999")
        if len(set(self.exclude_nodes)) != len(self.exclude_nodes):
            raise ConfigError(f"{what}: exclude_nodes repeats a node name; list each node once")

    @property
    def is_int8(self) -> bool:
        """Whether the method is one of the INT8 ones (they share pre-processing and the per-channel options)."""
        return self.method is not QuantMethod.FP16

    @property
    def label(self) -> str:
        """A short name that differs whenever the settings do, e.g. "int8-dynamic-pc", "int8-static-entropy"."""
        parts = [self.method.value]
        if self.method is QuantMethod.INT8_STATIC:
            parts.append(self.calibration.value)
            if self.calibration is CalibrationMethod.PERCENTILE and self.percentile != DEFAULT_PERCENTILE:
                parts.append(f"p{self.percentile:g}")
        if self.per_channel:
            parts.append("pc")
        if self.reduce_range:
            parts.append("rr")
        if self.op_types is not None:
            parts.append("+".join(sorted(t.lower() for t in self.op_types)))
        if self.fp16_op_block_list is not None:
            parts.append(f"block{len(self.fp16_op_block_list)}")
        if self.exclude_nodes:
            parts.append(f"x{len(self.exclude_nodes)}")
        return "-".join(parts)

    def with_exclusions(self, nodes: Sequence[str]) -> QuantSettings:
        """Return a copy that also leaves `nodes` in float (order kept, duplicates dropped)."""
        merged = tuple(dict.fromkeys((*self.exclude_nodes, *nodes)))
        return QuantSettings(
            method=self.method,
            per_channel=self.per_channel,
            reduce_range=self.reduce_range,
            calibration=self.calibration,
            percentile=self.percentile,
            exclude_nodes=merged,
            fp16_op_block_list=self.fp16_op_block_list,
            op_types=self.op_types,
        )

    def resolved_fp16_block_list(self) -> list[str]:
        """The op types FP16 keeps in float32: the given list, or onnxconverter-common's default."""
        if self.fp16_op_block_list is not None:
            return list(self.fp16_op_block_list)
        from onnxconverter_common import float16

        return list(float16.DEFAULT_OP_BLOCK_LIST)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings for a manifest (only the fields that apply to the method)."""
        out: dict[str, Any] = {"method": self.method.value, "label": self.label}
        if self.is_int8:
            out.update(per_channel=self.per_channel, reduce_range=self.reduce_range, preprocessing=_PREPROCESS_NOTE)
            out["op_types"] = None if self.op_types is None else list(self.op_types)
        if self.method is QuantMethod.INT8_STATIC:
            out.update(quant_format="QDQ", calibration=self.calibration.value, activation_type="int8")
            if self.calibration is CalibrationMethod.PERCENTILE:
                out["percentile"] = self.percentile
        if self.method is QuantMethod.FP16:
            out.update(keep_io_types=True, op_block_list=self.resolved_fp16_block_list())
        out["exclude_nodes"] = list(self.exclude_nodes)
        return out


_PREPROCESS_NOTE = "onnxruntime quant_pre_process(skip_symbolic_shape=True)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def preprocess_model(source: Path, output: Path) -> Path:
    """Run ORT's quantization pre-processing (ONNX shape inference and graph optimisation) on `source`.

    Symbolic shape inference is skipped: it fails on transformer graphs such as MiniLM, and ONNX's own shape
    inference is enough for ORT's quantizers.

    Raises:
        ConversionError: ORT could not process the model.
    """
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(str(source), str(output), skip_symbolic_shape=True)
    except Exception as exc:  # ORT and onnx raise many unrelated types here
        raise ConversionError(
            f"ONNX Runtime's quantization pre-processing failed on {source}: {_one_line(exc)}; "
            "check that the file loads with onnxruntime.InferenceSession"
        ) from exc
    return output


def _reader(calibration: EvalSet) -> Any:
    """Wrap an EvalSet's batches as ORT's CalibrationDataReader (defined here to keep onnxruntime lazy)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _EvalSetReader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches: Iterator[dict[str, Any]] = iter(calibration.batches)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._batches, None)

        def __len__(self) -> int:
            return len(calibration.batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._batches = iter(calibration.batches[start_index:end_index])

    return _EvalSetReader()


_ORT_CALIBRATION = {
    CalibrationMethod.MINMAX: "MinMax",
    CalibrationMethod.ENTROPY: "Entropy",
    CalibrationMethod.PERCENTILE: "Percentile",
}


def _gemm_aliases(model_path: Path, names: list[str]) -> list[str]:
    """Add, for each Gemm named in `names`, the name ORT's dynamic quantizer matches instead.

    WAR: ORT's dynamic quantizer first splits each Gemm "X" into MatMul "X_MatMul" + Add "X_Add", then matches
    nodes_to_exclude/nodes_to_quantize against the new names, so "X" alone would be ignored. Users and
    `quantized_nodes` use the graph's own name.
    """
    import onnx

    if not names:
        return names
    model = onnx.load(str(model_path), load_external_data=False)
    gemms = {n.name for n in model.graph.node if n.op_type == "Gemm" and n.name}
    return [*names, *(f"{name}_MatMul" for name in names if name in gemms)]


def _quantize_int8(
    source: Path,
    output: Path,
    settings: QuantSettings,
    calibration: EvalSet | None,
    nodes_to_quantize: Sequence[str] | None,
    calibration_cache: Path | None,
) -> None:
    from onnxruntime.quantization import quantize_dynamic

    exclude, only = list(settings.exclude_nodes), None if nodes_to_quantize is None else list(nodes_to_quantize)
    if settings.method is QuantMethod.INT8_DYNAMIC:
        exclude, only = _gemm_aliases(source, exclude), None if only is None else _gemm_aliases(source, only)
    common: dict[str, Any] = {
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "nodes_to_exclude": exclude,
        "nodes_to_quantize": only,
        "op_types_to_quantize": None if settings.op_types is None else list(settings.op_types),
    }
    if settings.method is QuantMethod.INT8_DYNAMIC:
        quantize_dynamic(str(source), str(output), **common)
        return
    if calibration is None and (calibration_cache is None or not calibration_cache.is_file()):
        raise ConfigError(
            "int8-static needs a calibration set to choose activation ranges; pass calibration= "
            "(--calibration-set calib.npz: a few hundred real inputs, not the evaluation set)"
        )
    # WAR: ORT's histogram calibrators (entropy, percentile) stack every batch's activations into one array, which
    # fails for text batches padded to different lengths; a stride of one batch makes ORT collect batch by batch and
    # merge (it does so for every calibrator, despite the option's name), which also bounds memory to one batch.
    extra: dict[str, Any] = {"CalibStridedMinMax": 1}
    if calibration is not None and (calibration_cache is None or not calibration_cache.is_file()):
        # (a cached calibration already passed this check)
        bad = nonfinite_nodes(source, calibration, settings.op_types)
        if bad:
            kinds = _op_types_of(source, bad)
            raise ConversionError(
                f"int8-static calibration saw NaN/Inf activations around nodes {bad[:4]} (op types {kinds}, "
                "typically an attention mask); ORT cannot calibrate them even when excluded: restrict op_types "
                f"to types without {kinds} (--op-type MatMul), or use int8-dynamic"
            )
    if settings.calibration is CalibrationMethod.PERCENTILE:
        extra["CalibPercentile"] = settings.percentile
    # ORT's calibrators print progress to stdout ("Collecting tensor data..."), which would mix into the CLI's table.
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        _static(source, output, calibration, settings, extra, calibration_cache, common)
    _LOGGER.debug("ONNX Runtime calibration: %s", " | ".join(printed.getvalue().split("\n")))


def _static(
    source: Path,
    output: Path,
    calibration: EvalSet | None,
    settings: QuantSettings,
    extra: dict[str, Any],
    calibration_cache: Path | None,
    common: dict[str, Any],
) -> None:
    from onnxruntime.quantization import CalibrationMethod as OrtCalibration
    from onnxruntime.quantization import QuantFormat, quantize_static

    quantize_static(
        str(source),
        str(output),
        calibration_data_reader=None if calibration is None else _reader(calibration),
        quant_format=QuantFormat.QDQ,
        calibrate_method=getattr(OrtCalibration, _ORT_CALIBRATION[settings.calibration]),
        extra_options=extra,
        calibration_cache_path=None if calibration_cache is None else str(calibration_cache),
        **common,
    )


def _op_types_of(model_path: Path, node_names: Sequence[str]) -> list[str]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    wanted = set(node_names)
    return sorted({n.op_type for n in model.graph.node if n.name in wanted})


def _convert_fp16(source: Path, output: Path, settings: QuantSettings) -> None:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(source))
    with warnings.catch_warnings(record=True) as caught:  # one warning per clamped constant: thousands for MiniLM
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=settings.resolved_fp16_block_list(),
            node_block_list=list(settings.exclude_nodes) or None,
        )
    if caught:
        _LOGGER.info("fp16: %d constant(s) clamped to float16's range, e.g. %s", len(caught), caught[0].message)
    _fix_float_casts(converted)
    onnx.save(converted, str(output))


def _fix_float_casts(model: Any) -> None:
    """WAR onnxconverter-common#320: a Cast to float32 keeps `to=FLOAT` while its output is retyped to float16.

    ORT then refuses the model ("Type (tensor(float16)) of output arg ... does not match expected type"); casting to
    float16 is what the converted graph means.
    """
    import onnx

    half = {
        v.name
        for v in (*model.graph.value_info, *model.graph.output)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    }
    for node in model.graph.node:
        if node.op_type != "Cast" or node.output[0] not in half:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                attr.i = onnx.TensorProto.FLOAT16


def check_finite(model_path: Path, inputs: EvalSet | None, *, max_batches: int = FP16_CHECK_BATCHES) -> None:
    """Check that a model's initializers and its outputs on the first batches of `inputs` hold no NaN or Inf.

    A limit worth knowing: ONNX Runtime's CPU provider runs many float16 ops in float32 (it inserts casts and removes
    the pairs that cancel), so on a CPU this sees an overflow only where a float16 kernel runs (Relu, casts...); a GPU
    runs more of the graph in float16. The gate's evaluation on the whole set checks the outputs again.

    Raises:
        ConversionError: a non-finite initializer or output; the message names it and the fix.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            nodes = consumers.get(init.name, [])[:3]
            raise ConversionError(
                f"initializer '{init.name}' (used by {nodes}) holds NaN/Inf after conversion; "
                f"keep those nodes in float32 with exclude_nodes (--exclude) or add their op type to the block list"
            )
    if inputs is None:
        return
    from tritonforge.converters.quality_gate import open_session

    session = open_session(model_path)
    names = [o.name for o in session.get_outputs()]
    for index, batch in enumerate(inputs.batches[:max_batches]):
        for name, values in zip(names, session.run(None, batch), strict=True):
            array = np.asarray(values)
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ConversionError(
                    f"output '{name}' holds NaN/Inf on input batch {index}: a float16 overflow inside the graph; "
                    "keep the overflowing nodes in float32 with exclude_nodes (--exclude), add their op types to "
                    "fp16_op_block_list, or use an INT8 method"
                )


def quantize_model(
    source: Path,
    output: Path,
    settings: QuantSettings,
    calibration: EvalSet | None = None,
    *,
    preprocessed: bool = False,
    nodes_to_quantize: Sequence[str] | None = None,
    calibration_cache: Path | None = None,
) -> Path:
    """Write the variant of `source` that `settings` describe to `output`, atomically.

    Args:
        source: the FP32 ONNX model.
        output: where to write the variant; its folder must exist.
        settings: the method and its options.
        calibration: INT8 static: the calibration inputs (required unless `calibration_cache` exists);
            FP16: inputs for the NaN/Inf check on outputs (optional; initializers are always checked).
        preprocessed: `source` already went through `preprocess_model` (the accuracy-aware search does this once).
        nodes_to_quantize: INT8 only: quantize just these nodes (how sensitivity measures one node at a time).
        calibration_cache: INT8 static: a JSON file of activation ranges, written on first use and read after,
            so repeated quantizations of one model calibrate once. Only reuse it for the same model, calibration
            set and calibration method.

    Returns:
        `output`.

    Raises:
        ConfigError: the source is missing, or static INT8 has no calibration set.
        ConversionError: ORT or onnxconverter-common failed, or the FP16 model has NaN/Inf.
    """
    if not source.is_file():
        raise ConfigError(f"ONNX model {source} does not exist")
    if not output.parent.is_dir():
        raise ConfigError(f"output folder {output.parent} does not exist; create it first")
    if nodes_to_quantize is not None and not settings.is_int8:
        raise ConfigError("nodes_to_quantize applies to INT8 methods only")
    _LOGGER.debug("making %s of %s", settings.label, source.name)
    with tempfile.TemporaryDirectory(prefix="tritonforge-quantize-") as tmp:
        work = Path(tmp)
        made = work / "variant.onnx"
        try:
            if settings.is_int8:
                prepared = source if preprocessed else preprocess_model(source, work / "preprocessed.onnx")
                _quantize_int8(prepared, made, settings, calibration, nodes_to_quantize, calibration_cache)
            else:
                _convert_fp16(source, made, settings)
        except (ConfigError, ConversionError):
            raise
        except Exception as exc:  # ORT's quantizers raise ValueError, RuntimeError, onnx errors...
            raise ConversionError(
                f"{settings.label} of {source.name} failed: {_one_line(exc)}; check exclude_nodes names "
                "(list them with quantized_nodes) or try another method"
            ) from exc
        if settings.method is QuantMethod.FP16:
            check_finite(made, calibration)
        with atomic_output(output) as tmp_out:
            shutil.copyfile(made, tmp_out)
    return output


def nonfinite_nodes(model_path: Path, calibration: EvalSet, op_types: Sequence[str] | None = None) -> list[str]:
    """Name the nodes of the quantized op types that make or take a NaN/Inf activation on `calibration`.

    Transformer graphs fill attention masks with float32's lowest value or -inf, so some activations hold -inf. ORT
    calibrates every tensor around every node of the quantized op types (it ignores `nodes_to_exclude` there), and
    no INT8 scale covers an infinite range: MinMax then yields NaN scales and Entropy/Percentile fail. Every
    calibration batch is checked, since a batch without padding has no masked positions.

    Args:
        model_path: the pre-processed model (`preprocess_model`).
        calibration: the calibration inputs.
        op_types: the op types static INT8 will quantize; None = all that ORT's QDQ quantizer handles.

    Returns:
        Node names in graph order.
    """
    import onnx
    from onnxruntime.quantization.registry import QDQRegistry

    from tritonforge.converters.quality_gate import open_session

    types = set(QDQRegistry) if op_types is None else set(op_types)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    watched = {t for node in model.graph.node if node.op_type in types for t in (*node.input, *node.output)}
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(
        v
        for v in model.graph.value_info
        if v.name in watched
        and v.name not in existing
        and v.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    )
    bad: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="tritonforge-finite-") as tmp:
        augmented = Path(tmp) / "augmented.onnx"
        onnx.save(model, str(augmented))
        session = open_session(augmented)
        names = [o.name for o in session.get_outputs()]
        for batch in calibration.batches:
            for name, values in zip(names, session.run(None, batch), strict=True):
                array = np.asarray(values)
                if array.dtype.kind == "f" and not np.isfinite(array).all():
                    bad.add(name)
    return [
        node.name
        for node in model.graph.node
        if node.op_type in types and any(t in bad for t in (*node.input, *node.output))
    ]


def quantized_nodes(original: Path, variant: Path) -> list[str]:
    """Name the nodes of `original` that `variant` quantized or converted, in graph order.

    INT8 dynamic replaces a node with an integer one (its name disappears); INT8 static (QDQ) keeps the node and feeds
    it from DequantizeLinear; FP16 keeps the node and gives it float16 tensors. For INT8, `original` must be the
    pre-processed model (`preprocess_model`), since that is the graph whose names `exclude_nodes` refers to.
    """
    import onnx

    before = onnx.load(str(original), load_external_data=False)
    after = onnx.load(str(variant), load_external_data=False)
    kept = {(n.name, n.op_type): n for n in after.graph.node}
    dequantized = {out for n in after.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    half = {i.name for i in after.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    half |= {
        v.name
        for v in (*after.graph.value_info, *after.graph.output)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    }
    half |= {out for n in after.graph.node if n.op_type == "Constant" for out in n.output if _is_half_constant(n)}
    names = []
    for node in before.graph.node:
        if node.op_type == "Constant":
            continue
        match = kept.get((node.name, node.op_type))
        if match is None or any(name in dequantized or name in half for name in match.input):
            names.append(node.name)
    return names


def _is_half_constant(node: Any) -> bool:
    import onnx

    return any(a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT16 for a in node.attribute)


def quantizable_nodes(source: Path, settings: QuantSettings, calibration: EvalSet | None = None) -> list[str]:
    """List the nodes `settings` would quantize in `source` (by making the variant once in a temporary folder).

    Returns:
        Node names as `exclude_nodes` takes them, e.g. "/encoder/layer.0/attention/self/query/MatMul".
    """
    with tempfile.TemporaryDirectory(prefix="tritonforge-nodes-") as tmp:
        work = Path(tmp)
        base = source
        if settings.is_int8:
            base = preprocess_model(source, work / "preprocessed.onnx")
        variant = quantize_model(base, work / "variant.onnx", settings, calibration, preprocessed=settings.is_int8)
        return quantized_nodes(base, variant)
