"""The quality gate's figures and decisions, on arrays with known answers and on tiny real ONNX graphs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tritonforge.converters.eval_set import EvalSet
from tritonforge.converters.quality_gate import GateMetric, GateSpec, evaluate_gate, run_model
from tritonforge.errors import ConfigError


def _unit_rows(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_cosine_gate_passes_identical_embeddings_with_figures_of_one() -> None:
    reference = _unit_rows(20, 8)
    result = evaluate_gate(reference, reference.copy(), GateSpec(metric=GateMetric.COSINE))
    assert result.passed and result.shortfall is None
    assert result.cosine_mean == pytest.approx(1.0) and result.cosine_min == pytest.approx(1.0)
    assert result.max_abs_error == 0.0 and result.items == 20


def test_cosine_gate_fails_on_one_bad_item_and_says_by_how_much() -> None:
    reference = _unit_rows(50, 8)
    candidate = reference.copy()
    candidate[7] = reference[7] + 0.5 * _unit_rows(1, 8, seed=1)[0]  # one item pulled away from its reference
    expected_min = float(reference[7] @ candidate[7] / (np.linalg.norm(reference[7]) * np.linalg.norm(candidate[7])))
    result = evaluate_gate(reference, candidate, GateSpec(metric=GateMetric.COSINE, min_cosine_min=0.999))
    assert not result.passed
    assert result.cosine_min == pytest.approx(expected_min, abs=1e-6)
    assert result.cosine_mean > 0.99  # the mean alone would hide it
    assert result.shortfall == f"cosine min {expected_min:.4f} < 0.999 by {0.999 - expected_min:.4f}"
    assert result.tolerance_used == pytest.approx((1 - expected_min) / 0.001, rel=1e-3)


def test_accuracy_gate_measures_the_drop_in_points_against_the_reference_model() -> None:
    labels = np.arange(200) % 4
    reference = np.eye(4, dtype=np.float32)[labels]  # 100% accurate
    candidate = reference.copy()
    candidate[:3] = np.roll(candidate[:3], 1, axis=1)  # three wrong answers: 98.5%
    strict = evaluate_gate(reference, candidate, GateSpec(metric=GateMetric.ACCURACY), labels=labels)
    assert not strict.passed
    assert strict.reference_accuracy == 1.0 and strict.candidate_accuracy == pytest.approx(0.985)
    assert strict.drop_points == pytest.approx(1.5)
    assert strict.shortfall == "accuracy drop 1.50 points > 0.5 by 1.00"
    loose = evaluate_gate(
        reference, candidate, GateSpec(metric=GateMetric.ACCURACY, max_accuracy_drop_points=2.0), labels=labels
    )
    assert loose.passed and loose.tolerance_used == pytest.approx(0.75)


def test_accuracy_gate_without_labels_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs labels"):
        evaluate_gate(np.zeros((3, 2)), np.zeros((3, 2)), GateSpec(metric=GateMetric.ACCURACY))


def test_max_abs_gate_passes_and_fails_at_its_threshold() -> None:
    reference = np.zeros((4, 3), dtype=np.float32)
    candidate = reference.copy()
    candidate[2, 1] = 0.02
    assert not evaluate_gate(reference, candidate, GateSpec(metric=GateMetric.MAX_ABS)).passed
    passed = evaluate_gate(reference, candidate, GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=0.05))
    assert passed.passed and passed.max_abs_error == pytest.approx(0.02)


def test_a_nan_output_fails_every_metric_and_still_serialises() -> None:
    reference = _unit_rows(5, 4)
    candidate = reference.copy()
    candidate[1, 2] = np.nan
    result = evaluate_gate(reference, candidate, GateSpec(metric=GateMetric.MAX_ABS, max_abs_error=1e9))
    assert not result.passed and result.tolerance_used == math.inf
    assert "NaN/Inf" in (result.shortfall or "")
    json.dumps(result.to_dict())  # the manifest must stay valid JSON


def test_gate_rejects_outputs_of_different_shapes() -> None:
    with pytest.raises(ConfigError, match="differs"):
        evaluate_gate(np.zeros((3, 2)), np.zeros((3, 3)), GateSpec(metric=GateMetric.COSINE))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_accuracy_drop_points": -1}, "must be >= 0"), ({"min_cosine_min": 1.5}, "between -1 and 1")],
)
def test_gate_spec_rejects_impossible_thresholds(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GateSpec(metric=GateMetric.COSINE, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def pooling_model(tmp_path: Path) -> Path:
    """x [N, S, 4] -> pooled = mean over S [N, 4], and tokens = x itself (its shape follows the padding)."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["pooled"], keepdims=0),
            helper.make_node("Identity", ["x"], ["tokens"]),
        ],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", 4])],
        [
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", "S", 4]),
        ],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    path = tmp_path / "pool.onnx"
    onnx.save(model, str(path))
    return path


def test_run_model_joins_ragged_batches_when_the_output_is_pooled(pooling_model: Path) -> None:
    rng = np.random.default_rng(0)
    batches = tuple({"x": rng.normal(size=(n, s, 4)).astype(np.float32)} for n, s in ((2, 3), (3, 7)))
    pooled = run_model(pooling_model, EvalSet(batches=batches))
    assert pooled.shape == (5, 4)
    np.testing.assert_allclose(pooled[2:], batches[1]["x"].mean(axis=1), rtol=1e-6)
    with pytest.raises(ConfigError, match="per-item shapes"):
        run_model(pooling_model, EvalSet(batches=batches), output="tokens")
    with pytest.raises(ConfigError, match="no output 'logits'"):
        run_model(pooling_model, EvalSet(batches=batches), output="logits")


@pytest.mark.parametrize(
    ("reference", "problem"),
    [
        (np.arange(8, dtype=np.int64).reshape(8, 1) % 3, "int64 values"),  # class ids: argmax is always 0
        (np.linspace(0, 1, 8, dtype=np.float32).reshape(8, 1), "shape [8, 1]"),
        (np.zeros((8, 2, 3), np.float32), "shape [8, 2, 3]"),
    ],
)
def test_accuracy_gate_refuses_an_output_that_is_not_class_scores(reference: np.ndarray, problem: str) -> None:
    # Gated on an int64 class-id output [N, 1], the gate once reported "acc 0.2734 (drop +0.00 pts) -> pass".
    labels = np.arange(8) % 3
    with pytest.raises(ConfigError) as caught:
        evaluate_gate(reference, reference.copy(), GateSpec(metric=GateMetric.ACCURACY), labels)
    assert str(caught.value) == (
        f"the accuracy gate takes class scores or logits, float [N, C>=2]; the gated output has {problem}: "
        "gate on the model's score or logit output (--output NAME), or use --metric max-abs"
    )


def test_other_gates_on_class_ids_report_no_accuracy() -> None:
    ids = (np.arange(8, dtype=np.int64) % 3).reshape(8, 1)
    result = evaluate_gate(ids, ids.copy(), GateSpec(metric=GateMetric.MAX_ABS), np.arange(8) % 3)
    assert result.passed and result.reference_accuracy is None and result.drop_points is None


def _two_output_session(tmp_path: Path, outputs: list[tuple[str, int, list[object]]]) -> object:
    from tritonforge.converters.quality_gate import open_session

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    nodes, infos = [], []
    for name, elem, shape in outputs:
        op = "Identity" if elem == TensorProto.FLOAT else "Cast"
        attrs = {} if op == "Identity" else {"to": elem}
        nodes.append(helper.make_node(op, ["x"], [name], **attrs))
        infos.append(helper.make_tensor_value_info(name, elem, shape))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], infos), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return open_session(path)


def test_check_scores_output_names_the_outputs_that_would_do(tmp_path: Path) -> None:
    from tritonforge.converters.quality_gate import check_scores_output

    session = _two_output_session(
        tmp_path, [("ids", TensorProto.INT64, ["N", 3]), ("logits", TensorProto.FLOAT, ["N", 3])]
    )
    check_scores_output(session, "logits")
    with pytest.raises(ConfigError, match=r"output 'ids' is int64 \[Nx3\]: gate on 'logits' \(--output logits\)$"):
        check_scores_output(session, "ids")


def test_check_scores_output_says_when_no_output_would_do(tmp_path: Path) -> None:
    from tritonforge.converters.quality_gate import check_scores_output

    session = _two_output_session(tmp_path, [("ids", TensorProto.INT64, ["N", 3])])
    with pytest.raises(ConfigError, match="this model has no such output: use --metric max-abs"):
        check_scores_output(session, "ids")
