"""Making INT8 and FP16 variants: on the real digits classifier, plus tiny graphs built to overflow or hold -inf."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.onnx_graph import read_onnx_signature
from tritonforge.converters.quality_gate import GateMetric, GateSpec, evaluate_gate, run_model
from tritonforge.converters.quantize import (
    CalibrationMethod,
    QuantMethod,
    QuantSettings,
    check_finite,
    preprocess_model,
    quantizable_nodes,
    quantize_model,
    quantized_nodes,
)
from tritonforge.errors import ConfigError, ConversionError
from tritonforge.examples.digits import load_split


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory, trained_digits: Path) -> tuple[Path, EvalSet, EvalSet]:
    """The trained digits CNN as ONNX, its held-out test set (with labels) and a calibration set from training."""
    source = trained_digits / "digits" / "1" / "model.onnx"
    split = load_split()
    eval_set = EvalSet.from_arrays({"image": split.x_test}, labels=split.y_test, batch_size=64)
    calibration = EvalSet.from_arrays({"image": split.x_train[:192]}, batch_size=64)
    return source, eval_set, calibration


def _ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_settings_labels_differ_whenever_the_settings_do() -> None:
    labels = {
        QuantSettings(method=QuantMethod.INT8_DYNAMIC).label,
        QuantSettings(method=QuantMethod.INT8_DYNAMIC, per_channel=True).label,
        QuantSettings(method=QuantMethod.INT8_DYNAMIC, per_channel=True, reduce_range=True).label,
        QuantSettings(method=QuantMethod.INT8_STATIC).label,
        QuantSettings(method=QuantMethod.INT8_STATIC, calibration=CalibrationMethod.PERCENTILE).label,
        QuantSettings(method=QuantMethod.INT8_STATIC, calibration=CalibrationMethod.PERCENTILE, percentile=99.9).label,
        QuantSettings(method=QuantMethod.INT8_STATIC, op_types=("MatMul",)).label,
        QuantSettings(method=QuantMethod.FP16).label,
        QuantSettings(method=QuantMethod.FP16, exclude_nodes=("a",)).label,
    }
    assert len(labels) == 9
    assert QuantSettings(method=QuantMethod.INT8_DYNAMIC, per_channel=True).label == "int8-dynamic-pc"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": QuantMethod.FP16, "per_channel": True}, "apply to INT8 only"),
        ({"method": QuantMethod.INT8_DYNAMIC, "calibration": CalibrationMethod.ENTROPY}, "int8-static only"),
        ({"method": QuantMethod.INT8_DYNAMIC, "fp16_op_block_list": ("Resize",)}, "fp16 only"),
        ({"method": QuantMethod.INT8_STATIC, "percentile": 0.0}, "percentile"),
        ({"method": QuantMethod.INT8_DYNAMIC, "exclude_nodes": ("a", "a")}, "repeats"),
    ],
)
def test_settings_refuse_options_that_do_not_apply(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        QuantSettings(**kwargs)  # type: ignore[arg-type]


def test_dynamic_int8_quantizes_the_convolutions_and_honours_exclusions(
    digits: tuple[Path, EvalSet, EvalSet], tmp_path: Path
) -> None:
    source, eval_set, _ = digits
    settings = QuantSettings(method=QuantMethod.INT8_DYNAMIC)
    nodes = quantizable_nodes(source, settings)
    assert nodes == ["/0/Conv", "/2/Conv", "/6/Gemm", "/8/Gemm"]  # ORT splits each Gemm into MatMulInteger + Add
    full = quantize_model(source, tmp_path / "full.onnx", settings)
    assert _ops(full).count("ConvInteger") == 2 and _ops(full).count("MatMulInteger") == 2
    partial = quantize_model(source, tmp_path / "partial.onnx", settings.with_exclusions(["/0/Conv"]))
    assert _ops(partial).count("ConvInteger") == 1
    assert "/0/Conv" in [n.name for n in onnx.load(str(partial)).graph.node if n.op_type == "Conv"]
    no_gemm = quantize_model(source, tmp_path / "no_gemm.onnx", settings.with_exclusions(["/6/Gemm"]))
    assert _ops(no_gemm).count("MatMulInteger") == 1  # the graph's Gemm name works, though ORT renames it
    gate = evaluate_gate(
        run_model(source, eval_set), run_model(full, eval_set), GateSpec(metric=GateMetric.ACCURACY), eval_set.labels
    )
    assert gate.passed and gate.drop_points is not None and abs(gate.drop_points) <= 0.5


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_static_int8_writes_a_qdq_model_calibrated_by_each_method(
    digits: tuple[Path, EvalSet, EvalSet], tmp_path: Path, method: CalibrationMethod
) -> None:
    source, eval_set, calibration = digits
    settings = QuantSettings(method=QuantMethod.INT8_STATIC, calibration=method)
    variant = quantize_model(source, tmp_path / "static.onnx", settings, calibration)
    ops = _ops(variant)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    gate = evaluate_gate(run_model(source, eval_set), run_model(variant, eval_set), GateSpec(metric=GateMetric.COSINE))
    assert gate.passed, gate.shortfall
    assert gate.max_abs_error > 0  # it really is quantized


def test_calibration_methods_choose_different_activation_ranges(
    digits: tuple[Path, EvalSet, EvalSet], tmp_path: Path
) -> None:
    source, _, calibration = digits
    scales = {}
    for method in (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE):
        settings = QuantSettings(method=QuantMethod.INT8_STATIC, calibration=method, percentile=99.0)
        variant = quantize_model(source, tmp_path / f"{method.value}.onnx", settings, calibration)
        model = onnx.load(str(variant))
        scales[method] = sorted(
            float(numpy_helper.to_array(i)) for i in model.graph.initializer if i.name.endswith("_scale") and not i.dims
        )
    assert scales[CalibrationMethod.MINMAX] != scales[CalibrationMethod.PERCENTILE]


def test_static_int8_without_calibration_is_a_config_error_and_writes_nothing(
    digits: tuple[Path, EvalSet, EvalSet], tmp_path: Path
) -> None:
    source, _, _ = digits
    with pytest.raises(ConfigError, match="calibration set"):
        quantize_model(source, tmp_path / "static.onnx", QuantSettings(method=QuantMethod.INT8_STATIC))
    assert list(tmp_path.iterdir()) == []


def test_static_calibration_handles_batches_padded_to_different_lengths(tmp_path: Path) -> None:
    """Text batches are padded per batch; ORT's histogram calibrators used to stack them into one array and fail."""
    weights = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="/layer.0/MatMul"),
            helper.make_node("ReduceMean", ["h", "axes"], ["y"], keepdims=0),
        ],
        "ragged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(weights, "w"), helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    source = tmp_path / "ragged.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(source))
    rng = np.random.default_rng(1)
    calibration = EvalSet(batches=tuple({"x": rng.normal(size=(3, s, 4)).astype(np.float32)} for s in (5, 9, 2)))
    settings = QuantSettings(method=QuantMethod.INT8_STATIC, calibration=CalibrationMethod.ENTROPY)
    variant = quantize_model(source, tmp_path / "out.onnx", settings, calibration)
    assert "/layer.0/MatMul" in quantized_nodes(preprocess_model(source, tmp_path / "pre.onnx"), variant)


def test_static_int8_names_the_nodes_around_an_infinite_activation(tmp_path: Path) -> None:
    """An attention-style mask (-inf where x <= 0) cannot be given an INT8 range; the error says what to do."""
    graph = helper.make_graph(
        [
            helper.make_node("Greater", ["x", "zero"], ["keep"]),
            helper.make_node("Where", ["keep", "x", "minus_inf"], ["masked"], name="/mask/Where"),
            helper.make_node("Softmax", ["masked"], ["y"], axis=1),
        ],
        "mask",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [
            numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
            numpy_helper.from_array(np.full((1,), -np.inf, np.float32), "minus_inf"),
        ],
    )
    source = tmp_path / "mask.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(source))
    calibration = EvalSet.from_arrays({"x": np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)})
    with pytest.raises(ConversionError, match=r"around nodes \['/mask/Where'\].*op_types"):
        quantize_model(source, tmp_path / "out.onnx", QuantSettings(method=QuantMethod.INT8_STATIC), calibration)
    assert not (tmp_path / "out.onnx").exists()


def test_fp16_keeps_float32_inputs_and_outputs_and_stores_half_weights(
    digits: tuple[Path, EvalSet, EvalSet], tmp_path: Path
) -> None:
    source, eval_set, _ = digits
    variant = quantize_model(source, tmp_path / "fp16.onnx", QuantSettings(method=QuantMethod.FP16), eval_set)
    signature = read_onnx_signature(variant)
    assert [t.dtype for t in (*signature.inputs, *signature.outputs)] == ["float32", "float32"]
    weights = [i for i in onnx.load(str(variant)).graph.initializer if len(i.dims) > 1]
    assert weights and all(i.data_type == TensorProto.FLOAT16 for i in weights)
    assert run_model(variant, eval_set).dtype == np.float32
    assert "/0/Conv" in quantized_nodes(source, variant)
    gate = evaluate_gate(run_model(source, eval_set), run_model(variant, eval_set), GateSpec(metric=GateMetric.COSINE))
    assert gate.passed and gate.cosine_min > 0.9999


def _scale_relu_model(path: Path) -> Path:
    """y = Relu(x * 300): 90,000 for x = 300, past float16's largest value (65,504).

    ONNX Runtime's CPU has a float16 Relu (it runs other float16 ops in float32), so the float16 copy really overflows.
    """
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "k"], ["h"], name="/scale/Mul"),
            helper.make_node("Relu", ["h"], ["y"], name="/act/Relu"),
        ],
        "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.full((1,), 300.0, np.float32), "k")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    return path


def test_fp16_overflow_is_caught_by_the_nan_inf_check_on_the_given_inputs(tmp_path: Path) -> None:
    source = _scale_relu_model(tmp_path / "overflow.onnx")
    inputs = EvalSet.from_arrays({"x": np.full((4, 2), 300.0, np.float32)})
    with pytest.raises(ConversionError, match="output 'y' holds NaN/Inf.*exclude_nodes"):
        quantize_model(source, tmp_path / "fp16.onnx", QuantSettings(method=QuantMethod.FP16), inputs)
    assert not (tmp_path / "fp16.onnx").exists()
    in_range = EvalSet.from_arrays({"x": np.full((4, 2), 100.0, np.float32)})  # 30,000 fits in float16
    variant = quantize_model(source, tmp_path / "fp16.onnx", QuantSettings(method=QuantMethod.FP16), in_range)
    np.testing.assert_array_equal(run_model(variant, in_range), 30_000.0)


def test_check_finite_names_a_non_finite_initializer(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"], name="/bias/Add")],
        "inf",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.array([1.0, np.inf], np.float32), "bias")],
    )
    path = tmp_path / "inf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    with pytest.raises(ConversionError, match=r"initializer 'bias' \(used by \['/bias/Add'\]\)"):
        check_finite(path, None)
